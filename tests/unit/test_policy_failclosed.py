"""Fail closed: a broken or slow policy blocks the action (deploy, commit) instead of allowing it."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from pilotage.events import EventType
from pilotage.policy.rego import RegoPolicyEngine
from tests.fixtures.tiny_service.harness import Stack, events_of, publish_perf, seed_run, wait_for

SCAN = {"tool": "bandit", "status": "completed", "issues": {"high": 0, "medium": 0, "low": 0}}
#: 10^6 products when input.slow is set: about 2.3 s in rego-cpp (measured), far over the 0.3 s timeout used here.
#: A rule that truly never ends is refused the same way; it is not used because rego-cpp cannot be interrupted and
#: the abandoned evaluation would keep a core busy until the test process exits.
SLOW = (
    "package pilotage.deploy\n\n"
    'deny contains "never" if {\n\tinput.slow == true\n\tsome i in numbers.range(1, 1000)\n'
    "\tsome j in numbers.range(1, 1000)\n\ti * j == -1\n}\n"
)


def test_broken_policy_blocks_a_deploy(tmp_path: Path) -> None:
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "freeze.rego").write_text("package pilotage.deploy\n\ndeny contains msg if {\n  input.a ==\n}\n")

    async def scenario() -> None:
        async with Stack(tmp_path, RegoPolicyEngine(policy_dirs=[policies])) as stack:
            await seed_run(stack.bus, tmp_path, tests_passed=True)  # tests passed, scan completed: would deploy
            await publish_perf(stack.bus)
            failed = await wait_for(stack.bus, EventType.AGENT_FAILED)
            assert failed.data["agent"] == "deployment" and failed.data["error_type"] == "PolicyDenied"
            (verdict,) = [e.data for e in await events_of(stack.bus, EventType.POLICY_EVALUATED)]
            assert verdict["action"] == "deploy" and verdict["allow"] is False
            assert verdict["reasons"][0].startswith(
                f"policy engine error: policy {policies / 'freeze.rego'} does not parse at line 4"
            )
            assert verdict["input"]["security_scan"]["status"] == "completed"  # read from security.scanned
            assert await events_of(stack.bus, EventType.DEPLOY_STARTED) == []
            assert stack.runtime.instances() == []

    asyncio.run(scenario())


def test_policy_that_takes_too_long_is_a_deny_and_the_engine_recovers(tmp_path: Path) -> None:
    (tmp_path / "slow.rego").write_text(SLOW)
    engine = RegoPolicyEngine(policy_dirs=[tmp_path], timeout_s=30)
    engine.check()  # the smoke test (empty input) is fast; a generous deadline for it on a busy machine
    engine.timeout_s = 0.3
    start = time.monotonic()
    verdict = engine.evaluate("deploy", {"commit": "c", "tests_passed": True, "security_scan": SCAN, "slow": True})
    assert time.monotonic() - start < 2.0
    assert verdict.allow is False
    assert verdict.reasons == [
        "policy engine timeout: data.pilotage.deploy gave no answer within 0.3 s "
        "(a rule that takes too long or never terminates)"
    ]
    # the abandoned interpreter is not reused: the next evaluation loads a fresh one and answers
    engine.timeout_s = 30
    fine = engine.evaluate("deploy", {"commit": "c", "tests_passed": True, "security_scan": SCAN})
    assert fine.allow is True, fine.reasons


def test_policy_too_slow_to_load_denies_every_action(tmp_path: Path) -> None:
    (tmp_path / "stuck.rego").write_text(SLOW.replace("input.slow == true", "true"))
    engine = RegoPolicyEngine(policy_dirs=[tmp_path], timeout_s=0.3)
    start = time.monotonic()
    verdict = engine.evaluate("rollback", {})
    assert time.monotonic() - start < 2.0
    assert verdict.allow is False and verdict.reasons[0].startswith("policy engine timeout: data.pilotage.rollback")
