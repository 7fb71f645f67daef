"""The load-test slot across OS processes (issue 8): two processes on one sqlite:/// log contend for it.

Each child process holds the slot through :class:`~pilotage.coordination.slot.SlotArbiter` and writes when it got
and gave back the slot; the parent holds the slot first so that both children bid in the same auction.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pilotage.bus.sqlite import SQLiteBus
from pilotage.coordination import Ledger
from pilotage.coordination.slot import LOADTEST_SLOT, SlotArbiter, SlotView, bid_amount
from pilotage.events import CloudEvent, EventType

pytestmark = [pytest.mark.integration]

CHILD = """
import asyncio, json, sys, time
from pilotage.bus.sqlite import SQLiteBus
from pilotage.coordination.slot import SlotArbiter, bid_amount

async def rule(balance, auction_id):
    return bid_amount(balance, 0.5)

async def main(url, service, request, log):
    async with SQLiteBus(url) as bus:
        arbiter = SlotArbiter(bus, window_s=5.0, poll_s=0.02)
        async with arbiter.hold("performance/" + service, request, rule) as grant:
            with open(log, "a") as f:
                f.write(json.dumps({"request": request, "at": time.time(), "what": "start"}) + "\\n")
            await asyncio.sleep(0.5)
            with open(log, "a") as f:
                f.write(json.dumps({"request": request, "at": time.time(), "what": "end"}) + "\\n")
        print(json.dumps(grant.to_dict()), flush=True)

asyncio.run(main(*sys.argv[1:]))
"""


async def _half(balance: int, auction_id: str) -> int:
    return bid_amount(balance, 0.5)


async def _seed_and_block(url: str) -> tuple[SlotArbiter, object]:
    async with SQLiteBus(url) as bus:
        for service, promotions in (("svc-a", 2), ("svc-b", 1)):  # 10 and 5 credits: bids 5 and 2
            for _ in range(promotions):
                await bus.publish(CloudEvent(type=EventType.DEPLOY_PROMOTED, source="/t", subject=service, data={}))
        blocker = SlotArbiter(bus)
        grant = await blocker.acquire("performance/other", "r0/000", _half)
    return blocker, grant


async def _release_when_both_bid(url: str, grant: object, deadline: float) -> None:
    async with SQLiteBus(url) as bus:
        view = SlotView(bus, LOADTEST_SLOT)
        while len((await view.refresh()).waiting()) < 2:
            assert time.time() < deadline, "the two processes did not both bid"
            await asyncio.sleep(0.05)
        await SlotArbiter(bus).release(grant)  # type: ignore[arg-type]


async def _ledger(url: str) -> tuple[Ledger, list[dict[str, object]]]:
    async with SQLiteBus(url) as bus:
        closes = [r.event.data for r in await bus.read(1, 10_000, pattern=EventType.MARKET_AUCTION_CLOSED)]
        return await Ledger.load(bus), closes


def test_two_processes_hold_the_slot_one_at_a_time_by_second_price_auction(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/events.db"
    log = tmp_path / "holds.jsonl"
    _, grant = asyncio.run(_seed_and_block(url))
    procs = [
        subprocess.Popen([sys.executable, "-c", CHILD, url, service, request, str(log)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
        for service, request in (("svc-b", "rb/bbb"), ("svc-a", "ra/aaa"))
    ]  # fmt: skip
    try:
        asyncio.run(_release_when_both_bid(url, grant, time.time() + 60))
        outputs = [p.communicate(timeout=60) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()
    assert [p.returncode for p in procs] == [0, 0], [err for _, err in outputs]
    grants = {g["request"]: g for g in (json.loads(out.strip().splitlines()[-1]) for out, _ in outputs)}
    holds = [json.loads(line) for line in log.read_text().splitlines()]
    # exactly one holder at a time: svc-a (the higher bid) starts and ends before svc-b starts
    assert [(h["request"], h["what"]) for h in holds] == [
        ("ra/aaa", "start"), ("ra/aaa", "end"), ("rb/bbb", "start"), ("rb/bbb", "end")]  # fmt: skip
    assert holds[1]["at"] <= holds[2]["at"]
    assert (grants["ra/aaa"]["price"], grants["ra/aaa"]["via"], grants["ra/aaa"]["bids"]) == (2, "second price", 2)
    assert (grants["rb/bbb"]["price"], grants["rb/bbb"]["auctions"]) == (0, 2)
    ledger, closes = asyncio.run(_ledger(url))
    assert ledger.balance("performance/svc-a") == 8 and ledger.balance("performance/svc-b") == 5
    assert all(value >= 0 for value in ledger.balances().values())
    assert [c["auction_id"] for c in closes] == ["loadtest-slot#1", "loadtest-slot#2", "loadtest-slot#3"]
    assert closes[1]["losers"] == ["performance/svc-b"] and closes[1]["winners"][0]["agent"] == "performance/svc-a"
    # `pilotage market` shows the per-service accounts, the slot (free again) and the auctions with their requests
    shown = subprocess.run([sys.executable, "-m", "pilotage", "market", "--bus", url, "--json"], capture_output=True,
                           text=True, timeout=60, cwd=tmp_path)  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    report = json.loads(shown.stdout)
    balances = {row["agent"]: row["balance"] for row in report["balances"]}
    assert balances["performance/svc-a"] == 8 and balances["performance/svc-b"] == 5
    assert report["slot"] == {"resource": "loadtest-slot", "holder": None, "waiting": [], "auctions": 3}
    assert [w["request"] for a in report["auctions"] for w in a["winners"]] == ["r0/000", "ra/aaa", "rb/bbb"]
