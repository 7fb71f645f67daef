"""``pilotage deliver A@REV B@REV …`` / ``--release FILE``: several services delivered as one release (issue #19).

Every member is checked before anything starts (managed, the revision exists, its descriptor is valid, it is not
production already, no service named twice), the order is planned (:func:`pilotage.fleet.release.plan_release`,
with each consumed member's cross-service impact) and printed, then :func:`pilotage.flows.release.run_release`
delivers them in-process, one after the other, with the fleet keeper serving production. Exit 0: every member
promoted; 1: the release was rolled back; 2/3: bad input or descriptor, nothing delivered.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import replace
from typing import Any

import typer
from rich.markup import escape

from pilotage.agent import RunSpec
from pilotage.cli import console, print_error
from pilotage.errors import InputError
from pilotage.fleet.release import Member, ReleasePlan
from pilotage.settings import Settings

__all__ = ["deliver_release"]


def _checked_members(settings: Settings, members: list[Member], budget_s: float) -> list[Member]:
    """Each member resolved (commit, production commit, descriptor at the commit); raises before anything starts."""
    from pilotage.cli.fleet import _fleet
    from pilotage.fleet.checkout import descriptor_at
    from pilotage.fleet.submission import check_delivery

    out = []
    for m in members:
        service, sha = check_delivery(_fleet(settings), m.service, m.rev, budget_s)
        head = descriptor_at(service.repo_path, sha)
        out.append(replace(m, commit=sha, previous_commit=service.production_commit, head=head))
    return out


async def _impacts(settings: Settings, fleet: dict[str, Any], members: list[Member]) -> dict[str, Any]:
    """The cross-service impact of each member another member consumes (today or in its new commit)."""
    from pilotage.app import open_runtime
    from pilotage.fleet.documents import DocumentSource
    from pilotage.fleet.impact import impact_of_rev

    names = {m.service for m in members}
    consumed = {
        d
        for m in members
        for d in (*fleet[m.service].production_descriptor().dependencies, *(m.head.dependencies if m.head else ()))
        if d in names and d != m.service
    }
    if not consumed:
        return {}
    runtime = open_runtime(settings)  # a served document of a commit is read from a scratch instance
    try:
        source = DocumentSource(settings, runtime)
        return {
            m.service: await impact_of_rev(source, fleet, m.service, m.commit) for m in members if m.service in consumed
        }
    finally:
        await runtime.close()


def _plan(settings: Settings, members: list[Member], budget_s: float) -> tuple[ReleasePlan, dict[str, Any]]:
    from pilotage.cli.fleet import _fleet
    from pilotage.fleet.registry import live_descriptors
    from pilotage.fleet.release import plan_release, refuse_duplicates

    refuse_duplicates(members)
    checked = _checked_members(settings, members, budget_s)
    fleet = _fleet(settings)
    impacts = asyncio.run(_impacts(settings, fleet, checked))
    return plan_release(checked, live_descriptors(fleet), impacts), fleet


def _runs(settings: Settings, plan: ReleasePlan, commit_tests: bool, fleet: dict[str, Any]) -> dict[str, RunSpec]:
    from pilotage.fleet.submission import delivery_run

    runs = {}
    for m in plan.order:
        runs[m.service] = delivery_run(settings, fleet[m.service], m.rev, m.commit, commit_tests=commit_tests)
    return runs


async def _release_async(
    settings: Settings, release_id: str, plan: ReleasePlan, runs: dict[str, RunSpec], json_mode: bool, budget_s: float
) -> Any:
    from pilotage.app import all_agents, backends
    from pilotage.cli.fleet import _with_providers
    from pilotage.cli.run import _timeline_printer
    from pilotage.fleet.keeper import FleetKeeper
    from pilotage.fleet.registry import load_fleet
    from pilotage.flows.release import run_release

    async with backends(settings) as ctx:
        fleet = await load_fleet(ctx.bus)
        descriptors = {m.service: fleet[m.service].descriptor for m in plan.order}
        names: list[str] = []
        for m in plan.order:  # the members and every provider they consume serve their stable addresses
            names += [n for n in await _with_providers(ctx.bus, runs[m.service]) if n not in names]
        keeper = FleetKeeper(ctx)
        await keeper.up(names)
        watch = asyncio.create_task(keeper.watch())
        try:
            return await run_release(
                ctx, release_id, plan, runs, all_agents(ctx), keeper, descriptors,
                budget_s=budget_s, on_event=_timeline_printer(json_mode),
            )  # fmt: skip
        finally:
            watch.cancel()
            await keeper.down()


def _print_plan(release_id: str, plan: ReleasePlan) -> None:
    order = " → ".join(m.service for m in plan.order)
    console.print(f"[bold]Pilotage[/] release [bold]{escape(release_id)}[/] · {escape(order)}")
    for i, step in enumerate(plan.steps(), 1):  # revisions, commit messages and API names come from outside
        line = f"{step['service']} {step['rev']} ({step['commit'][:12]}): {'; '.join(step['why'])}"
        console.print(f"  {i}. {line}", markup=False)


def deliver_release(
    settings: Settings, members: list[Member], *, budget_s: float, commit_tests: bool, json_mode: bool
) -> None:
    """Check, plan and deliver ``members`` as one release (module docstring); exit 1 when it was rolled back.

    Raises:
        InputError: a service named twice, not managed, a revision not found or already production, a control plane
            serving the folder (a release runs in-process), or an order that cannot be satisfied (exit 2).
        ConfigError: a member's descriptor is missing or invalid (exit 3).
    """
    from pilotage.cli.run import run_summary
    from pilotage.flows.supervisor import ControlPlaneLock, serving_pid

    if serving_pid(settings.home) is not None:
        raise InputError(
            "a release runs in-process, but a control plane (`pilotage up`) serves this folder",
            hint="`pilotage down`, then deliver the release (production serves again with `pilotage up` after it)",
        )
    plan, fleet = _plan(settings, members, budget_s)
    release_id = f"rel-{uuid.uuid4().hex[:12]}"
    runs = _runs(settings, plan, commit_tests, fleet)
    if not json_mode:
        _print_plan(release_id, plan)
    lock = ControlPlaneLock(settings.home, release_id)
    lock.acquire()
    try:
        result = asyncio.run(_release_async(settings, release_id, plan, runs, json_mode, budget_s))
    finally:
        lock.release()
    by_run = {r.run_id: r for r in result.runs}
    deliveries = [
        run_summary(
            settings, runs[m.service], by_run[runs[m.service].run_id], title=f"Pilotage delivery of {m.service}"
        )
        | {"service": m.service}
        for m in plan.order
        if runs[m.service].run_id in by_run
    ]
    summary = {
        "release_id": release_id,
        "decision_id": result.decision_id,
        "status": result.status,
        "order": plan.steps(),
        "deliveries": deliveries,
        "rolled_back": result.rolled_back,
        "error": result.error,
        "duration_s": result.duration_s,
    }
    _report(summary, json_mode)
    if result.status != "completed":
        print_error(f"release {release_id} rolled back: {result.error}")
        raise typer.Exit(1)


def _report(summary: dict[str, Any], json_mode: bool) -> None:
    if json_mode:
        console.print_json(json.dumps(summary))
        return
    for d in summary["deliveries"]:
        console.print(
            f"  {d['service']}: {d['status']} · {d['outcome']} · {d['duration_s']:.1f}s · report {d['report']}",
            markup=False,
        )
    for undone in summary["rolled_back"]:
        how = "warm standby" if undone["standby"] else "started again"
        console.print(
            f"  rolled back {undone['service']}: {undone['commit'][:12]} → {undone['previous_commit'][:12]} ({how})",
            markup=False,
        )
    colour = "green" if summary["status"] == "completed" else "red"
    console.print(
        f"[bold {colour}]{escape(str(summary['status']))}[/] · release {escape(str(summary['release_id']))} · "
        f"{summary['duration_s']:.1f}s · `pilotage explain {escape(str(summary['decision_id']))}` "
        "shows the order and why"
    )
