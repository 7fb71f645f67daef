"""OPAPolicyEngine against a local stand-in that speaks OPA's REST Data API on the real Rego engine.

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
        opa = OPAPolicyEngine(server.url, data={"license_allowlist": ALLOW})  # type: ignore[attr-defined]
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
            assert got.engine == server.url and got.policies == [f"data.pilotage.{action}", server.url]  # type: ignore[attr-defined]
        posts = [path for method, path, _ in server.requests if method == "POST"]
        assert posts[:2] == ["/v1/data/pilotage/deploy/deny", "/v1/data/pilotage/deploy/needs_approval"]
        assert ("PUT", "/v1/data/license_allowlist", ALLOW) in server.requests
        assert server.requests[1][2] == {"input": cases[0][1]}


def test_undefined_package_and_server_errors_deny(tmp_path: Path) -> None:
    (tmp_path / "bad.rego").write_text('package pilotage.publish\n\ndeny := "not a set"\n')
    with opa_standin([tmp_path]) as server:
        opa = OPAPolicyEngine(server.url)  # type: ignore[attr-defined]
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
        opa = OPAPolicyEngine(server.url, timeout_s=0.3)  # type: ignore[attr-defined]
        start = time.monotonic()
        verdict = opa.evaluate("deploy", {"commit": "c", "tests_passed": True, "security_scan": SCAN})
        assert time.monotonic() - start < 1.5
        assert verdict.allow is False
        assert verdict.reasons == [f"policy engine timeout: {server.url} gave no answer within 0.3 s"]  # type: ignore[attr-defined]


def test_input_must_be_json_serialisable() -> None:
    opa = OPAPolicyEngine("http://127.0.0.1:9")
    with pytest.raises(InputError, match="not JSON-serialisable"):
        opa.evaluate("deploy", {"when": object()})
    with pytest.raises(InputError, match="not JSON-serialisable"):
        opa.evaluate("deploy", {"ratio": math.inf})
