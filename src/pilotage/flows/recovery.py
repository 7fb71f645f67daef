"""Control-plane recovery: what ``pilotage serve`` does at start, before its agents consume a single event.

A control plane killed mid-flow (SIGKILL, power loss) leaves three kinds of state behind:

1. **The event log** (durable): every event a publisher was told was accepted. It is the truth.
2. **Consumer offsets** (durable): each agent resumes after the last event it *finished* handling; an event whose
   handler was interrupted is delivered again (at-least-once). Handlers publish deterministic event ids
   (:func:`pilotage.agent.handled_event_id`) and check the log before acting, so running again is harmless.
3. **Runtime state lost with the process**: the in-process traffic-splitting proxies and synthetic traffic die
   with it; the service processes it started (their own sessions) survive as orphans nobody can route to.

The rule chosen here (documented in ``docs/architecture.md``, "Crash safety"): **an environment is a function of
the log**. Recovery

* kills the orphaned processes of dead control planes of the same state folder (:func:`kill_orphans`): every
  process a control plane starts inherits ``PILOTAGE_CONTROL_PLANE=<home>#<instance id>`` in its environment, and
  ``/proc`` is searched for it (Linux; elsewhere orphans are listed as not found);
* re-creates, for every open run, the environment of each deployment the log says is still up, from its state
  folded from the log (:func:`pilotage.rollout.state.fold`: the ``deploy.requested`` plan and the weight of the
  last ``deploy.step``), through the one rollout controller
  (:meth:`pilotage.rollout.controller.RolloutController.recreate`, the same code that launched it): a rollout in
  progress gets both versions behind a new route at the last weight (or flag share) and its synthetic traffic; a
  promoted (rolled back) deployment not yet scaled down gets the new (previous) version alone at 100 %. Each
  re-creation publishes ``deploy.resumed`` with the new instances. The deploy verdict recorded for the deployment
  (``policy.evaluated`` allow) covers it; a deployment without one is not re-created (fail closed) and its run
  fails with ``agent.failed``;
* publishes ``controlplane.recovered`` with what it found and did.

Nothing is deployed twice: ``deploy.started`` stays the only launch of a deployment; the agents then continue from
their offsets (the next step, the interrupted judgement, rollback or promotion, the cost watch).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pilotage.agent import AgentContext
from pilotage.bus.base import Bus
from pilotage.bus.query import EventLog
from pilotage.catalogue import checked_event
from pilotage.errors import PilotageError
from pilotage.events import CloudEvent, EventType
from pilotage.rollout.controller import rollout_controller
from pilotage.rollout.state import RolloutState, fold

__all__ = [
    "MARK_VAR",
    "Orphan",
    "RecoveryReport",
    "process_alive",
    "find_orphans",
    "kill_orphans",
    "open_runs",
    "recover",
]

SOURCE = "/pilotage/controlplane/recovery"
#: Environment variable every process started by a control plane inherits: ``<home (absolute)>#<instance id>``.
MARK_VAR = "PILOTAGE_CONTROL_PLANE"
#: Seconds between SIGTERM and SIGKILL of an orphan's process group.
ORPHAN_GRACE_S = 3.0


@dataclass(frozen=True)
class Orphan:
    """A process left by a dead control plane: ``pid``, whether it leads its own process group, its command."""

    pid: int
    group_leader: bool
    command: str
    instance: str


@dataclass
class RecoveryReport:
    """What recovery found and did (the data of ``controlplane.recovered``)."""

    instance: str
    orphans_killed: list[dict[str, Any]] = field(default_factory=list)
    runs_open: list[str] = field(default_factory=list)
    environments: list[dict[str, Any]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Return the report as a JSON-serialisable dict."""
        return {
            "instance": self.instance,
            "orphans_killed": self.orphans_killed,
            "runs_open": self.runs_open,
            "environments": self.environments,
            "failures": self.failures,
        }


def _proc_state(pid: int) -> str:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return stat.rsplit(")", 1)[-1].split()[0] if ")" in stat else ""


def find_orphans(home: Path, instance: str, proc: Path = Path("/proc")) -> list[Orphan]:
    """Return the live processes marked by another control plane of ``home`` (``MARK_VAR``), not ``instance``.

    Args:
        home: the state folder (``settings.home``), compared as an absolute path.
        instance: the id of the running control plane (its own children are not orphans).
        proc: the procfs mount (tests may pass another folder laid out the same way).

    Returns:
        The orphans, zombies excluded; empty where ``/proc`` does not exist.
    """
    wanted = str(home.resolve())
    found: list[Orphan] = []
    if not proc.is_dir():
        return found
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        mark = next((v[len(MARK_VAR) + 1 :] for v in environ if v.startswith(MARK_VAR.encode() + b"=")), None)
        if mark is None:
            continue
        mark_home, _, mark_instance = mark.decode(errors="replace").rpartition("#")
        if mark_home != wanted or mark_instance == instance or _proc_state(int(entry.name)) in ("Z", "X", ""):
            continue
        pid = int(entry.name)
        try:
            leader = os.getpgid(pid) == pid
        except OSError:
            continue
        found.append(Orphan(pid, leader, command[:200], mark_instance))
    return sorted(found, key=lambda o: o.pid)


def process_alive(pid: int) -> bool:
    """True while process ``pid`` runs (Linux ``/proc``; a zombie — dead, not reaped yet — is not alive)."""
    return _proc_state(pid) not in ("Z", "X", "")


