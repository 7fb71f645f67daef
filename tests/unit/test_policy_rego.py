"""RegoPolicyEngine with real Rego (regopy): loading, syntax errors, fail-closed evaluation."""

from __future__ import annotations

import math
import time
from pathlib import Path

import pytest

from pilotage.errors import InputError
from pilotage.policy.rego import RegoPolicyEngine, bundled_sources
from pilotage.settings import Settings

ALLOW = Settings().license_allowlist
#: A completed bandit scan without findings: what the deploy policy requires besides passing tests.
SCAN = {"tool": "bandit", "status": "completed", "issues": {"high": 0, "medium": 0, "low": 0}}


def engine(*dirs: Path, **kw: object) -> RegoPolicyEngine:
    return RegoPolicyEngine(policy_dirs=list(dirs), data={"license_allowlist": ALLOW}, **kw)  # type: ignore[arg-type]


def test_bundled_policies_define_the_six_actions() -> None:
    names = [s.name for s in bundled_sources()]
    merge = [f"bundled/merge{part}.rego" for part in ("", "_crypto", "_dependencies", "_secrets", "_security")]
    assert names == ["bundled/commit.rego", "bundled/deploy.rego", "bundled/deploy_consumers.rego", *merge] + [
        f"bundled/{a}.rego" for a in ("promote", "rollback", "scale")
    ]
    e = engine(Path("does-not-exist"))
    e.check()
    assert sorted(e.actions()) == ["commit", "deploy", "merge", "promote", "rollback", "scale"]
    assert e.actions()["merge"] == merge


def test_constructor_does_no_io(tmp_path: Path) -> None:
    bad = tmp_path / "bad.rego"
    bad.write_text("package pilotage.deploy\ndeny contains msg if {\n  input.a ==\n}\n")
    e = engine(tmp_path)  # no error: nothing read yet
    assert e.url == "rego:"
    with pytest.raises(InputError):
        e.check()


def test_broken_user_policy_check_names_file_and_line(tmp_path: Path) -> None:
    folder = tmp_path / "policies"
    folder.mkdir()
    (folder / "bad.rego").write_text("package pilotage.deploy\n\ndeny contains msg if {\n  input.a ==\n}\n")
    e = engine(folder)
    with pytest.raises(InputError) as info:
        e.check()
    text = info.value.one_line()
    assert f"policy {folder / 'bad.rego'} does not parse at line 4: Invalid boolean operator" in text
    assert "(fix: " in text and "bad.rego:4:11" in text
    assert info.value.path == str(folder / "bad.rego")


def test_broken_user_policy_denies_every_action(tmp_path: Path) -> None:
    (tmp_path / "bad.rego").write_text("package pilotage.extra\ndeny contains if {\n")
    e = engine(tmp_path)
    for action, payload in [("deploy", {"tests_passed": True, "security_scan": SCAN}), ("rollback", {})]:
        verdict = e.evaluate(action, payload)
        assert verdict.allow is False
        assert verdict.reasons[0].startswith("policy engine error: policy ")
        assert "bad.rego does not parse" in verdict.reasons[0]


def test_fixed_policy_takes_effect_without_restart(tmp_path: Path) -> None:
    bad = tmp_path / "x.rego"
    bad.write_text("package pilotage.deploy\ndeny contains msg if {\n")
    e = engine(tmp_path)
    assert e.evaluate("deploy", {"tests_passed": True, "security_scan": SCAN}).allow is False
    bad.write_text('package pilotage.deploy\ndeny contains "frozen" if { input.freeze == true }\n')
    assert e.evaluate("deploy", {"tests_passed": True, "security_scan": SCAN}).allow is True


def test_user_policy_extends_bundled_package(tmp_path: Path) -> None:
    (tmp_path / "freeze.rego").write_text(
        'package pilotage.deploy\n\ndeny contains "change freeze: no deploys on Friday" if {\n'
        '\tinput.weekday == "friday"\n}\n'
    )
    e = engine(tmp_path)
    verdict = e.evaluate("deploy", {"tests_passed": True, "security_scan": SCAN, "commit": "abc", "weekday": "friday"})
    assert verdict.allow is False
    assert verdict.reasons == ["change freeze: no deploys on Friday"]
    assert verdict.policies == [
        "data.pilotage.deploy",
        "bundled/deploy.rego",
        "bundled/deploy_consumers.rego",
        str(tmp_path / "freeze.rego"),
    ]
    both = e.evaluate("deploy", {"tests_passed": False, "commit": "abc", "weekday": "friday", "security_scan": SCAN})
    assert len(both.reasons) == 2


