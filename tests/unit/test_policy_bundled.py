"""Each bundled policy, allow and deny, evaluated with real Rego."""

from __future__ import annotations

import pytest

from pilotage.policy.rego import RegoPolicyEngine
from pilotage.settings import Settings


@pytest.fixture(scope="module")
def rego() -> RegoPolicyEngine:
    e = RegoPolicyEngine(policy_dirs=[], data={"license_allowlist": Settings().license_allowlist})
    e.check()
    return e


MERGE_FILES = [f"bundled/merge{part}.rego" for part in ("", "_crypto", "_dependencies", "_secrets", "_security")]


def dep(name: str, license: str, version: str = "1.0") -> dict[str, str]:
    return {"name": name, "version": version, "license": license}


def test_merge_allows_allow_listed_licences(rego: RegoPolicyEngine) -> None:
    verdict = rego.evaluate(
        "merge",
        {
            "dependencies": [
                dep("fastapi", "MIT"),
                dep("rich", "MIT License"),
                dep("httpx", "BSD-3-Clause"),
                dep("requests", "apache-2.0"),
                dep("prometheus-client", "Apache-2.0 AND BSD-2-Clause"),
                dep("packaging", "Apache-2.0 OR BSD-2-Clause"),
                dep("dual", "(MIT OR GPL-3.0-only)"),
            ],
            "files_changed": ["app/main.py", "requirements.txt"],
        },
    )
    assert verdict.allow is True, verdict.reasons
    assert verdict.reasons == []
    assert verdict.policies == ["data.pilotage.merge", *MERGE_FILES]


def test_merge_denies_unlisted_and_unknown_licences(rego: RegoPolicyEngine) -> None:
    verdict = rego.evaluate(
        "merge",
        {
            "dependencies": [
                dep("fastapi", "MIT"),
                dep("gplthing", "GPL-3.0-only", "2.1"),
                dep("mystery", "UNKNOWN", "0.1"),
                dep("blank", "", "0.2"),
                dep("mixed", "MIT AND GPL-3.0-only", "3"),
                dep("sneaky", "Proprietary; see disclaimer", "4"),  # "disclaimer" must not match "ISC"
                {"name": "nolicence", "version": "5"},
            ]
        },
    )
    assert verdict.allow is False
    assert verdict.reasons == [
        "dependency blank 0.2 has no known licence: declare it in the package metadata or review it by hand",
        'dependency gplthing 2.1 has licence "GPL-3.0-only", which is not on the licence allow-list',
        'dependency mixed 3 has licence "MIT AND GPL-3.0-only", which is not on the licence allow-list',
        "dependency mystery 0.1 has no known licence: declare it in the package metadata or review it by hand",
        "dependency nolicence 5 has no known licence: declare it in the package metadata or review it by hand",
        'dependency sneaky 4 has licence "Proprietary; see disclaimer", which is not on the licence allow-list',
    ]


def test_merge_denies_secret_files(rego: RegoPolicyEngine) -> None:
    verdict = rego.evaluate("merge", {"dependencies": [], "files_changed": ["app/.env", "keys/server.pem", "ok.py"]})
    assert verdict.reasons == [
        "file app/.env looks like a secret (private key or .env): remove it from the change",
        "file keys/server.pem looks like a secret (private key or .env): remove it from the change",
    ]


def test_merge_with_empty_allowlist_fails_closed() -> None:
    e = RegoPolicyEngine(policy_dirs=[], data={})
    verdict = e.evaluate("merge", {"dependencies": [dep("fastapi", "MIT")]})
    assert verdict.allow is False
    assert "not on the licence allow-list" in verdict.reasons[0]


SCAN = {"tool": "bandit", "status": "completed", "issues": {"high": 0, "medium": 0, "low": 3}}


def test_deploy(rego: RegoPolicyEngine) -> None:
    assert rego.evaluate("deploy", {"commit": "abc123", "tests_passed": True, "security_scan": SCAN}).allow is True
    denied = rego.evaluate("deploy", {"commit": "abc123", "tests_passed": False, "security_scan": SCAN})
    assert denied.reasons == ["tests failed for commit abc123: no deploy of a change whose tests failed"]
    assert rego.evaluate("deploy", {"commit": "abc123", "tests_passed": "true", "security_scan": SCAN}).allow is False
    missing = rego.evaluate("deploy", {})
    assert missing.reasons == [
        "no security scan recorded for commit (unknown commit): no deploy without a completed security scan (bandit)",
        "tests failed for commit (unknown commit): no deploy of a change whose tests failed",
    ]
    scan = rego.evaluate(
        "deploy", {"commit": "c", "tests_passed": True, "security_scan": SCAN, "security_scan_passed": False}
    )
    assert scan.reasons == ["security scan failed for commit c: no deploy without a passing security scan"]


def test_deploy_requires_a_completed_security_scan(rego: RegoPolicyEngine) -> None:
    base = {"commit": "c1", "tests_passed": True}
    assert rego.evaluate("deploy", base).reasons == [
        "no security scan recorded for commit c1: no deploy without a completed security scan (bandit)"
    ]
    failed = {"tool": "bandit", "status": "error", "reason": "bandit timed out", "issues": {}}
    assert rego.evaluate("deploy", {**base, "security_scan": failed}).reasons == [
        "security scan of commit c1 did not complete (error): no deploy without a completed security scan"
    ]
    high = {**SCAN, "issues": {"high": 2, "medium": 0, "low": 0}}
    assert rego.evaluate("deploy", {**base, "security_scan": high}).reasons == [
        "security scan of commit c1 found 2 high-severity issue(s): no deploy until they are fixed"
    ]
    assert rego.evaluate("deploy", {**base, "security_scan": SCAN}).allow is True


