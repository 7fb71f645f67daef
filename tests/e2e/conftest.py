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


@pytest.fixture
def petstore() -> Path:
    path = SHARED_SPECS / "petstore3.yaml"
    assert path.exists(), f"{path} is missing: the e2e suite needs ../shared/specs"
    return path
