"""Several OS processes publish to and consume one SQLite log (issue 7 item 2), with real subprocesses."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CONSUMER = r"""
import asyncio, json, sys
from pathlib import Path
from pilotage.bus.sqlite import SQLiteBus

async def main(url: str, name: str, total: int, out: str) -> None:
    handled = []
    async with SQLiteBus(url) as bus:
        async def handler(event):
            await asyncio.sleep(0.01)
            handled.append(event.id)
            Path(out).write_text(json.dumps(handled))
        sub = await bus.subscribe("proc.*", handler, group="workers", consumer=name, batch=4)
        Path(out).write_text("[]")
        while await bus.committed("workers") < total:
            await asyncio.sleep(0.05)
        await sub.stop()

asyncio.run(main(*sys.argv[1:3], int(sys.argv[3]), sys.argv[4]))
"""

PUBLISHER = r"""
import asyncio, json, sys
from pilotage.bus.sqlite import SQLiteBus
from pilotage.events import new_event

async def main(url: str, name: str, count: int) -> None:
    async with SQLiteBus(url) as bus:
        ids = []
        for i in range(count):
            event = new_event("proc.step", {"i": i}, source=f"/{name}", subject=f"{name}-{i % 5}")
            await bus.publish(event)
            ids.append(event.id)
        print(json.dumps(ids))

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
"""


def _wait_for_files(paths: list[Path], procs: list[subprocess.Popen[str]], limit_s: float = 120) -> None:
    deadline = time.monotonic() + limit_s
    while not all(p.exists() for p in paths):
        assert all(p.poll() is None for p in procs), "a consumer process died during start-up"
        assert time.monotonic() < deadline, "consumer processes did not start"
        time.sleep(0.05)


def test_processes_share_one_log_each_event_handled_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/events.db"
    per_publisher, publishers = 60, 3
    total = per_publisher * publishers
    outs = [tmp_path / f"consumer{i}.json" for i in range(3)]
    consumers = [
        subprocess.Popen([sys.executable, "-c", CONSUMER, url, f"c{i}", str(total), str(out)], text=True)
        for i, out in enumerate(outs)
    ]
    try:
        _wait_for_files(outs, consumers)
        pubs = [
            subprocess.Popen(
                [sys.executable, "-c", PUBLISHER, url, f"p{i}", str(per_publisher)], stdout=subprocess.PIPE, text=True
            )
            for i in range(publishers)
        ]
        published: list[str] = []
        for pub in pubs:
            stdout, _ = pub.communicate(timeout=300)
            assert pub.returncode == 0
            published += json.loads(stdout)
        for proc in consumers:
            assert proc.wait(timeout=300) == 0
    finally:
        for proc in consumers:
            if proc.poll() is None:
                proc.kill()
    handled = [json.loads(out.read_text()) for out in outs]
    every = [event_id for got in handled for event_id in got]
    assert len(published) == total
    assert sorted(every) == sorted(published)  # none lost, none handled twice
    assert sum(1 for got in handled if got) >= 2  # the processes shared the work
