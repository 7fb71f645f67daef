"""The fleet keeper: production behind a stable address, re-created after a crash, scaled to zero and woken, down.

Real processes (a hand-written FastAPI service in its own git repository, started from its descriptor), the local
runtime's proxy on a fixed stable port, the log on memory://.
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import httpx

from pilotage.agent import AgentContext
from pilotage.bus.memory import MemoryBus
from pilotage.fleet.keeper import FleetKeeper
from pilotage.fleet.registry import add_service, load_fleet
from pilotage.graph.sqlite import SQLiteGraph
from pilotage.policy.rego import RegoPolicyEngine
from pilotage.runtime.local import LocalRuntime
from pilotage.settings import Settings
from tests.fixtures.notes_repo import make_notes_repo

PORT = 18680


def _ctx(tmp_path: Path) -> AgentContext:
    settings = Settings(home=tmp_path / ".pilotage", service_ready_timeout_s=20.0)
    return AgentContext(
        bus=MemoryBus(),
        graph=SQLiteGraph(f"sqlite:///{tmp_path / 'graph.db'}"),
        policy=RegoPolicyEngine(),
        runtime=LocalRuntime(log_dir=tmp_path / "logs"),
        settings=settings,
    )


async def _types(ctx: AgentContext) -> list[tuple[str, str]]:
    events = [r.event for r in await ctx.bus.read(1, 10_000)]
    return [(e.type.rsplit(".", 2)[-2] + "." + e.type.rsplit(".", 1)[-1], e.data.get("reason", "")) for e in events]


def test_production_serves_at_its_stable_address_is_recreated_scaled_to_zero_woken_and_stopped(
    tmp_path: Path,
) -> None:
    repo = make_notes_repo(tmp_path / "notes")

    async def scenario() -> None:
        ctx = _ctx(tmp_path)
        try:
            await add_service(ctx.bus, ctx.graph, repo, port_base=PORT, port=PORT)
            keeper = FleetKeeper(ctx, poll_s=0.2, idle_after_s=1.0)
            [up] = await keeper.up()
            stable = f"http://127.0.0.1:{PORT}"
            assert up["url"] == stable and up["reason"] == "up"
            async with httpx.AsyncClient(timeout=10) as client:
                note = (await client.post(f"{stable}/notes", json={"text": "a"})).json()
                assert (await client.get(f"{stable}/notes/{note['id']}")).status_code == 200

                os.killpg(up["pid"], signal.SIGKILL)  # production dies
                await asyncio.sleep(0.3)
                await keeper.check()
                fleet = await load_fleet(ctx.bus)
                assert fleet["notes"].up is not None and fleet["notes"].up["reason"] == "recreated"
                assert (await client.get(f"{stable}/notes")).status_code == 200

                await asyncio.sleep(1.2)  # idle past idle_after_s
                await keeper.check()
                route = await ctx.runtime.get_route("service:notes")
                assert route is not None and route.backends == {}  # cold, still open
                woken = await client.get(f"{stable}/notes")  # held while production starts again
                assert woken.status_code == 200 and woken.json() == []  # a new process: in-memory data is gone
            fleet = await load_fleet(ctx.bus)
            assert fleet["notes"].up is not None and fleet["notes"].up["reason"] == "woken"
            assert len(fleet["notes"].wake_s) == 1 and 0.0 < fleet["notes"].wake_s[0] < 20.0
            stats = await ctx.runtime.route_stats("service:notes")
            assert stats.wakes == 1

            assert await keeper.down() == ["notes"]
            assert await ctx.runtime.get_route("service:notes") is None
            reasons = [reason for kind, reason in await _types(ctx) if kind in ("service.up", "service.down")]
            assert reasons == ["up", "recreated", "scaled_to_zero", "woken", "down"]
            events = [r.event for r in await ctx.bus.read(1, 10_000)]
            scale = [e.data for e in events if e.type.endswith("decision.made") and e.data["kind"] == "cost.scale"]
            assert [d["action"] for d in scale] == ["scale_down"]  # the cost agent decided it ...
            verdicts = [e.data for e in events if e.type.endswith("policy.evaluated") and e.data["action"] == "scale"]
            assert len(verdicts) == 1 and verdicts[0]["allow"]  # ... and the scale policy allowed it, before it ran
            assert verdicts[0]["input"]["environment"] == "service:notes"
        finally:
            await ctx.runtime.close()
            ctx.graph.close()

    asyncio.run(scenario())


def test_serve_brings_the_fleet_up_providers_first_and_a_bounded_number_at_once(tmp_path: Path, monkeypatch) -> None:
    from types import SimpleNamespace

    from pilotage.fleet import keeper as keeper_module
    from pilotage.fleet.registry import ManagedService

    def managed(name: str, consumes: tuple[str, ...] = ()) -> ManagedService:
        descriptor: dict[str, object] = {"name": name, "start": "x {port}"}
        if consumes:
            descriptor["consumes"] = [{"service": p, "env": f"{p.upper()}_URL", "operations": ["op"]} for p in consumes]
        return ManagedService(name, f"/srv/{name}", 18000, "c" * 40, descriptor)

    fleet = {
        "storefront": managed("storefront", ("orders",)),
        "orders": managed("orders", ("payments", "inventory")),
        "payments": managed("payments"),
        "inventory": managed("inventory"),
        "catalog": managed("catalog"),
    }

    async def load(_bus: object) -> dict[str, ManagedService]:
        return fleet

    monkeypatch.setattr(keeper_module, "load_fleet", load)
    running: set[str] = set()
    started: dict[str, set[str]] = {}  # service → the services still running when it started
    ended: list[str] = []
    most = 0

    async def bring_up(name: str) -> None:
        nonlocal most
        started[name] = set(running)
        running.add(name)
        most = max(most, len(running))
        await asyncio.sleep(0.05)
        running.discard(name)
        ended.append(name)

    ctx = SimpleNamespace(bus=None, settings=Settings(home=tmp_path, fleet_start_concurrency=2))
    asyncio.run(keeper_module._bring_up_fleet(ctx, bring_up))  # type: ignore[arg-type]
    assert sorted(ended) == sorted(fleet) and most == 2  # two at once, never more
    assert ended.index("orders") > max(ended.index("payments"), ended.index("inventory"))
    assert ended.index("storefront") > ended.index("orders")
    assert not started["orders"] & {"payments", "inventory"} and not started["storefront"]  # providers had served


def test_a_service_serving_its_own_document_gets_its_operations_in_the_graph_once_up(tmp_path: Path) -> None:
    # a new user found `service show` saying "operations unknown" for such a service even after `pilotage up`
    from pilotage.fleet.onboard import relations
    from tests.fixtures.fleet import commit_files

    repo = make_notes_repo(tmp_path / "notes")
    descriptor = (repo / "pilotage.yaml").read_text().replace("openapi: openapi.yaml", "openapi: /openapi.json")
    commit_files(repo, {"pilotage.yaml": descriptor}, "the service serves its document")

    async def scenario() -> None:
        ctx = _ctx(tmp_path)
        keeper = FleetKeeper(ctx)
        try:
            await add_service(ctx.bus, ctx.graph, repo, port_base=PORT + 7, port=PORT + 7)
            [provided] = relations(ctx.graph, await load_fleet(ctx.bus), "notes")["provides"]
            assert provided["operations"] is None  # nothing served it at add
            await keeper.up()
            [provided] = relations(ctx.graph, await load_fleet(ctx.bus), "notes")["provides"]
            assert provided["operations"] == 4  # /healthz, list, create and read notes, from what it served
        finally:
            await keeper.down()
            await ctx.runtime.close()
            ctx.graph.close()

    asyncio.run(scenario())
