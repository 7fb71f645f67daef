"""Text from outside (test output, descriptors, commit messages, event data) is printed literally, never as markup.

A consumer test printing ``[/b]`` used to crash the progress printer inside the handler that closes a run (no
``flow.failed``, a run in progress for ever); a descriptor's ``owner: "[red]team[/red] [/nope]"`` made
``service add`` and ``service show`` exit 70.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import pilotage
from pilotage.catalogue import checked_event
from pilotage.cli import console
from pilotage.cli.run import _timeline_printer
from pilotage.cli.serve import _printer
from pilotage.events import CloudEvent, EventType, new_event
from pilotage.flows.feature_delivery import notify
from tests.fixtures.notes_repo import DESCRIPTOR, make_notes_repo

HOSTILE = "FAILED tests/test_x.py::test_[/b]; [red]x[/red] [bold]"
OWNER = "[red]team[/red] [/nope]"


def _failed(error: str) -> CloudEvent:
    return new_event(
        EventType.AGENT_FAILED, {"agent": "testing", "error": error}, source="/test", subject="notes", runid="r-1"
    )


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_the_timeline_printer_prints_markup_in_event_data_literally() -> None:
    show = _timeline_printer(json_mode=False)
    with console.capture() as captured:
        show(_failed(HOSTILE))
        show(new_event(EventType.FLOW_FAILED, {"status": "failed", "outcome": "[/b]", "error": HOSTILE},
                       source="/test", runid="r-1"))  # fmt: skip
    out = captured.get()
    assert f"testing failed: {HOSTILE}" in out
    assert f"failed, outcome [/b]: {HOSTILE}" in out


def test_the_serve_timeline_prints_markup_in_event_data_literally() -> None:
    with console.capture() as captured:
        _printer(json_mode=False)(_failed(HOSTILE))
    assert f"testing failed: {HOSTILE}" in captured.get()


@pytest.mark.parametrize("printer", [_timeline_printer, _printer])
def test_a_printer_that_cannot_print_logs_and_never_raises(printer: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_args: Any, **_kwargs: Any) -> None:
        raise OSError("stdout closed")

    monkeypatch.setattr(console, "print", broken)
    records = _Records()
    logger = logging.getLogger(printer.__module__)
    logger.addHandler(records)
    try:
        printer(False)(_failed(HOSTILE))  # does not raise
    finally:
        logger.removeHandler(records)
    assert [r.levelno for r in records.records] == [logging.WARNING]
    assert records.records[0].exc_info is not None


def test_a_failing_event_callback_never_stops_the_flow() -> None:
    seen: list[str] = []

    def callback(event: CloudEvent) -> None:
        seen.append(event.id)
        raise RuntimeError("printing failed")

    event = _failed(HOSTILE)
    notify(callback, event)  # logged, not raised
    notify(None, event)
    assert seen == [event.id]


def _run_cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    source = str(Path(pilotage.__file__).resolve().parents[1])  # this checkout's package, not another installed one
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(cwd), "COLUMNS": "250", "PYTHONPATH": source}
    return subprocess.run(
        [sys.executable, "-m", "pilotage", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def test_service_add_and_show_print_a_descriptors_markup_literally(tmp_path: Path) -> None:
    descriptor = DESCRIPTOR.format(name="notes").replace("owner: team-notes", f'owner: "{OWNER}"')
    repo = make_notes_repo(tmp_path / "notes", descriptor=descriptor)
    work = tmp_path / "work"
    work.mkdir()
    (work / "pilotage.toml").write_text("fleet_port_base = 19540\n", encoding="utf-8")
    added = _run_cli(work, "service", "add", str(repo))
    assert added.returncode == 0, added.stderr
    assert "added notes" in added.stdout
    shown = _run_cli(work, "service", "show", "notes")
    assert shown.returncode == 0, shown.stderr
    assert f"notes · owner {OWNER} · " in shown.stdout
    listed = _run_cli(work, "service", "list")
    assert listed.returncode == 0, listed.stderr


def test_events_tail_and_explain_print_markup_in_the_log_literally(tmp_path: Path) -> None:
    from pilotage.bus.sqlite import SQLiteBus

    decision = {"id": "d-1", "agent": "testing", "kind": "test.gate", "inputs": {"output": HOSTILE},
                "action": "[/b]fail", "rule": "[red]rule[/red] [/x]", "score": {"s": "[/y]"},
                "rationale": HOSTILE}  # fmt: skip

    async def record() -> None:
        async with SQLiteBus(f"sqlite:///{tmp_path / '.pilotage' / 'events.db'}") as bus:
            await bus.publish(_failed(HOSTILE))
            await bus.publish(checked_event(EventType.DECISION, decision, source="/test", runid="r-1", id="d-1"))

    (tmp_path / ".pilotage").mkdir()
    asyncio.run(record())
    tail = _run_cli(tmp_path, "events", "tail")
    assert tail.returncode == 0, tail.stderr
    assert f"testing failed: {HOSTILE}" in tail.stdout
    explained = _run_cli(tmp_path, "explain", "d-1")
    assert explained.returncode == 0, explained.stderr
    assert "decided test.gate → [/b]fail" in explained.stdout
    assert f"rationale {HOSTILE}" in explained.stdout
    assert "rule      [red]rule[/red] [/x]" in explained.stdout
