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
    assert verdict.policies == ["data.pilotage.merge", "bundled/merge.rego"]


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


def test_deploy(rego: RegoPolicyEngine) -> None:
    assert rego.evaluate("deploy", {"commit": "abc123", "tests_passed": True}).allow is True
    denied = rego.evaluate("deploy", {"commit": "abc123", "tests_passed": False})
    assert denied.reasons == ["tests failed for commit abc123: no deploy of a change whose tests failed"]
    assert rego.evaluate("deploy", {"commit": "abc123", "tests_passed": "true"}).allow is False
    missing = rego.evaluate("deploy", {})
    assert missing.reasons == ["tests failed for commit (unknown commit): no deploy of a change whose tests failed"]
    scan = rego.evaluate("deploy", {"commit": "c", "tests_passed": True, "security_scan_passed": False})
    assert scan.reasons == ["security scan failed for commit c: no deploy without a passing security scan"]


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
