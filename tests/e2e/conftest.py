"""Helpers to run the ``pilotage`` CLI as a user does: a subprocess in its own working folder."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pilotage.bus.sqlite import SQLiteBus
from pilotage.events import CloudEvent

SHARED_SPECS = Path(__file__).resolve().parents[2].parent / "shared" / "specs"
#: A copy of the Swagger Petstore 3 document (Apache-2.0), used when ../shared/specs is not beside the checkout.
VENDORED_SPECS = Path(__file__).resolve().parents[1] / "fixtures" / "specs"


def fast_settings(*, api_tests: bool = False, canary_steps: tuple[int, ...] = ()) -> str:
    """``pilotage.toml`` lines that shorten a pipeline's stages for a test that asserts nothing about their length.

    A 2 s load test (default 5 s, run on the baseline and the change), a 2 s post-promotion watch (default 10 s),
    2 s analysis windows (default 3 s; a step still analyses until its evidence suffices, within
    ``rollout_inconclusive_grace_s``), 3 schemathesis examples per operation and phase (default 10), and no
    spec-derived tests of a delivered service (``testing_api_tests``; a generated service is tested from its spec
    either way) unless ``api_tests``. Every stage still runs. ``canary_steps`` (percent, ending at 100) replaces the
    canary's default weights 10, 25, 50, 100 for a test that asserts nothing about them: each step is analysed
    until its evidence suffices (18-26 s each on a loaded 2-core machine); tests/e2e/test_deliver.py keeps the
    default steps. The test's own settings (a ``fleet_port_base`` ...) go beside these lines; a key given twice
    is a TOML error, so a test that needs another value of one of these writes its settings out in full.

    Returns:
        TOML text, one ``key = value`` per line, ending with a newline.
    """
    steps = f"canary_steps_percent = [{', '.join(map(str, canary_steps))}]\n" if canary_steps else ""
    return (
        f"testing_api_tests = {str(api_tests).lower()}\nload_test_duration_s = 2.0\npost_promotion_watch_s = 2.0\n"
        f"analysis_window_s = 2.0\nschemathesis_max_examples = 3\n{steps}"
    )


#: :func:`fast_settings` without spec-derived tests of a delivered service: what most e2e tests use.
FAST = fast_settings()


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


def run_cli(cwd: Path, *args: str, timeout_s: float = 420) -> CliResult:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PILOTAGE_")}
    env["COLUMNS"] = "200"
    proc = subprocess.run(
        [sys.executable, "-m", "pilotage", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


def read_log(cwd: Path) -> list[CloudEvent]:
    async def go() -> list[CloudEvent]:
        async with SQLiteBus(f"sqlite:///{cwd}/.pilotage/events.db") as bus:
            return [r.event for r in await bus.read(1, 100_000)]

    return asyncio.run(go())


def of_type(events: list[CloudEvent], suffix: str) -> list[CloudEvent]:
    return [e for e in events if e.type == f"dev.pilotage.{suffix}"]


def why_failed(cwd: Path) -> str:
    """The evidence behind a failed delivery, for an assertion's message: the last test, SLO and rollback events.

    A CI log keeps only the assertion's message, not the run's report, so a failure names its cause here.
    """
    try:
        events = read_log(cwd)
    except Exception as exc:  # noqa: BLE001 - a message helper never hides the assertion that called it
        return f"\n(no event log: {exc})"
    found = []
    for kind in ("tests.completed", "slo.evaluated", "deploy.rolled_back", "flow.failed"):
        last = of_type(events, kind)[-1:]
        found += [f"\n{kind}: {json.dumps(e.data, default=str)[:4000]}" for e in last]
    return "".join(found)


@pytest.fixture
def petstore() -> Path:
    """The Petstore spec from ../shared/specs (as CI lays it out), else the vendored copy of the same file."""
    shared = SHARED_SPECS / "petstore3.yaml"
    return shared if shared.exists() else VENDORED_SPECS / "petstore3.yaml"


@pytest.fixture
def checkout() -> Path:
    """The bundled checkout-service spec (small: the fastest real spec for bad-input runs)."""
    from tests.fixtures import CHECKOUT_SPEC

    return CHECKOUT_SPEC
