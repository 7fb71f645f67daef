"""OPAPolicyEngine against a local stand-in that speaks OPA's REST Data API with OPA's own evaluator.

A real OPA binary is not available here; tests/fixtures/opa_standin.py implements the documented endpoints.
"""

from __future__ import annotations

import math
import socket
import time
from pathlib import Path

import pytest

from pilotage.errors import BackendUnavailable, ConfigError, InputError
from pilotage.policy import open_engine
from pilotage.policy.opa import OPAPolicyEngine
from pilotage.policy.rego import RegoPolicyEngine
from pilotage.registry import backend_class
from pilotage.settings import Settings
from tests.fixtures.opa_standin import opa_standin

ALLOW = Settings().license_allowlist
SCAN = {"tool": "bandit", "status": "completed", "issues": {"high": 0, "medium": 0, "low": 0}}


def test_registered_for_http_and_https() -> None:
    assert backend_class("policy", "http://opa:8181") is OPAPolicyEngine
    assert backend_class("policy", "https://opa.example:443") is OPAPolicyEngine
    engine = open_engine(Settings(policy_url="http://opa:8181/"))
    assert isinstance(engine, OPAPolicyEngine) and engine.url == "http://opa:8181"
    with pytest.raises(ConfigError, match="needs its server URL"):
        OPAPolicyEngine(policy_dirs=[], data={})
    with pytest.raises(ConfigError, match="not an OPA server URL"):
        OPAPolicyEngine("http://")


def test_same_verdicts_as_the_in_process_engine() -> None:
    rego = RegoPolicyEngine(data={"license_allowlist": ALLOW})
    with opa_standin() as server:
        opa = OPAPolicyEngine(server.url, data={"license_allowlist": ALLOW})
        opa.check()
        cases = [
            ("deploy", {"commit": "c1", "tests_passed": True, "security_scan": SCAN}),
            ("deploy", {"commit": "c1", "tests_passed": False}),
            ("merge", {"dependencies": [{"name": "x", "version": "1", "license": "GPL-3.0-only"}]}),
            ("merge", {"dependencies": [], "new_dependencies": [{"name": "y", "version": "2", "license": "MIT"}]}),
            ("scale", {"environment": "e", "idle_s": 5, "min_idle_s": 10}),
            ("rollback", {}),
        ]
        for action, payload in cases:
            got, want = opa.evaluate(action, payload), rego.evaluate(action, payload)
            assert (got.allow, got.reasons, got.needs_approval, got.findings) == (
                want.allow,
                want.reasons,
                want.needs_approval,
                want.findings,
            ), action
            assert got.engine == server.url and got.policies == [f"data.pilotage.{action}", server.url]
        posts = [path for method, path, _ in server.requests if method == "POST"]
        assert posts[:2] == ["/v1/data/pilotage/deploy/deny", "/v1/data/pilotage/deploy/needs_approval"]
        assert ("PUT", "/v1/data/license_allowlist", ALLOW) in server.requests
        assert server.requests[1][2] == {"input": cases[0][1]}


def test_under_opa_semantics_missing_facts_deny() -> None:
    """OPA's `not f(input.missing)` is undefined (regopy: true): the bundled policies must deny all the same."""
    with opa_standin() as server:
        opa = OPAPolicyEngine(server.url, data={"license_allowlist": ALLOW})
        no_scan = opa.evaluate("deploy", {"commit": "c1", "tests_passed": True})
        assert no_scan.allow is False
        assert no_scan.reasons == [
            "no security scan recorded for commit c1: no deploy without a completed security scan (bandit)"
        ]
        commit = {"repo_path": "/r", "branch": "pilotage/x", "role": "change", "files": ["app/main.py"]}
        for message in ({}, {"message": ""}, {"message": None}, {"message": 42}):
            verdict = opa.evaluate("commit", {**commit, **message})
            assert verdict.reasons == ["empty commit message: say what the commit changes"], message
        no_idle = opa.evaluate("scale", {"environment": "e", "direction": "down"})
        assert no_idle.reasons == [
            "idle time of environment e is unknown: no scale-down without it",
            "no idle window (min_idle_s) given for environment e: no scale-down without it",
        ]
        assert opa.evaluate("scale", {"environment": "e", "idle_s": None, "min_idle_s": 60}).reasons == [
            "idle time of environment e is unknown: no scale-down without it"
        ]
        pycrypto = {"file": "a.py", "line": 4, "kind": "import", "name": "Crypto.Cipher"}  # distribution unknown
        (reason,) = opa.evaluate("merge", {"dependencies": [], "crypto": [pycrypto]}).reasons
        assert reason.startswith("banned cryptography at a.py:4: import of Crypto.Cipher from pycrypto")


def test_undefined_package_and_server_errors_deny(tmp_path: Path) -> None:
    (tmp_path / "bad.rego").write_text('package pilotage.publish\n\ndeny := "not a set"\n')
    with opa_standin([tmp_path]) as server:
        opa = OPAPolicyEngine(server.url)
        missing = opa.evaluate("launch", {})
        assert missing.allow is False
        assert missing.reasons == ["no policy defines data.pilotage.launch.deny (OPA answered undefined)"]
        assert "is not a set" in opa.evaluate("publish", {}).reasons[0]


def test_unreachable_server_denies_and_check_names_it() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens on it once closed
    opa = OPAPolicyEngine(f"http://127.0.0.1:{port}", timeout_s=2)
    verdict = opa.evaluate("deploy", {"tests_passed": True, "security_scan": SCAN})
    assert verdict.allow is False
    assert verdict.reasons[0].startswith(f"policy engine unreachable: http://127.0.0.1:{port}: ")
    with pytest.raises(BackendUnavailable, match="unreachable"):
        opa.check()


def test_slow_server_times_out_to_a_deny() -> None:
    with opa_standin(delay_s=2.0) as server:
        opa = OPAPolicyEngine(server.url, timeout_s=0.3)
        start = time.monotonic()
        verdict = opa.evaluate("deploy", {"commit": "c", "tests_passed": True, "security_scan": SCAN})
        assert time.monotonic() - start < 1.5
        assert verdict.allow is False
        assert verdict.reasons == [f"policy engine timeout: {server.url} gave no answer within 0.3 s"]


def test_input_must_be_json_serialisable() -> None:
    opa = OPAPolicyEngine("http://127.0.0.1:9")
    with pytest.raises(InputError, match="not JSON-serialisable"):
        opa.evaluate("deploy", {"when": object()})
    with pytest.raises(InputError, match="not JSON-serialisable"):
        opa.evaluate("deploy", {"ratio": math.inf})
