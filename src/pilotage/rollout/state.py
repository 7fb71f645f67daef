"""The state of a rollout as a pure function of its events, and the pure choice of the controller's next action.

This is the decision half of the one rollout controller (:mod:`pilotage.rollout.controller` is the half that acts
on the runtime). Nothing here does I/O, so ``pilotage events replay`` recomputes every controller decision from
the recorded inputs, and a restarted control plane finds a rollout exactly where the log left it.

Strategies and their steps (weights in percent):

* ``canary`` — the route's weight of the new version grows through ``settings.canary_steps_percent``
  (10 → 25 → 50 → 100, Argo Rollouts' example steps); each step is analysed canary-vs-baseline.
* ``blue-green`` — step 0 is the **preview**: green runs at its own address with 0 % of user traffic and is
  smoke-checked and analysed there against blue; step 1 is one atomic switch to 100 % (the post-promotion watch);
  blue keeps running as the hot standby (an instant switch back).
* ``feature-flag`` — the new version serves every request from the start with its new code paths behind a flag;
  the steps are the share of targeting keys the flag is on for (:data:`FLAG_STEPS_PERCENT`); each step compares
  flag-on with flag-off requests of the same process; rollback turns the flag off, no process restarts.

A step at 100 % is the post-promotion watch (burn rates keep running); a healthy watch promotes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

from pilotage.agent import Reasoning
from pilotage.errors import InputError
from pilotage.events import CloudEvent, EventType

if TYPE_CHECKING:
    from pilotage.bus.query import EventLog

__all__ = [
    "ACTIONS",
    "FLAG_STEPS_PERCENT",
    "STRATEGIES",
    "Action",
    "RolloutState",
    "StepVerdict",
    "fold",
    "load_state",
    "next_action",
    "next_action_reasoning",
    "phase_of",
    "preview_route_name",
    "steps_for",
]

#: Strategies from least to most cautious (the seed's table: minor → canary, moderate → blue-green, major → flags).
STRATEGIES = ("canary", "blue-green", "feature-flag")
#: Share of targeting keys (percent) the flag is on for, per step of a feature-flag release. 5 % first, as the
#: seed's canary starts at 5 %; 100 % is the post-promotion watch.
FLAG_STEPS_PERCENT = (5, 25, 50, 100)
#: What :func:`next_action` may answer.
ACTIONS = ("advance", "hold", "promote", "rollback", "pause")

Phase = Literal["requested", "launched", "preview", "step", "watch", "paused", "promoted", "rolled_back"]
#: Phases after which no verdict moves the rollout any more.
CONCLUDED = ("promoted", "rolled_back")


def steps_for(strategy: str, canary_steps_percent: Iterable[int]) -> tuple[int, ...]:
    """Return the weights (percent) of each step of ``strategy``.

    canary → ``canary_steps_percent`` (only 0 < w ≤ 100, 100 appended when missing); blue-green → (0, 100): the
    preview, then the switch; feature-flag → :data:`FLAG_STEPS_PERCENT`.

    Raises:
        ValueError: unknown strategy.
    """
    if strategy == "blue-green":
        return (0, 100)
    if strategy == "feature-flag":
        return FLAG_STEPS_PERCENT
    if strategy != "canary":
        raise ValueError(f"unknown strategy {strategy!r}; known: {', '.join(STRATEGIES)}")
    steps = tuple(s for s in canary_steps_percent if 0 < s <= 100)
    return steps if steps and steps[-1] == 100 else (*steps, 100)


def phase_of(strategy: str, weight: int) -> str:
    """Return the phase of a step: ``watch`` at 100 %, ``preview`` for blue-green's 0 % step, else ``step``."""
    if weight >= 100:
        return "watch"
    if strategy == "blue-green" and weight == 0:
        return "preview"
    return "step"


