"""Many deliveries at once under `pilotage serve` (issue #19, item 5), as a user runs them.

Two services (the hand-written notes service under two names, each its own git repository) are served by
`pilotage up`; `pilotage deliver` is run for both at once, and once more for the first service. The control plane
runs the two services' deliveries at the same time (their runs overlap in the log), holds the first service's
second delivery in its queue until its first one ended, and `pilotage service list --json` shows both in progress
and the queued one meanwhile.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import CliResult, of_type, read_log, run_cli
from tests.fixtures.notes_repo import commit_files, make_notes_repo, trivial_change

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

#: Short stages (the concurrency is what is tested). Not conftest's FAST: two canary steps and a 3 s watch keep the
#: two services' deliveries overlapping (tests/e2e/test_demo.py runs the demo's delivery with the defaults).
SETTINGS = """testing_api_tests = false
fleet_port_base = 18740
max_concurrent_deliveries = 4
load_test_duration_s = 2.0
canary_steps_percent = [50, 100]
post_promotion_watch_s = 3.0
"""


def _deliver(work: Path, service: str, rev: str, results: dict[str, CliResult], key: str) -> None:
    results[key] = run_cli(work, "deliver", service, rev, "--json", timeout_s=600)


def _wait_queued(work: Path, count: int, timeout_s: float = 120.0) -> None:
    """Wait until the log holds ``count`` ``flow.queued`` events."""
    deadline = time.monotonic() + timeout_s
    while len(of_type(read_log(work), "flow.queued")) < count:
        assert time.monotonic() < deadline, f"fewer than {count} deliveries queued within {timeout_s} s"
        time.sleep(0.2)


def _watch_list(work: Path, stop: threading.Event, seen: list[list[dict[str, Any]]]) -> None:
    while not stop.is_set():
        listed = run_cli(work, "service", "list", "--json", timeout_s=60)
        if listed.code == 0:
            seen.append(listed.json())
        time.sleep(0.5)


def _span(events: list[Any], run_id: str) -> tuple[float, float]:
    times = {e.type.rsplit(".", 2)[-2] + "." + e.type.rsplit(".", 1)[-1]: e.time for e in events if e.runid == run_id}
    return (datetime.fromisoformat(times["flow.started"]).timestamp(),
            datetime.fromisoformat(times["flow.completed"]).timestamp())  # fmt: skip


def test_two_services_deliver_at_once_and_one_service_waits_its_turn(tmp_path: Path) -> None:
    repos = {name: make_notes_repo(tmp_path / name, name=name) for name in ("notes-a", "notes-b")}
    work = tmp_path / "ops"
    work.mkdir()
    (work / "pilotage.toml").write_text(SETTINGS, encoding="utf-8")
    assert run_cli(work, "service", "add", *map(str, repos.values())).code == 0
    revs = {name: trivial_change(repo) for name, repo in repos.items()}
    second = commit_files(repos["notes-a"], {"NOTES.md": "Notes service.\n"}, "docs: a readme")
    up = run_cli(work, "up", "--json", timeout_s=120)
    assert up.code == 0, up.stdout + up.stderr
    results: dict[str, CliResult] = {}
    stop, seen = threading.Event(), []
    try:
        lister = threading.Thread(target=_watch_list, args=(work, stop, seen))
        lister.start()
        workers = [threading.Thread(target=_deliver, args=(work, n, revs[n], results, n)) for n in revs]
        workers.append(threading.Thread(target=_deliver, args=(work, "notes-a", second, results, "again")))
        for worker in workers[:-1]:
            worker.start()
        _wait_queued(work, 2)  # notes-a's second delivery is queued last (a CLI's start-up can take seconds)
        workers[-1].start()
        for worker in workers:
            worker.join()
        stop.set()
        lister.join()
    finally:
        stop.set()
        run_cli(work, "down")
    for key, result in results.items():
        assert result.code in (0, 1), f"{key}: {result.stdout[-2000:]}{result.stderr}"
    # promoted on a quiet machine; a machine so busy that production's own latency breaks the SLO pauses the canary
    # (cause shared_degradation: "rolling back would not help") — either way the delivery ran to its end
    assert {results[k].json()["outcome"] for k in results} <= {"promoted", "paused"}, [
        r.stdout[-800:] for r in results.values()
    ]
    # both services had a delivery in progress at the same moment, and notes-a's second one was queued meanwhile
    both = [s for s in seen if all(row["in_progress"] for row in s)]
    assert both, seen[-3:]
    assert {row["name"]: row["in_progress"]["stage"] for row in both[0]}.keys() == {"notes-a", "notes-b"}
    assert any(row["name"] == "notes-a" and row["queued"] for s in seen for row in s)
    final = {row["name"]: row for row in run_cli(work, "service", "list", "--json").json()}
    assert final["notes-b"]["last_outcome"]["outcome"] == results["notes-b"].json()["outcome"]
    assert final["notes-a"]["queued"] == [] and final["notes-a"]["in_progress"] is None
    events = read_log(work)
    runs = {r.json()["run_id"]: k for k, r in results.items()}
    spans = {k: _span(events, run_id) for run_id, k in runs.items()}
    assert spans["notes-a"][0] < spans["notes-b"][1] and spans["notes-b"][0] < spans["notes-a"][1]  # overlap
    assert spans["again"][0] >= spans["notes-a"][1]  # one service: one delivery at a time
    assert len(of_type(events, "flow.queued")) == 3 and len(of_type(events, "flow.started")) == 3  # none lost/twice
    slots = [e.data for e in of_type(events, "market.auction_closed") if e.data.get("resource") == "analysis-slot"]
    assert slots  # each rollout step's analysis held a slot won at auction
