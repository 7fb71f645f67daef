"""The rollout controller's pure half: state folded from events, and next_action."""

from __future__ import annotations

from typing import Any

import pytest

from pilotage.events import CloudEvent, EventType, new_event
from pilotage.rollout.state import (
    RolloutState,
    StepVerdict,
    fold,
    next_action,
    next_action_reasoning,
    phase_of,
    steps_for,
)

DEP = "dep-1"


def _event(type_: str, **data: Any) -> CloudEvent:
    return new_event(type_, {"deployment_id": DEP, **data}, source="/test", runid="run-1")


def _requested(strategy: str = "canary", steps: tuple[int, ...] = (10, 50, 100)) -> CloudEvent:
    return _event(
        EventType.DEPLOY_REQUESTED,
        strategy=strategy,
        steps=list(steps),
        baseline={"version": "a1", "path": "/b", "env": {}},
        canary={"version": "b2", "path": "/h", "env": {}},
        flag_key="svc.dep-1" if strategy == "feature-flag" else "",
    )


def _started() -> CloudEvent:
    return _event(
        EventType.DEPLOY_STARTED,
        baseline={"version": "a1", "url": "http://127.0.0.1:1", "pid": 1},
        canary={"version": "b2", "url": "http://127.0.0.1:2", "pid": 2},
        proxy_url="http://127.0.0.1:3",
    )


def test_steps_and_phases_per_strategy() -> None:
    assert steps_for("canary", [10, 25, 50]) == (10, 25, 50, 100)
    assert steps_for("canary", [0, 30, 100, 120]) == (30, 100)
    assert steps_for("blue-green", [10]) == (0, 100)
    assert steps_for("feature-flag", [10]) == (5, 25, 50, 100)
    with pytest.raises(ValueError, match="unknown strategy 'dark'"):
        steps_for("dark", [])
    assert [phase_of("blue-green", w) for w in (0, 100)] == ["preview", "watch"]
    assert [phase_of("canary", w) for w in (0, 10, 100)] == ["step", "step", "watch"]


def test_fold_follows_the_events_of_one_deployment_only() -> None:
    other = new_event(EventType.DEPLOY_STEP, {"deployment_id": "dep-2", "step": 5, "weight": 99}, source="/t")
    events = [
        _requested(),
        _started(),
        _event(EventType.DEPLOY_STEP, step=0, weight=10),
        other,
        _event(EventType.SLO_EVALUATED, step=0, action="continue"),
        _event(EventType.DEPLOY_STEP, step=1, weight=50),
        _event(EventType.DEPLOY_STEP, step=0, weight=10),  # a duplicate of an older step never moves it back
    ]
    state = fold(events, DEP)
    assert state is not None
    assert (state.phase, state.step, state.weight, state.judged) == ("step", 1, 50, (0,))
    assert state.canary["url"] == "http://127.0.0.1:2" and state.proxy_url == "http://127.0.0.1:3"
    assert fold(events[1:], DEP) is None  # nothing before deploy.requested
    resumed = _event(EventType.DEPLOY_RESUMED, canary={"version": "b2", "url": "http://127.0.0.1:9", "pid": 9})
    assert fold([*events, resumed], DEP).canary["url"] == "http://127.0.0.1:9"  # type: ignore[union-attr]


def test_fold_concludes_and_never_reopens() -> None:
    base = [_requested(), _started(), _event(EventType.DEPLOY_STEP, step=0, weight=10)]
    rolled = fold([*base, _event(EventType.DEPLOY_ROLLED_BACK), _event(EventType.DEPLOY_PROMOTED)], DEP)
    assert rolled is not None and rolled.phase == "rolled_back" and rolled.concluded
    late_step = fold(
        [*base, _event(EventType.DEPLOY_ROLLED_BACK), _event(EventType.DEPLOY_STEP, step=1, weight=50)], DEP
    )
    assert late_step is not None and (late_step.phase, late_step.step) == ("rolled_back", 0)
    scaled = fold([*base, new_event(EventType.ENV_SCALED_DOWN, {"environment": DEP}, source="/t")], DEP)
    assert scaled is not None and scaled.scaled_down


def _state(strategy: str = "canary", steps: tuple[int, ...] = (10, 50, 100), **over: Any) -> RolloutState:
    return RolloutState(deployment_id=DEP, strategy=strategy, steps=steps, **{"phase": "step", **over})


@pytest.mark.parametrize(
    ("state", "verdict", "expected"),
    [
        (_state(step=0, weight=10), StepVerdict(0, "continue"), ("advance", 1, 50)),
        (_state(step=1, weight=50), StepVerdict(1, "continue"), ("advance", 2, 100)),
        (_state(step=2, weight=100, phase="watch"), StepVerdict(2, "continue"), ("promote", 2, 100)),
        (_state(step=1, weight=50), StepVerdict(1, "rollback"), ("rollback", 1, 50)),
        (_state(step=2, weight=100, phase="watch"), StepVerdict(2, "rollback"), ("rollback", 2, 100)),
        (_state(step=1, weight=50), StepVerdict(1, "pause"), ("pause", 1, 50)),
        (_state(step=1, weight=50), StepVerdict(0, "rollback"), ("hold", 1, 50)),  # stale verdict
        (_state(step=1, weight=50, phase="rolled_back"), StepVerdict(1, "continue"), ("hold", 1, 50)),
        (_state(step=1, weight=50, phase="paused"), StepVerdict(1, "continue"), ("hold", 1, 50)),
        (_state(step=1, weight=50), StepVerdict(1, "explode"), ("rollback", 1, 50)),  # unknown → fail closed
        (
            _state("blue-green", (0, 100), step=0, weight=0, phase="preview"),
            StepVerdict(0, "continue"),
            ("advance", 1, 100),
        ),
        (_state("feature-flag", (5, 25, 50, 100), step=0, weight=5), StepVerdict(0, "continue"), ("advance", 1, 25)),
    ],
)
def test_next_action(state: RolloutState, verdict: StepVerdict, expected: tuple[str, int, int]) -> None:
    action = next_action(state, verdict)
    assert (action.kind, action.step, action.weight) == expected
    assert action.reason


def test_the_recorded_decision_replays_from_its_inputs_alone() -> None:
    state = _state("blue-green", (0, 100), step=0, weight=0, phase="preview")
    inputs = {"state": state.summary(), "verdict": {"step": 0, "action": "continue", "reason": "healthy"}}
    assert inputs["state"]["steps"] == [0, 100]
    reasoning = next_action_reasoning(inputs)
    assert (reasoning.action, reasoning.score) == ("advance", {"step": 1, "weight": 100})
    assert "advance to step 1 (100%)" in reasoning.rationale
