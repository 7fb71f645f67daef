"""The capabilities a worker process can offer, as plain async functions (JSON object in, JSON object out).

=========== =========================================================== ===========================================
capability  what the worker does                                          duration estimate (its bid)
=========== =========================================================== ===========================================
``loadtest`` start the head version (fresh SQLite file, no fault), run     ``duration_s`` + 10 s (start-up, Locust
            Locust (:func:`run_load_test_task`), stop the version         start and stop)
``tests``   the testing agent's test run (:data:`TESTS_FUNCTION`,        ``estimate_s`` in the payload, else 60 s
            ``run_test_suite`` of issue #5)
``echo``    returns its payload after ``sleep_s`` seconds; raises when     ``sleep_s``
            ``fail`` is set (checks a worker mesh; tests and benchmarks)
=========== =========================================================== ===========================================

Payload paths are absolute and must be readable by the worker: workers run on the machine (or share the
filesystem) of the control plane.
"""

from __future__ import annotations

import asyncio
import importlib
from pathlib import Path
from typing import Any

from pilotage.coordination.worker import Capability
from pilotage.errors import InputError
from pilotage.perf.locust_runner import STARTUP_MARGIN_S, LoadTestResult, run_load_test
from pilotage.perf.stats import EndpointStats

__all__ = [
    "KNOWN_CAPABILITIES",
    "TESTS_FUNCTION",
    "load_test_result_from_dict",
    "loadtest_exec_timeout_s",
    "resolve_capabilities",
    "run_echo_task",
    "run_load_test_task",
]

#: Import string ``module:function`` of the test run (JSON in/out) that the ``tests`` capability runs (issue #5).
TESTS_FUNCTION = "pilotage.testing.suite:run_test_suite"
#: Seconds a load test needs beyond its duration (start the version, start and stop Locust).
LOADTEST_OVERHEAD_S = 10.0
#: Every capability name ``pilotage worker --capabilities`` accepts.
KNOWN_CAPABILITIES = ("echo", "loadtest", "tests")


async def run_echo_task(payload: dict[str, Any]) -> dict[str, Any]:
    """Return ``{"echo": payload}`` after ``payload["sleep_s"]`` seconds (default 0).

    Raises:
        InputError: ``payload["fail"]`` is set (its text is the error), or ``sleep_s`` is not a number ≥ 0.
    """
    try:
        sleep_s = float(payload.get("sleep_s", 0.0))
    except (TypeError, ValueError) as exc:
        raise InputError(f"echo task: sleep_s {payload.get('sleep_s')!r} is not a number", hint="send seconds") from exc
    if sleep_s < 0:
        raise InputError(f"echo task: sleep_s {sleep_s} is negative", hint="send seconds >= 0")
    await asyncio.sleep(sleep_s)
    if payload.get("fail"):
        raise InputError(f"echo task failed as asked: {payload['fail']}")
    return {"echo": payload}


def _required(payload: dict[str, Any], key: str) -> str:
    value = payload.get(key)
    if not isinstance(value, str) or not value:
        raise InputError(f"load-test task: payload has no {key!r}", hint="send the keys of run_load_test_task")
    return value


async def run_load_test_task(payload: dict[str, Any], runtime: Any = None) -> dict[str, Any]:
    """Load-test one version of a service: start it, run Locust, stop it (always).

    Args:
        payload: ``{"service", "version", "head_dir", "spec_path", "out_dir", "users", "duration_s",
            "ready_timeout_s"}`` (paths absolute, durations in seconds), optional ``credentials`` ``{"header",
            "env"}``: names only, the value is read from the environment of the process that runs the test;
            optional ``workload`` (issue 17: a ``deploy.requested`` role of a service with a descriptor —
            ``command``, ``prepared``, ``health_path``, ``env``): started by its own command.
        runtime: the :class:`~pilotage.runtime.base.Runtime` to start the version on (default: a fresh
            :class:`~pilotage.runtime.local.LocalRuntime`, closed afterwards).

    Returns:
        :meth:`LoadTestResult.to_dict` (``users``, ``duration_s``, ``endpoints``, ``total``, ``error_rate``,
        ``csv_path`` …), the ``perf.measured`` figures.

    Raises:
        InputError: a key is missing or ``head_dir`` is not a folder.
        ConfigError, BackendError: the version does not start or Locust cannot run.
    """
    from pilotage.runtime.base import scratch_instance

    head_dir = Path(_required(payload, "head_dir"))
    if not head_dir.is_dir():
        raise InputError(f"load-test task: head_dir {head_dir} is not a folder", hint="send an existing folder")
    out_dir = Path(_required(payload, "out_dir"))
    own = runtime is None
    if runtime is None:
        from pilotage.runtime.local import LocalRuntime

        runtime = LocalRuntime(log_dir=out_dir / "logs")
    ready_timeout_s = float(payload.get("ready_timeout_s", 30.0))
    try:
        if payload.get("workload"):  # issue 17: a service with a descriptor, started by its own start command
            from pilotage.rollout.controller import role_workload
            from pilotage.runtime.base import scratch_workload

            workload = role_workload(_required(payload, "service"), {**payload["workload"], "path": str(head_dir)})
            started = scratch_workload(runtime, workload, ready_timeout_s=ready_timeout_s)
        else:
            started = scratch_instance(
                runtime,
                service=_required(payload, "service"),
                version=_required(payload, "version"),
                path=head_dir,
                data_dir=out_dir,
                ready_timeout_s=ready_timeout_s,
            )
        async with started as instance:
            result = await run_load_test(
                Path(_required(payload, "spec_path")),
                instance.url,
                out_dir,
                users=int(payload.get("users", 10)),
                duration_s=float(payload.get("duration_s", 5.0)),
                credentials=payload.get("credentials") or None,  # names only; the value is read where it runs
            )
    finally:
        if own:
            await runtime.close()
    return result.to_dict()