@dataclass(frozen=True)
class RolloutState:
    """Where one deployment's rollout stands, derived from its events only (see :func:`fold`).

    Attributes:
        deployment_id: the deployment.
        strategy: ``canary``, ``blue-green`` or ``feature-flag``.
        steps: weights (route percent, or flag percent for feature-flag) of each step.
        phase: ``requested`` (planned, nothing started) → ``launched`` → ``preview``/``step``/``watch`` →
            ``promoted`` or ``rolled_back``; ``paused`` waits for a human.
        step: index of the last step taken (-1 before the first).
        weight: the new version's share at that step, percent.
        plan: the ``deploy.requested`` data (versions, folders, environment, traffic paths).
        baseline, canary: newest ``{version, url, pid}`` of each instance (``deploy.started``/``deploy.resumed``).
        proxy_url: the stable route's address; preview_url: green's own address (blue-green); flag_key: the flag
            (feature-flag).
        judged: steps that have a verdict (``slo.evaluated``).
        standby_released, scaled_down: the previous version / the environment were stopped.
    """

    deployment_id: str
    strategy: str
    steps: tuple[int, ...]
    phase: str = "requested"
    step: int = -1
    weight: int = 0
    plan: dict[str, Any] = field(default_factory=dict)
    baseline: dict[str, Any] = field(default_factory=dict)
    canary: dict[str, Any] = field(default_factory=dict)
    proxy_url: str = ""
    preview_url: str = ""
    flag_key: str = ""
    judged: tuple[int, ...] = ()
    standby_released: bool = False
    scaled_down: bool = False

    @property
    def concluded(self) -> bool:
        """True once promoted or rolled back."""
        return self.phase in CONCLUDED

    def summary(self) -> dict[str, Any]:
        """Return the fields :func:`next_action` reads, as plain data (recorded as the decision's inputs)."""
        keys = ("deployment_id", "strategy", "steps", "phase", "step", "weight", "judged")
        data = asdict(self)
        return {k: list(data[k]) if isinstance(data[k], tuple) else data[k] for k in keys}


def _data(event: CloudEvent) -> dict[str, Any]:
    return event.data if isinstance(event.data, dict) else {}


def _instances(state: RolloutState, data: dict[str, Any]) -> RolloutState:
    changes: dict[str, Any] = {}
    for role in ("baseline", "canary"):
        if isinstance(data.get(role), dict):
            changes[role] = dict(data[role])
    for key in ("proxy_url", "preview_url", "flag_key"):
        if data.get(key):
            changes[key] = str(data[key])
    return replace(state, **changes)


def _apply(state: RolloutState, event: CloudEvent) -> RolloutState:  # noqa: C901 - one branch per event type
    data, kind = _data(event), event.type
    if kind in (EventType.DEPLOY_STARTED, EventType.DEPLOY_RESUMED):
        state = _instances(state, data)
        return replace(state, phase="launched") if state.phase == "requested" else state
    if kind == EventType.DEPLOY_STEP:
        step, weight = int(data["step"]), int(data["weight"])
        if state.concluded or step <= state.step:
            return state
        return replace(state, step=step, weight=weight, phase=phase_of(state.strategy, weight))
    if kind == EventType.SLO_EVALUATED:
        return replace(state, judged=tuple(sorted({*state.judged, int(data["step"])})))
    if kind == EventType.DEPLOY_PAUSED:
        return state if state.concluded else replace(state, phase="paused")
    if kind == EventType.DEPLOY_PROMOTED:
        return state if state.phase == "rolled_back" else replace(state, phase="promoted")
    if kind == EventType.DEPLOY_ROLLED_BACK:
        return replace(state, phase="rolled_back")
    if kind == EventType.DEPLOY_STANDBY_RELEASED:
        return replace(state, standby_released=True)
    if kind == EventType.ENV_SCALED_DOWN:
        return replace(state, scaled_down=True)
    return state


def fold(events: Iterable[CloudEvent], deployment_id: str) -> RolloutState | None:
    """Return the state of ``deployment_id`` from events in log order (None before its ``deploy.requested``).

    Events of other deployments are ignored (``deployment_id`` in the data; ``environment`` for
    ``env.scaled_down``), so the whole log of a run can be passed.
    """
    state: RolloutState | None = None
    for event in events:
        data = _data(event)
        if data.get("deployment_id", data.get("environment")) != deployment_id:
            continue
        if event.type == EventType.DEPLOY_REQUESTED and state is None:
            state = RolloutState(
                deployment_id=deployment_id,
                strategy=str(data["strategy"]),
                steps=tuple(int(s) for s in data["steps"]),
                plan=dict(data),
                flag_key=str(data.get("flag_key") or ""),
            )
        elif state is not None:
            state = _apply(state, event)
    return state


