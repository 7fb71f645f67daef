"""Issue #15, finding 4: secrets are masked by value wherever Pilotage writes, and its files are owner-only.

Real backends: the sqlite event log and graph are written, then their files (with ``-wal``) are read as bytes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import stat
from pathlib import Path

import pytest

from pilotage.bus.sqlite import SQLiteBus
from pilotage.events import new_event
from pilotage.graph.sqlite import SQLiteGraph
from pilotage.report import write_report
from pilotage.secrets import (
    MASK,
    MaskingFormatter,
    SecretMasker,
    environment_secrets,
    masker,
    private_dir,
    private_umask,
    register_secrets,
)
from pilotage.settings import load_settings

#: Unique values: the process-wide masker keeps what a test registers.
HEADER_SECRET = "hdr-secret-b81c4e"
URL_SECRET = "url-secret-0a93d7"


def test_masker_replaces_values_and_their_encodings_not_short_ones() -> None:
    m = SecretMasker(['p@ss word/"x"', "ab"])
    text = 'raw p@ss word/"x" json "p@ss word/\\"x\\"" url p%40ss%20word%2F%22x%22 plus p%40ss+word%2F%22x%22 ab'
    assert m.mask_text(text) == f'raw {MASK} json "{MASK}" url {MASK} plus {MASK} ab'
    nested = {"k": [f"a {HEADER_SECRET}", ("x", 1)], HEADER_SECRET: None}
    assert SecretMasker([HEADER_SECRET]).mask(nested) == {"k": [f"a {MASK}", ("x", 1)], MASK: None}
    assert SecretMasker().mask_text("anything") == "anything"


def test_load_settings_registers_the_configured_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PILOTAGE_TESTING_AUTH_HEADERS", json.dumps({"X-Tenant": HEADER_SECRET}))
    monkeypatch.setenv("PILOTAGE_LLM_URL", f"https://bot:{URL_SECRET}@llm.invalid/v1")
    monkeypatch.setenv("DEPLOY_API_TOKEN", "env-token-6e22a9f0")
    monkeypatch.setenv("SHORT_TOKEN", "1")
    settings = load_settings()
    assert HEADER_SECRET in settings.secret_values() and URL_SECRET in settings.secret_values()
    assert "env-token-6e22a9f0" in environment_secrets() and "1" not in environment_secrets()
    text = masker().mask_text(f"{HEADER_SECRET} {URL_SECRET} env-token-6e22a9f0 1")
    assert text == f"{MASK} {MASK} {MASK} 1"


def _contains(folder: Path, secret: str) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]


def test_no_secret_reaches_the_event_log_the_graph_or_a_report(tmp_path: Path) -> None:
    secret = "planted-secret-5d0e7a"
    register_secrets([secret])
    data = {"curl": f"curl -H 'X-Tenant: {secret}' http://127.0.0.1/x", "nested": {"h": [secret]}}
    event = new_event("dev.pilotage.tests.completed", data, source="/t", subject="svc", runid="run-1")

    async def publish() -> list[dict[str, object]]:
        async with SQLiteBus(f"sqlite:///{tmp_path}/events.db") as bus:
            await bus.publish(event)
            await bus.publish_many([new_event("dev.pilotage.x", {"v": secret}, source="/t")])
            return [r.event.data for r in await bus.read(1, 10)]

    stored = asyncio.run(publish())
    assert stored[0] == {"curl": f"curl -H 'X-Tenant: {MASK}' http://127.0.0.1/x", "nested": {"h": [MASK]}}
    assert stored[1] == {"v": MASK}
    graph = SQLiteGraph(f"sqlite:///{tmp_path}/graph.db")
    node = graph.upsert_node("TestRun", "r1", {"failure": f"401 with {secret}"})
    graph.upsert_node("Commit", "c1")
    graph.upsert_edge(node.id, "OF", "Commit:c1", {"why": secret})
    assert graph.get_node(node.id).props == {"failure": f"401 with {MASK}"}  # type: ignore[union-attr]
    graph.close()
    report = write_report(tmp_path / "report.md", [event.model_copy(update={"data": data})], title=f"run {secret}")
    assert _contains(tmp_path, secret) == []
    assert stat.S_IMODE(report.stat().st_mode) == 0o600


def test_the_log_formatter_masks_messages_arguments_and_tracebacks() -> None:
    secret = "log-secret-c47b19"
    register_secrets([secret])
    try:
        raise ValueError(f"bad {secret}")
    except ValueError:
        import sys

        record = logging.LogRecord("pilotage.x", logging.ERROR, __file__, 1, "sent %s", (secret,), sys.exc_info())
    line = MaskingFormatter("%(message)s").format(record)
    assert secret not in line and line.startswith(f"sent {MASK}") and f"bad {MASK}" in line


def test_files_made_under_the_private_umask_are_owner_only(tmp_path: Path) -> None:
    loose = tmp_path / "state"
    loose.mkdir(mode=0o755)
    loose.chmod(0o755)
    old = private_umask()
    try:
        assert stat.S_IMODE(private_dir(loose).stat().st_mode) == 0o700  # an existing folder is tightened

        async def write() -> None:
            async with SQLiteBus(f"sqlite:///{loose}/events.db") as bus:
                await bus.publish(new_event("dev.pilotage.x", {}, source="/t"))

        asyncio.run(write())
        (loose / "runs" / "r1").mkdir(parents=True)
    finally:
        os.umask(old)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in loose.rglob("*")}
    assert {"events.db", "runs", "r1"} <= set(modes)
    assert all(mode & 0o077 == 0 for mode in modes.values()), modes


async def _echo_suite(payload: dict[str, object]) -> dict[str, object]:
    return dict(payload)


def test_a_worker_adds_its_own_test_headers_to_tasks_whose_payload_has_none(monkeypatch: pytest.MonkeyPatch) -> None:
    """The task payload is published on the bus: credentials come from the worker's settings, not from the log."""
    from pilotage.coordination import tasks

    monkeypatch.setattr(tasks, "TESTS_FUNCTION", f"{__name__}:_echo_suite")
    capability = tasks.resolve_capabilities(["tests"], headers={"X-Tenant": HEADER_SECRET})["tests"]
    ran = asyncio.run(capability.run({"service_dir": "/s"}))
    assert ran == {"service_dir": "/s", "headers": {"X-Tenant": HEADER_SECRET}}
