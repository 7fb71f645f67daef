"""Run a Locust load test against a service, in a subprocess, and summarise it per endpoint.

Why Locust runs in a subprocess: importing ``locust`` runs ``gevent.monkey.patch_all()`` (``locust/__init__.py``),
which replaces ``socket``, ``ssl``, ``select``, ``threading`` and ``time.sleep`` process-wide with cooperative
gevent versions. Inside the control plane that would break the asyncio event loop that runs the bus, the agents
and the traffic proxy (asyncio's selector and its threads would become greenlets). A child process keeps gevent
in its own interpreter, gives a hard wall-clock bound (the process group is killed on timeout, see
:mod:`pilotage.testing.process`) and never blocks the loop.

The command (Locust's documented headless CLI):

    python -m locust -f LOCUSTFILE --headless -u USERS -r RATE -t DURATIONs --host URL --csv PREFIX --only-summary

plus ``--loglevel WARNING`` and ``--exit-code-on-error 0`` (failed requests are results, not a crashed run). The
locustfile comes from :mod:`pilotage.perf.locustfile`; results are read from ``PREFIX_stats.csv``
(:mod:`pilotage.perf.stats`).

Network: the only host Locust talks to is ``--host`` (the runtime gives ``http://127.0.0.1:PORT``). Locust 2.x has
no usage telemetry or update check; OpenTelemetry export only starts with ``--otel``, which is not passed, and
``OTEL_SDK_DISABLED=true`` is set besides. The child's environment is the allow-list of
:mod:`pilotage.runtime.sandbox` (no ``LOCUST_*``, ``OTEL_*``, settings or credentials — except the one variable of
the service's own ``traffic.credentials`` when given: its secured operations are then called) and the
working directory is the (fresh) output folder, so neither environment nor a stray ``locust.conf`` /
``pyproject.toml`` can change the run (``~/.locust.conf`` is Locust's only other configuration source).
"""

from __future__ import annotations

import asyncio
import math
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pilotage.errors import BackendError, InputError
from pilotage.perf.locustfile import LoadTarget, write_locustfile
from pilotage.perf.stats import EndpointStats, parse_stats_csv
from pilotage.secrets import register_secrets
from pilotage.spec.openapi import api_url
from pilotage.testing.process import run_process

__all__ = ["LoadTestResult", "build_command", "run_load_test"]

#: Seconds allowed on top of the test duration for Locust to start, stop its users and write the CSV.
STARTUP_MARGIN_S = 30.0


@dataclass(frozen=True)
class LoadTestResult:
    """Outcome of one load test.

    Attributes:
        endpoints: per-endpoint figures, in Locust's order.
        total: the aggregated figures of all endpoints.
        users: concurrent virtual users.
        spawn_rate: users started per second.
        duration_s: requested test duration in seconds (Locust's ``-t``, rounded up to whole seconds).
        wall_s: wall-clock seconds of the whole subprocess (start-up and shutdown included).
        exit_code: Locust's exit status (negative: killed), None if unknown.
        timed_out: the time budget ran out and Locust was killed (figures are those of the last CSV write).
        targets: the operations the locustfile called.
        csv_path: ``PREFIX_stats.csv``.
        locustfile: the generated locustfile.
        log_path: Locust's console output.
    """

    endpoints: list[EndpointStats]
    total: EndpointStats
    users: int
    spawn_rate: float
    duration_s: float
    wall_s: float
    exit_code: int | None
    timed_out: bool
    targets: list[LoadTarget] = field(default_factory=list)
    csv_path: Path = Path()
    locustfile: Path = Path()
    log_path: Path = Path()

    @property
    def error_rate(self) -> float:
        """Failed requests / requests over all endpoints (0.0 without requests)."""
        return self.total.error_rate

    def to_dict(self) -> dict[str, Any]:
        """Return the ``perf.measured`` measurement keys plus run metadata (JSON-serialisable)."""
        return {
            "users": self.users,
            "spawn_rate": self.spawn_rate,
            "duration_s": self.duration_s,
            "endpoints": [e.to_dict() for e in self.endpoints],
            "total": self.total.to_dict(),
            "error_rate": round(self.error_rate, 6),
            "wall_s": round(self.wall_s, 3),
            "exit_code": self.exit_code,
            "timed_out": self.timed_out,
            "targets": [t.operation for t in self.targets],
            "csv_path": str(self.csv_path),
            "locustfile": str(self.locustfile),
        }