def test_undefined_action_is_denied() -> None:
    verdict = engine().evaluate("launch_missiles", {})
    assert verdict.allow is False
    assert verdict.reasons == ["no policy defines data.pilotage.launch_missiles"]
    assert verdict.engine == "rego:"
    bad_name = engine().evaluate("../etc", {})
    assert bad_name.allow is False and "no policy defines" in bad_name.reasons[0]


def test_package_without_deny_rule_is_denied(tmp_path: Path) -> None:
    (tmp_path / "p.rego").write_text("package pilotage.publish\n\nallow := true\n")
    verdict = engine(tmp_path).evaluate("publish", {})
    assert verdict.allow is False
    assert verdict.reasons == ["no policy defines data.pilotage.publish.deny (the package has no deny rule)"]


def test_non_set_deny_is_an_engine_error(tmp_path: Path) -> None:
    (tmp_path / "p.rego").write_text('package pilotage.publish\n\ndeny := "nope"\n')
    verdict = engine(tmp_path).evaluate("publish", {})
    assert verdict.allow is False
    assert "is not a set" in verdict.reasons[0]


def test_policy_that_fails_to_evaluate_is_refused_by_check(tmp_path: Path) -> None:
    # complete + partial definitions of one rule: regopy's compiled VM crashes on this; check() must refuse it
    (tmp_path / "a.rego").write_text("package pilotage.publish\n\ndeny := set()\n")
    (tmp_path / "b.rego").write_text('package pilotage.publish\n\ndeny contains "x" if { true }\n')
    e = engine(tmp_path)
    with pytest.raises(InputError) as info:
        e.check()
    assert info.value.message.startswith(
        f"policy {tmp_path / 'a.rego'}, {tmp_path / 'b.rego'} does not evaluate: data.pilotage.publish.deny: "
    )
    assert e.evaluate("publish", {}).allow is False


def test_unknown_function_is_refused(tmp_path: Path) -> None:
    (tmp_path / "a.rego").write_text("package pilotage.publish\n\ndeny contains m if { m := no_such_fn(1) }\n")
    with pytest.raises(InputError, match="Function not found: no_such_fn"):
        engine(tmp_path).check()


def test_input_must_be_json_serialisable() -> None:
    e = engine()
    with pytest.raises(InputError, match="not JSON-serialisable"):
        e.evaluate("deploy", {"tests_passed": True, "security_scan": SCAN, "when": object()})
    with pytest.raises(InputError, match="not JSON-serialisable"):
        e.evaluate("deploy", {"tests_passed": True, "security_scan": SCAN, "ratio": math.nan})


def test_strings_with_quotes_and_unicode_survive() -> None:
    verdict = engine().evaluate(
        "merge", {"dependencies": [{"name": 'évil "pkg"', "version": "1", "license": "GPL-3.0-only"}]}
    )
    assert verdict.reasons == [
        'dependency évil "pkg" 1 has licence "GPL-3.0-only", which is not on the licence allow-list'
    ]


def test_interpreted_mode_gives_the_same_verdicts() -> None:
    fast, slow = engine(), engine(compiled=False)
    for action, payload in [
        ("deploy", {"tests_passed": False, "commit": "c1"}),
        ("merge", {"dependencies": [{"name": "x", "version": "1", "license": "UNKNOWN"}]}),
        ("scale", {"environment": "e", "idle_s": 5, "min_idle_s": 10}),
    ]:
        assert fast.evaluate(action, payload) == slow.evaluate(action, payload)


def _per_call_ms(e: RegoPolicyEngine, action: str, payload: dict[str, object], n: int = 100) -> float:
    e.check()
    start = time.perf_counter()
    for _ in range(n):
        e.evaluate(action, payload)
    return (time.perf_counter() - start) / n * 1000


def test_compiled_evaluation_is_cheaper_than_interpreting() -> None:
    payload = {"commit": "c", "tests_passed": True, "security_scan": SCAN}
    compiled, interpreted = (
        _per_call_ms(engine(), "deploy", payload),
        _per_call_ms(engine(compiled=False), "deploy", payload),
    )
    assert compiled * 3 < interpreted, (compiled, interpreted)
    deps = {"dependencies": [{"name": f"p{i}", "version": "1", "license": "MIT"} for i in range(20)]}
    assert _per_call_ms(engine(), "merge", deps, n=20) < 50.0


def test_from_settings_and_close(tmp_path: Path) -> None:
    e = RegoPolicyEngine.from_settings(Settings(policy_dirs=[tmp_path]))
    with e:
        verdict = e.evaluate("merge", {"dependencies": [{"name": "a", "version": "1", "license": "ISC"}]})
        assert verdict.allow is True
    e.close()
    assert e.evaluate("rollback", {}).allow is True  # reloads after close
