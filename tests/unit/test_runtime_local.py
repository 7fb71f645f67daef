"""LocalRuntime with real processes: what only ``local:`` does (pids, working folder, log files, start failures).

The behaviour every runtime shares is in ``tests/contract/test_runtime.py``.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from pathlib import Path
from typing import Any

import httpx
import pytest

from pilotage.errors import BackendError, ConfigError, InputError
from pilotage.runtime.base import Workload
from pilotage.runtime.faults import FaultSpec, set_faults
from pilotage.runtime.local import LocalRuntime
from tests.fixtures.tiny_service.harness import copy_service


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_instance_is_a_process_in_the_service_folder_with_a_log_file(tmp_path: Path) -> None:
    service = copy_service(tmp_path / "svc")

    async def scenario() -> None:
        runtime = LocalRuntime(log_dir=tmp_path / "logs")
        instance = await runtime.start(Workload("tiny", "v1", service, env={"TINY_VERSION": "v-one"}))
        try:
            assert instance.url == f"http://127.0.0.1:{instance.port}"
            assert instance.port > 0 and _alive(instance.pid) and runtime.instances() == [instance.pid]
            async with httpx.AsyncClient() as client:
                assert (await client.get(instance.url + "/version")).json() == {"version": "v-one"}
                created = await client.post(instance.url + "/notes", json={"text": "hello"})
                assert created.status_code == 201
            assert (service / "data.db").exists()  # the working directory is the service folder
        finally:
            await runtime.stop(instance)
        assert not _alive(instance.pid) and runtime.instances() == []
        assert (await runtime.health(instance)).exit_code in (0, -signal.SIGTERM)  # SIGTERM was enough, no SIGKILL
        assert instance.log_path is not None and instance.log_path.name == f"tiny-v1-{instance.port}.log"
        assert (
            await runtime.log_tail(instance, 50)
            == [line.rstrip() for line in instance.log_path.read_text().splitlines() if line.strip()][-50:]
        )
        await runtime.close()

    asyncio.run(scenario())


def test_health_reports_the_exit_code_of_a_crashed_process(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with LocalRuntime(log_dir=tmp_path / "logs") as runtime:
            env = {"PILOTAGE_FAULT_ADMIN": "1"}
            instance = await runtime.start(Workload("tiny", "v1", copy_service(tmp_path / "svc"), env=env))
            await set_faults(instance.url, FaultSpec(crash=True))  # tiny_service exits with status 3
            for _ in range(100):
                health = await runtime.health(instance)
                if not health.running:
                    break
                await asyncio.sleep(0.05)
            assert (health.running, health.ready, health.exit_code) == (False, False, 3)

    asyncio.run(scenario())


def test_requested_port_in_use_is_a_config_error_naming_the_port(tmp_path: Path) -> None:
    service = copy_service(tmp_path / "svc")
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]

    async def scenario() -> None:
        async with LocalRuntime(log_dir=tmp_path / "logs") as runtime:
            with pytest.raises(ConfigError, match=f"port {port} .*in use") as info:
                await runtime.start(Workload("tiny", "v1", service, port=port))
            assert info.value.port == port
            assert runtime.instances() == []

    try:
        asyncio.run(scenario())
    finally:
        holder.close()


def test_crashing_service_is_a_backend_error_with_its_log_line(tmp_path: Path) -> None:
    service = copy_service(tmp_path / "broken")
    (service / "app" / "main.py").write_text('raise RuntimeError("DATABASE_URL is not set")\n', encoding="utf-8")

    async def scenario() -> None:
        async with LocalRuntime(log_dir=tmp_path / "logs") as runtime:
            with pytest.raises(BackendError) as info:
                await runtime.start(Workload("tiny", "v9", service), ready_timeout_s=20)
            message = str(info.value)
            assert f"generated service in {service}" in message
            assert "crashed on start" in message
            assert "RuntimeError: DATABASE_URL is not set" in message
            assert "(fix: read " in message
            assert any("DATABASE_URL" in line for line in info.value.log_tail)
            assert runtime.instances() == []

    asyncio.run(scenario())


def test_service_that_never_gets_healthy_times_out_and_is_stopped(tmp_path: Path) -> None:
    service = copy_service(tmp_path / "sick")
    main = service / "app" / "main.py"
    main.write_text(
        main.read_text(encoding="utf-8").replace(
            'return {"status": "ok"}', 'raise HTTPException(status_code=503, detail="warming up")'
        ),
        encoding="utf-8",
    )

    async def scenario() -> None:
        async with LocalRuntime(log_dir=tmp_path / "logs") as runtime:
            with pytest.raises(BackendError, match=r"was not ready within 1.5 s"):
                await runtime.start(Workload("tiny", "v1", service), ready_timeout_s=1.5)
            assert runtime.instances() == []

    asyncio.run(scenario())


def test_workload_without_app_is_an_input_error(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with LocalRuntime(log_dir=tmp_path / "logs") as runtime:
            with pytest.raises(InputError, match="holds no app/main.py"):
                await runtime.start(Workload("tiny", "v1", tmp_path))

    asyncio.run(scenario())


def test_close_kills_every_process_and_closes_every_route(tmp_path: Path) -> None:
    a, b = copy_service(tmp_path / "a"), copy_service(tmp_path / "b")

    async def scenario() -> None:
        runtime = LocalRuntime(log_dir=tmp_path / "logs")
        one, two = await asyncio.gather(
            runtime.start(Workload("tiny", "a", a)), runtime.start(Workload("tiny", "b", b))
        )
        route = await runtime.create_route("r", {"a": one, "b": two}, {"a": 50, "b": 50})
        await runtime.set_weights("r", {"a": 0, "b": 100})
        assert route.weights == {"a": 50, "b": 50}  # a snapshot: the runtime owns the route
        seen = await runtime.get_route("r")
        assert seen is not None and seen.weights == {"a": 0, "b": 100}
        assert (await runtime.route_stats("r")).requests == 0 and (await runtime.health(one)).running
        await runtime.close()
        assert runtime.instances() == [] and await runtime.get_route("r") is None
        assert not _alive(one.pid) and not _alive(two.pid)

    asyncio.run(scenario())


def test_url_must_be_local() -> None:
    with pytest.raises(ConfigError, match="not local:"):
        LocalRuntime("kubernetes://prod")


@pytest.mark.parametrize(
    "line",
    [
        "echo started > {marker} && TINY_VERSION=v-shell {python} -m uvicorn app.main:app --port {port}",
        "echo started > {marker}; exec env TINY_VERSION=v-shell {python} -m uvicorn app.main:app --port {port}",
    ],
    ids=["list-and-assignment", "exec-in-the-line"],
)
def test_a_start_line_with_shell_syntax_runs_as_written_and_stops_with_its_group(tmp_path: Path, line: str) -> None:
    # a security review found `exec` put before every start line: `a; b` ran only a, `FOO=1 app` was "not found"
    service, marker = copy_service(tmp_path / "svc"), tmp_path / "marker"
    command = line.replace("{marker}", str(marker))

    async def scenario() -> None:
        runtime = LocalRuntime(log_dir=tmp_path / "logs")
        instance = await runtime.start(Workload("tiny", "v1", service, command=command), ready_timeout_s=30)
        try:
            async with httpx.AsyncClient() as client:
                assert (await client.get(instance.url + "/version")).json() == {"version": "v-shell"}
            assert marker.read_text() == "started\n"
        finally:
            await runtime.stop(instance)
        assert not _alive(instance.pid)
        with pytest.raises(httpx.HTTPError):  # the whole group stopped: nothing answers on the port any more
            httpx.get(instance.url + "/version", timeout=1)
        await runtime.close()

    asyncio.run(scenario())


def test_a_descriptors_ready_timeout_is_what_the_rollout_controller_waits(tmp_path: Path) -> None:
    # a security review found the descriptor's ready_timeout_s honoured by the testing stage only: production and
    # rollouts waited service_ready_timeout_s (30 s) for a service that declares it needs 120 s
    from pilotage.fleet.workload import workload_role
    from pilotage.rollout.controller import RolloutController
    from pilotage.settings import Settings

    (tmp_path / "pilotage.yaml").write_text('name: slow\nstart: "x {port}"\nready_timeout_s: 120\n', encoding="utf-8")
    role = workload_role("v1", str(tmp_path), "", {}, addresses={})
    assert role["ready_timeout_s"] == 120
    (tmp_path / "pilotage.yaml").write_text('name: slow\nstart: "x {port}"\n', encoding="utf-8")
    assert "ready_timeout_s" not in workload_role("v1", str(tmp_path), "", {}, addresses={})

    waited: list[float] = []

    class Recording(LocalRuntime):
        async def start(self, workload: Workload, *, ready_timeout_s: float = 30.0) -> Any:
            waited.append(ready_timeout_s)
            return None

    controller = RolloutController(Recording(log_dir=tmp_path / "logs"), Settings(home=tmp_path / ".pilotage"))
    asyncio.run(controller._start("slow", role, {}))
    asyncio.run(controller._start("slow", {**role, "ready_timeout_s": None}, {}))
    assert waited == [120.0, 30.0]  # the descriptor's, else service_ready_timeout_s
