"""Issue #15, finding 2: what a run starts (services, test runners, tools) gets an allow-list environment.

Real processes: a service started through :class:`~pilotage.runtime.local.LocalRuntime`, a tool through
:func:`~pilotage.testing.process.run_process` and a repository's tests through
:func:`~pilotage.testing.pytest_runner.run_pytest`. Each reads its own environment, process group and working
directory (``/proc/PID/environ``, or the process writes them down), with credentials planted in the parent.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest

from pilotage.runtime.base import Workload
from pilotage.runtime.local import LocalRuntime
from pilotage.runtime.sandbox import sandbox_env
from pilotage.testing.process import run_process
from pilotage.testing.pytest_runner import run_pytest
from tests.fixtures.tiny_service.harness import copy_service

#: Planted in the control plane's environment; none may reach a process a run starts.
PLANTED = {
    "PILOTAGE_SECRET_X": "pilotage-setting-secret-1f3a",
    "PILOTAGE_TESTING_AUTH_HEADERS": '{"X-Tenant": "tenant-secret-77c2"}',
    "GITHUB_TOKEN": "ghp_planted_token_9d41",
    "AWS_SECRET_ACCESS_KEY": "aws-planted-secret-5b20",
    "SSH_AUTH_SOCK": "/tmp/ssh-planted/agent.1",
}
MARK = "/some/home#instance1"


@pytest.fixture
def planted(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in PLANTED.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("PILOTAGE_CONTROL_PLANE", MARK)  # recovery's orphan mark: must still be inherited
    monkeypatch.setenv("LC_TIME", "C")


def _assert_clean(env: dict[str, str]) -> None:
    leaked = sorted(name for name in PLANTED if name in env)
    assert leaked == [], f"planted variables reached the child: {leaked}"
    assert not any(value in "\0".join(f"{k}={v}" for k, v in env.items()) for value in PLANTED.values())
    assert env["PILOTAGE_CONTROL_PLANE"] == MARK  # crash recovery still finds the run's processes
    assert env["PATH"] == os.environ["PATH"] and env["LC_TIME"] == "C"  # the allow-list is kept


def _proc_environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().split("=", 1) for item in raw if b"=" in item)


@pytest.mark.usefixtures("planted")
def test_a_service_the_runtime_starts_has_no_secret_its_own_group_and_its_folder(tmp_path: Path) -> None:
    service = copy_service(tmp_path / "run" / "repo" / "svc")

    async def scenario() -> None:
        async with LocalRuntime(log_dir=tmp_path / "logs") as runtime:
            instance = await runtime.start(Workload("tiny", "v1", service, env={"TINY_VERSION": "v-one"}))
            env = _proc_environ(instance.pid)
            _assert_clean(env)
            assert env["TINY_VERSION"] == "v-one"  # what the caller passes explicitly gets through
            assert os.getpgid(instance.pid) == instance.pid != os.getpgid(0)  # its own process group
            assert Path(os.readlink(f"/proc/{instance.pid}/cwd")) == service.resolve()

    asyncio.run(scenario())


DUMP = """
import json, os, sys
json.dump({"env": dict(os.environ), "pgid": os.getpgid(0), "pid": os.getpid(), "cwd": os.getcwd()},
          open(sys.argv[1], "w"))
"""


@pytest.mark.usefixtures("planted")
def test_a_tool_process_has_no_secret_its_own_group_and_the_given_folder(tmp_path: Path) -> None:
    out = tmp_path / "dump.json"
    folder = tmp_path / "run" / "artifacts"
    folder.mkdir(parents=True)
    outcome = asyncio.run(
        run_process(
            [sys.executable, "-c", DUMP, str(out)],
            cwd=folder,
            timeout_s=30,
            log_path=tmp_path / "tool.log",
            env={"PILOTAGE_BASE_URL": "http://127.0.0.1:1"},
        )
    )
    assert outcome.exit_code == 0, outcome.output_tail
    seen = json.loads(out.read_text())
    _assert_clean(seen["env"])
    assert seen["env"]["PILOTAGE_BASE_URL"] == "http://127.0.0.1:1"
    assert seen["pgid"] == seen["pid"] and seen["cwd"] == str(folder)


@pytest.mark.usefixtures("planted")
def test_the_repositorys_tests_get_only_the_test_variables(tmp_path: Path) -> None:
    service = tmp_path / "run" / "repo" / "svc"
    (service / "tests").mkdir(parents=True)
    (service / "tests" / "test_env.py").write_text(
        "import json, os\n\n\ndef test_dump():\n"
        f"    json.dump(dict(os.environ), open({str(tmp_path / 'env.json')!r}, 'w'))\n"
    )
    headers = {"X-Tenant": "tenant-for-the-test-process"}
    result = asyncio.run(
        run_pytest(
            service, tmp_path / "out" / "junit.xml", timeout_s=60, env={"PILOTAGE_TEST_HEADERS": json.dumps(headers)}
        )
    )
    assert result.passed == 1, result
    env = json.loads((tmp_path / "env.json").read_text())
    _assert_clean(env)
    assert json.loads(env["PILOTAGE_TEST_HEADERS"]) == headers  # by design, the test process only


def test_sandbox_env_is_an_allow_list() -> None:
    base = {"PATH": "/bin", "HOME": "/h", "LC_ALL": "C", "PILOTAGE_BUS_URL": "nats://u:p@h", "ANYTHING": "x",
            "PILOTAGE_FAULT_ERROR_RATE": "0.3", "PILOTAGE_CONTROL_PLANE": "h#i"}  # fmt: skip
    env = sandbox_env({"PILOTAGE_DB_PATH": "/d"}, base=base)
    assert env == {
        "PATH": "/bin", "HOME": "/h", "LC_ALL": "C", "PILOTAGE_FAULT_ERROR_RATE": "0.3",
        "PILOTAGE_CONTROL_PLANE": "h#i", "PILOTAGE_DB_PATH": "/d", "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1",
    }  # fmt: skip


def test_a_test_suite_request_cannot_set_other_variables_for_the_processes_it_starts(tmp_path: Path) -> None:
    # a test-suite request travels on the bus (contract-net task payloads), which run processes can write: its env
    # may only carry the store path, never LD_PRELOAD or PYTHONSTARTUP for the pytest/schemathesis it starts
    from pilotage.errors import InputError
    from pilotage.testing.suite import run_test_suite

    request = {"service_dir": str(tmp_path), "spec_path": str(tmp_path / "openapi.yaml"), "out_dir": str(tmp_path)}
    for env in ({"LD_PRELOAD": str(tmp_path / "evil.so")}, {"PILOTAGE_DB_PATH": 1}, ["PILOTAGE_DB_PATH"]):
        with pytest.raises(InputError, match="env"):
            asyncio.run(run_test_suite({**request, "env": env}))