def build_command(
    locustfile: Path, base_url: str, csv_prefix: Path, *, users: int, spawn_rate: float, duration_s: int
) -> list[str]:
    """Return the headless Locust command line (no shell)."""
    return [
        sys.executable, "-m", "locust",
        "-f", str(locustfile),
        "--headless",
        "-u", str(users),
        "-r", f"{spawn_rate:g}",
        "-t", f"{duration_s}s",
        "--host", base_url,
        "--csv", str(csv_prefix),
        "--only-summary",
        "--loglevel", "WARNING",
        "--exit-code-on-error", "0",
    ]  # fmt: skip


async def run_load_test(
    spec_path: Path,
    base_url: str,
    out_dir: Path,
    *,
    users: int = 10,
    duration_s: float = 5.0,
    spawn_rate: float | None = None,
    timeout_s: float | None = None,
    include_post: bool = True,
    credentials: Mapping[str, str] | None = None,
) -> LoadTestResult:
    """Load-test the service at ``base_url`` on the operations of ``spec_path`` (see :mod:`pilotage.perf.locustfile`).

    Args:
        spec_path: the service's OpenAPI document.
        base_url: ``http://127.0.0.1:PORT`` of the running service (requests go under the document's ``servers[0]``
            path: :func:`pilotage.spec.openapi.api_url`).
        out_dir: folder for ``locustfile.py``, ``locust_stats.csv`` (and Locust's other CSVs) and ``locust.log``.
        users: concurrent virtual users (``settings.load_test_users``).
        duration_s: test duration in seconds (``settings.load_test_duration_s``; rounded up, at least 1 s).
        spawn_rate: users started per second (default: all users in the first second).
        timeout_s: wall-clock bound of the subprocess (default: ``duration_s`` + :data:`STARTUP_MARGIN_S`).
        include_post: also call collection POSTs that have an example body.
        credentials: ``{"header", "env"}`` (``traffic.credentials`` of the service's ``pilotage.yaml``): when the
            variable ``env`` is set here, its value goes to the Locust process's environment only (registered with
            the secret masker; the locustfile names the variable) and secured operations are called with it.

    Returns:
        The :class:`LoadTestResult`.

    Raises:
        InputError: the spec does not load or has no operation a load test can call; ``users`` < 1.
        BackendError: Locust could not run (no stats CSV written); the message quotes its last output line.
    """
    if users < 1:
        raise InputError(f"load test users must be >= 1, got {users}", hint="set load_test_users to 1 or more")
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    locustfile = out_dir / "locustfile.py"
    secret = os.environ.get(str(credentials["env"]), "") if credentials else ""
    env = {"OTEL_SDK_DISABLED": "true"}
    if credentials and secret:
        register_secrets([secret])
        env[str(credentials["env"])] = secret
    targets = await asyncio.to_thread(
        write_locustfile,
        Path(spec_path),
        locustfile,
        include_post=include_post,
        credentials=credentials if secret else None,
    )
    seconds = max(1, math.ceil(duration_s))
    rate = float(spawn_rate) if spawn_rate is not None else float(users)
    csv_prefix = out_dir / "locust"
    csv_path = out_dir / "locust_stats.csv"
    for stale in out_dir.glob("locust_*.csv"):
        stale.unlink()
    host = await asyncio.to_thread(api_url, base_url, Path(spec_path))  # the document's servers[0] path after it
    argv = build_command(locustfile, host, csv_prefix, users=users, spawn_rate=rate, duration_s=seconds)
    outcome = await run_process(
        argv,
        cwd=out_dir,
        timeout_s=timeout_s if timeout_s is not None else seconds + STARTUP_MARGIN_S,
        log_path=out_dir / "locust.log",
        env=env,
    )
    if not csv_path.is_file():
        last = outcome.output_tail[-1] if outcome.output_tail else "(no output)"
        what = "timed out" if outcome.timed_out else f"exited with {outcome.exit_code}"
        raise BackendError(
            f"locust {what} without writing {csv_path.name}: {last}",
            hint=f"read {outcome.log_path}",
            log_path=outcome.log_path,
        )
    endpoints, total = parse_stats_csv(csv_path)
    return LoadTestResult(
        endpoints=endpoints,
        total=total,
        users=users,
        spawn_rate=rate,
        duration_s=float(seconds),
        wall_s=outcome.duration_s,
        exit_code=outcome.exit_code,
        timed_out=outcome.timed_out,
        targets=targets,
        csv_path=csv_path,
        locustfile=locustfile,
        log_path=outcome.log_path,
    )