def test_promote(rego: RegoPolicyEngine) -> None:
    assert rego.evaluate("promote", {"deployment_id": "d1", "healthy": True}).allow is True
    denied = rego.evaluate("promote", {"deployment_id": "d1", "healthy": False})
    assert denied.reasons == ["canary of deployment d1 is not healthy: no promotion of a version that misses its SLO"]
    assert rego.evaluate("promote", {"deployment_id": "d1"}).allow is False


def test_rollback_is_always_allowed(rego: RegoPolicyEngine) -> None:
    assert rego.evaluate("rollback", {"deployment_id": "d1", "reason": "slo breach"}).allow is True
    assert rego.evaluate("rollback", {}).allow is True


def test_scale(rego: RegoPolicyEngine) -> None:
    idle = rego.evaluate("scale", {"environment": "checkout-v2", "idle_s": 7300, "min_idle_s": 7200})
    assert idle.allow is True
    busy = rego.evaluate("scale", {"environment": "checkout-v2", "idle_s": 12.5, "min_idle_s": 7200})
    assert busy.reasons == [
        "environment checkout-v2 received requests 12.5 s ago, within the idle window of 7200 s: no scale-down"
    ]
    assert rego.evaluate("scale", {"environment": "e", "direction": "up", "idle_s": 0, "min_idle_s": 60}).allow
    unknown = rego.evaluate("scale", {"environment": "e", "min_idle_s": 60})
    assert unknown.reasons == ["idle time of environment e is unknown: no scale-down without it"]
    sideways = rego.evaluate("scale", {"environment": "e", "direction": "sideways"})
    assert sideways.reasons == ['unknown scaling direction sideways for environment e: use "down" or "up"']


def test_commit(rego: RegoPolicyEngine) -> None:
    ok = {"repo_path": "/r", "branch": "pilotage/x", "role": "change", "message": "Add x", "files": ["app/main.py"]}
    assert rego.evaluate("commit", ok).allow is True
    assert rego.evaluate("commit", {**ok, "branch": "main", "role": "baseline"}).allow is True
    denied = rego.evaluate("commit", {**ok, "branch": "main", "message": " ", "files": ["app/main.py", "k/id_rsa"]})
    assert denied.reasons == [
        "a generated change may not be committed on main: commit it on its own branch",
        "empty commit message: say what the commit changes",
        "file k/id_rsa looks like a secret (private key or .env): it must not be committed",
    ]
    assert denied.findings[2] == {"kind": "deny", "msg": denied.reasons[2], "rule": "secret-file", "file": "k/id_rsa"}


def test_new_dependency_needs_approval_and_an_approval_covers_only_its_messages(rego: RegoPolicyEngine) -> None:
    new = [dep("httpx", "BSD-3-Clause", "0.28.1"), dep("rich", "MIT", "13.0")]
    asked = rego.evaluate("merge", {"dependencies": new, "new_dependencies": new})
    msgs = [
        "new external dependency httpx 0.28.1 (licence BSD-3-Clause) needs approval",
        "new external dependency rich 13.0 (licence MIT) needs approval",
    ]
    assert asked.allow is False and asked.awaits_approval and asked.needs_approval == msgs
    assert asked.reasons == ["approval required: " + m for m in msgs]
    one = {"id": "apr-1", "granted": True, "by": "a", "approved": msgs[:1]}
    partly = rego.evaluate("merge", {"dependencies": new, "new_dependencies": new, "approval": one})
    assert partly.needs_approval == msgs[1:]
    both = rego.evaluate("merge", {"dependencies": new, "new_dependencies": new, "approval": {**one, "approved": msgs}})
    assert both.allow is True and both.reasons == []
    refused = rego.evaluate(
        "merge", {"dependencies": new, "new_dependencies": new, "approval": {**one, "granted": False}}
    )
    assert refused.allow is False
    assert rego.evaluate("merge", {"dependencies": new, "new_dependencies": []}).allow is True


def test_crypto_and_secrets(rego: RegoPolicyEngine) -> None:
    safe = [
        {"file": "a.py", "line": 3, "kind": "hash", "name": "md5", "for_security": False, "distribution": None},
        {"file": "a.py", "line": 4, "kind": "import", "name": "Crypto.Cipher", "for_security": True,
         "distribution": "pycryptodome"},
    ]  # fmt: skip
    assert rego.evaluate("merge", {"dependencies": [], "crypto": safe, "secrets": []}).allow is True
    weak = [{**safe[0], "for_security": True, "name": "sha1"}]
    (reason,) = rego.evaluate("merge", {"dependencies": [], "crypto": weak}).reasons
    assert reason.startswith("banned cryptography at a.py:3: sha1 used for security")
    secret = [{"file": "cfg.py", "line": 7, "type": "Secret Keyword"}]
    found = rego.evaluate("merge", {"dependencies": [], "secrets": secret})
    assert found.reasons == [
        "hard-coded secret (Secret Keyword) at cfg.py:7: move it to an environment variable or a secret store"
    ]
    assert found.findings[0]["file"] == "cfg.py" and found.findings[0]["line"] == 7
