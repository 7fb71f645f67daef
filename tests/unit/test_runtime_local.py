"""LocalRuntime with real processes: start, health, stop, port in use, crash and timeout reporting."""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path

import httpx
import pytest

from pilotage.errors import BackendError, ConfigError, InputError
from pilotage.runtime.base import Workload
from pilotage.runtime.local import LocalRuntime, route_registry
from tests.fixtures.tiny_service.harness import copy_service


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_start_serves_health_and_stop_ends_the_process(tmp_path: Path) -> None:
    service = copy_service(tmp_path / "svc")

    async def scenario() -> None:
        runtime = LocalRuntime(log_dir=tmp_path / "logs")
        instance = await runtime.start(Workload("tiny", "v1", service, env={"TINY_VERSION": "v-one"}))
        try:
            assert instance.url == f"http://127.0.0.1:{instance.port}"
            assert instance.port > 0 and _alive(instance.pid) and runtime.is_running(instance)
            async with httpx.AsyncClient() as client:
                assert (await client.get(instance.url + "/healthz")).json() == {"status": "ok"}
                assert (await client.get(instance.url + "/version")).json() == {"version": "v-one"}
                created = await client.post(instance.url + "/notes", json={"text": "hello"})
                assert created.status_code == 201
            assert (service / "data.db").exists()  # the working directory is the service folder
        finally:
            await runtime.stop(instance)
        assert not runtime.is_running(instance) and not _alive(instance.pid)
        await runtime.stop(instance)  # idempotent
        assert instance.log_path is not None and instance.log_path.exists()
        await runtime.close()

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


def test_close_stops_every_process_and_route(tmp_path: Path) -> None:
    a, b = copy_service(tmp_path / "a"), copy_service(tmp_path / "b")

    async def scenario() -> None:
        runtime = LocalRuntime(log_dir=tmp_path / "logs")
        one, two = await asyncio.gather(
            runtime.start(Workload("tiny", "a", a)), runtime.start(Workload("tiny", "b", b))
        )
        route = await runtime.route("r", {"a": one, "b": two}, {"a": 50, "b": 50})
        assert route_registry(runtime).get_route("r") is route
        await runtime.close()
        assert runtime.instances() == [] and runtime.get_route("r") is None
        assert not _alive(one.pid) and not _alive(two.pid)
        with pytest.raises(httpx.ConnectError):
            async with httpx.AsyncClient() as client:
                await client.get(route.url + "/healthz")

    asyncio.run(scenario())


def test_url_must_be_local() -> None:
    with pytest.raises(ConfigError, match="not local:"):
        LocalRuntime("kubernetes://prod")