async def kill_orphans(orphans: list[Orphan], grace_s: float = ORPHAN_GRACE_S) -> list[dict[str, Any]]:
    """Stop ``orphans``: SIGTERM (to the process group of a group leader), SIGKILL after ``grace_s`` seconds.

    A process that does not lead its own group is signalled alone, so a group shared with the caller (a shell,
    a test runner) is never hit. Returns ``[{pid, command, instance, signal}]`` for the report.
    """
    import asyncio

    def send(orphan: Orphan, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if orphan.group_leader and orphan.pid != os.getpgid(0):
                os.killpg(orphan.pid, sig)
            else:
                os.kill(orphan.pid, sig)

    for orphan in orphans:
        send(orphan, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while any(process_alive(o.pid) for o in orphans) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    report = []
    for orphan in orphans:
        sig = "SIGTERM"
        if process_alive(orphan.pid):
            send(orphan, signal.SIGKILL)
            sig = "SIGKILL"
        report.append({"pid": orphan.pid, "command": orphan.command, "instance": orphan.instance, "signal": sig})
    return report


async def open_runs(bus: Bus) -> dict[str, list[CloudEvent]]:
    """Return ``{run id: events of the run in log order}`` for every run without ``flow.completed``/``flow.failed``."""
    runs: dict[str, list[CloudEvent]] = {}
    closed: set[str] = set()
    for event in await EventLog(bus).all("dev.pilotage.*"):
        if not event.runid:
            continue
        if event.type in (EventType.FLOW_COMPLETED, EventType.FLOW_FAILED):
            closed.add(event.runid)
        runs.setdefault(event.runid, []).append(event)
    return {run: events for run, events in runs.items() if run not in closed and _has_start(events)}


def _has_start(events: list[CloudEvent]) -> bool:
    return any(e.type == EventType.FLOW_STARTED for e in events)


def _phase(state: RolloutState) -> str | None:
    """``rollout``, ``promoted``, ``rolled_back``, or None when the environment is already scaled down."""
    if state.scaled_down:
        return None
    if state.phase in ("promoted", "rolled_back"):
        return state.phase
    return "rollout"


def _deploy_allowed(events: list[CloudEvent], deployment_id: str) -> bool:
    for event in events:
        data = event.data if isinstance(event.data, dict) else {}
        if event.type == EventType.POLICY_EVALUATED and data.get("action") == "deploy" and data.get("allow"):
            if (data.get("input") or {}).get("deployment_id") == deployment_id:
                return True
    return False


def _kind(events: list[CloudEvent]) -> str:
    """The run's kind (``generate``/``deliver``) from its ``flow.started``."""
    for event in events:
        if event.type == EventType.FLOW_STARTED and isinstance(event.data, dict):
            return str(event.data.get("kind", "generate"))
    return "generate"


async def _recover_run(ctx: AgentContext, run_id: str, events: list[CloudEvent], report: RecoveryReport) -> None:
    deployments = [str(e.data["deployment_id"]) for e in events if e.type == EventType.DEPLOY_STARTED]
    subject = events[0].subject
    for deployment_id in dict.fromkeys(deployments):
        state = fold(events, deployment_id)
        phase = _phase(state) if state is not None else None
        if phase is None or state is None or (state.plan.get("route") and phase != "rollout"):
            continue  # issue 17: what a finished delivery left serving is production, re-created by the fleet keeper
        try:
            if state.plan.get("route") and _kind(events) == "deliver":
                raise PilotageError(
                    f"a delivery interrupted mid-rollout is not resumed: production {state.plan['baseline']['version']}"
                    " is served again from the log; deliver the commit again"
                )
            if not _deploy_allowed(events, deployment_id):
                raise PilotageError(f"no allowing deploy verdict in the log for {deployment_id}: not re-created")
            data = await rollout_controller(ctx).recreate(state.plan, phase=phase, weight=state.weight)
        except PilotageError as exc:
            report.failures.append(f"{deployment_id}: {exc.one_line()}")
            failed = {
                "agent": "recovery",
                "error": f"cannot resume {deployment_id} after a control-plane restart: {exc.one_line()}",
                "error_type": type(exc).__name__,
                "cause_event_id": "",
                "cause_event_type": "",
                "verdict": None,
            }
            failure = checked_event(EventType.AGENT_FAILED, failed, source=SOURCE, subject=subject, runid=run_id)
            await ctx.bus.publish(failure)
            continue
        ctx.graph.upsert_node("Deployment", deployment_id, {"proxy_url": data["proxy_url"], "resumed": True})
        resumed = checked_event(EventType.DEPLOY_RESUMED, data, source=SOURCE, subject=subject, runid=run_id)
        await ctx.bus.publish(resumed)
        report.environments.append({"run_id": run_id, **data})


async def recover(
    ctx: AgentContext,
    *,
    home: Path,
    instance: str,
    keep_fleet: Callable[[], Awaitable[None]] | None = None,
) -> RecoveryReport:
    """Kill the orphans of dead control planes of ``home`` and re-create the environments the log says are up.

    Call it once at control-plane start, before the agents subscribe. Publishes ``controlplane.recovered``.

    Args:
        ctx: the open backends of the new control plane.
        home: the state folder (``settings.home``) whose control planes are recovered.
        instance: the id of the new control plane (the value after ``#`` in :data:`MARK_VAR`).
        keep_fleet: brings the managed services' production versions up (the fleet keeper), called once the
            orphans are stopped and before any run is resumed.

    Returns:
        The :class:`RecoveryReport`.
    """
    report = RecoveryReport(instance=instance)
    report.orphans_killed = await kill_orphans(find_orphans(home, instance))
    if keep_fleet is not None:  # managed services' production first: a resumed rollout starts beside it
        await keep_fleet()
    runs = await open_runs(ctx.bus)
    report.runs_open = sorted(runs)
    for run_id, events in runs.items():
        await _recover_run(ctx, run_id, events, report)
    await ctx.bus.publish(checked_event(EventType.CONTROL_PLANE_RECOVERED, report.to_dict(), source=SOURCE))
    return report