def _stats(data: dict[str, Any]) -> EndpointStats:
    fields = EndpointStats.__dataclass_fields__
    return EndpointStats(**{k: v for k, v in data.items() if k in fields})


def load_test_result_from_dict(data: dict[str, Any]) -> LoadTestResult:
    """Rebuild a :class:`LoadTestResult` from :meth:`LoadTestResult.to_dict` (a worker's ``done`` result).

    Raises:
        InputError: the dict lacks ``total`` or ``endpoints``.
    """
    if not isinstance(data.get("total"), dict) or not isinstance(data.get("endpoints"), list):
        raise InputError("load-test result has no total/endpoints", hint="the worker must return run_load_test_task's")
    return LoadTestResult(
        endpoints=[_stats(e) for e in data["endpoints"]],
        total=_stats(data["total"]),
        users=int(data.get("users", 0)),
        spawn_rate=float(data.get("spawn_rate", 0.0)),
        duration_s=float(data.get("duration_s", 0.0)),
        wall_s=float(data.get("wall_s", 0.0)),
        exit_code=data.get("exit_code"),
        timed_out=bool(data.get("timed_out", False)),
        csv_path=Path(str(data.get("csv_path", ""))),
        locustfile=Path(str(data.get("locustfile", ""))),
    )


def _tests_function() -> Any:
    module_name, _, name = TESTS_FUNCTION.partition(":")
    try:
        function = getattr(importlib.import_module(module_name), name, None)
    except ImportError:
        function = None
    if function is None:
        raise InputError(
            f"capability 'tests' needs {module_name}.{name}, which this installation does not have",
            hint="upgrade pilotage, or start the worker with --capabilities loadtest,echo",
        )
    return function


def _with_headers(function: Any, headers: dict[str, str]) -> Any:
    async def run(payload: dict[str, Any]) -> Any:
        return await function({**payload, "headers": dict(headers)})

    return run


def resolve_capabilities(names: list[str], *, headers: dict[str, str] | None = None) -> dict[str, Capability]:
    """Return the :class:`Capability` for each name.

    Args:
        names: capability names (:data:`KNOWN_CAPABILITIES`).
        headers: the test request headers of this worker's settings (``testing_auth_headers``); the ``tests``
            capability adds them to each task, whose published payload carries none (issue #15: no credential on
            the bus).

    Raises:
        InputError: a name is unknown (the message lists the known ones) or the list is empty.
    """
    cleaned = [n.strip() for n in names if n.strip()]
    if not cleaned:
        raise InputError("no capability given", hint=f"use --capabilities with some of {', '.join(KNOWN_CAPABILITIES)}")
    unknown = [n for n in cleaned if n not in KNOWN_CAPABILITIES]
    if unknown:
        raise InputError(
            f"unknown capabilit{'y' if len(unknown) == 1 else 'ies'} {', '.join(repr(u) for u in unknown)}",
            hint=f"use some of {', '.join(KNOWN_CAPABILITIES)}",
        )
    out: dict[str, Capability] = {}
    for name in cleaned:
        if name == "echo":
            out[name] = Capability("echo", run_echo_task, lambda p: float(p.get("sleep_s", 0.0) or 0.0))
        elif name == "loadtest":
            out[name] = Capability(
                "loadtest", run_load_test_task, lambda p: float(p.get("duration_s", 5.0)) + LOADTEST_OVERHEAD_S
            )
        else:
            out[name] = Capability(
                "tests",
                _with_headers(_tests_function(), headers or {}),
                lambda p: float(p.get("estimate_s", 60.0) or 60.0),
            )
    return out


def loadtest_exec_timeout_s(duration_s: float, ready_timeout_s: float) -> float:
    """Return the execution timeout of a load-test task: ``duration_s + STARTUP_MARGIN_S + ready_timeout_s``."""
    return duration_s + STARTUP_MARGIN_S + ready_timeout_s