async def load_state(log: EventLog, runid: str, deployment_id: str) -> RolloutState:
    """Return the state of ``deployment_id`` folded from the events of run ``runid`` in ``log``.

    Raises:
        InputError: the log holds no ``deploy.requested`` for the deployment in that run.
    """
    found = fold(await log.all("dev.pilotage.*", run=runid), deployment_id)
    if found is None:
        raise InputError(f"no deploy.requested for deployment {deployment_id}", hint="start the rollout again")
    return found


@dataclass(frozen=True)
class StepVerdict:
    """The reliability agent's verdict on one step (from ``slo.evaluated``): ``continue``, ``rollback`` or ``pause``."""

    step: int
    action: str
    reason: str = ""


@dataclass(frozen=True)
class Action:
    """What the controller does next: ``kind`` in :data:`ACTIONS`; ``step``/``weight`` of an ``advance``."""

    kind: str
    step: int
    weight: int
    reason: str

    def to_dict(self) -> dict[str, Any]:
        """Return the action as plain data."""
        return asdict(self)


def next_action(state: RolloutState, verdict: StepVerdict) -> Action:
    """Choose the next action of a rollout from its state and the verdict on its current step (pure).

    Rules, in order:

    1. concluded (promoted, rolled back) → **hold**: nothing moves a finished rollout;
    2. a verdict on another step than the current one (redelivered, stale) → **hold**;
    3. ``rollback`` → **rollback** (also during the watch: back to the standby, or the flag off);
    4. ``pause`` → **pause** at the current weight, for a human: an Inconclusive step under
       ``rollout_on_inconclusive = "pause"``, or both versions burning the same error budget (the reliability
       agent's cause ``shared_degradation``: the canary is not the cause, so it is held and a person alerted by
       ``deploy.paused`` instead of being rolled back);
    5. ``continue`` on a step before the last → **advance** to the next step's weight;
    6. ``continue`` on the last step (the post-promotion watch at 100 %) → **promote**.

    Unknown verdict actions roll back (fail closed).
    """
    here = f"step {state.step} ({state.weight}%)"
    if state.concluded:
        return Action("hold", state.step, state.weight, f"rollout already {state.phase}")
    if state.phase == "paused":
        return Action("hold", state.step, state.weight, f"rollout paused at {here}; a human resumes it")
    if verdict.step != state.step:
        return Action("hold", state.step, state.weight, f"verdict on step {verdict.step}, rollout is at {here}")
    if verdict.action == "pause":
        return Action("pause", state.step, state.weight, f"{here} held at its weight for a human")
    if verdict.action != "continue":
        return Action("rollback", state.step, state.weight, f"{here} judged {verdict.action}: roll back")
    if state.step + 1 < len(state.steps):
        nxt = state.step + 1
        weight = state.steps[nxt]
        return Action("advance", nxt, weight, f"{here} healthy: advance to step {nxt} ({weight}%)")
    return Action("promote", state.step, state.weight, f"{here} healthy after the watch: promote")


def next_action_reasoning(inputs: dict[str, Any]) -> Reasoning:
    """``rollout.next`` (pure): :func:`next_action` on the state summary and the verdict rebuilt from ``inputs``.

    ``inputs``: ``state`` (:meth:`RolloutState.summary`) and ``verdict`` {step, action, reason}.
    """
    s, v = inputs["state"], inputs["verdict"]
    state = RolloutState(
        deployment_id=s["deployment_id"],
        strategy=s["strategy"],
        steps=tuple(s["steps"]),
        phase=s["phase"],
        step=int(s["step"]),
        weight=int(s["weight"]),
        judged=tuple(s.get("judged") or ()),
    )
    action = next_action(state, StepVerdict(int(v["step"]), str(v["action"]), str(v.get("reason", ""))))
    return Reasoning(
        action=action.kind,
        rule="concluded/paused/stale → hold; rollback → rollback; pause → pause; continue → next step or promote",
        score={"step": action.step, "weight": action.weight},
        rationale=action.reason,
    )


def preview_route_name(deployment_id: str) -> str:
    """The route of blue-green's preview address: the new version alone, counted by its own proxy."""
    return f"{deployment_id}#preview"
