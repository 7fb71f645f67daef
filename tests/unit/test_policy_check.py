"""`pilotage policy check` and the facts behind it: real packages from the venv, secrets, crypto, bandit, SARIF.

Real input without the network: the installed source of two real distributions, laid out as an sdist (the package
folder plus its core metadata as PKG-INFO): requests (permissive licences throughout) and py-serializable
(Apache-2.0) whose dependency defusedxml is under the Python licence ("Python-2.0" in the SBOM), which is not on
the default allow-list.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from pilotage.errors import InputError
from pilotage.policy.check import check_repository, to_sarif
from pilotage.policy.facts import component_licence, declared_requirements, dependency_closure
from pilotage.policy.rego import RegoPolicyEngine
from pilotage.policy.scans import added_lines, scan_bandit, scan_crypto, scan_secrets
from pilotage.settings import Settings

ENGINE = RegoPolicyEngine(data={"license_allowlist": Settings().license_allowlist})
AWS_KEY = "AKIAIOSFODNN7EXAMPLE"  # AWS's documented example key id (not a real credential)


def sdist_of(distribution: str, package: str, dst: Path) -> Path:
    """Copy an installed distribution's package and metadata into ``dst`` as an sdist would hold them."""
    dist = metadata.distribution(distribution)
    source = Path(str(dist.locate_file(package)))
    shutil.copytree(source, dst / package, ignore=shutil.ignore_patterns("__pycache__"))
    (dst / "PKG-INFO").write_text(dist.read_text("METADATA") or "", encoding="utf-8")
    return dst


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), "-c", "user.email=t@t", "-c", "user.name=t", *args],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip


def test_requests_is_allowed_with_its_real_findings(tmp_path: Path) -> None:
    report = check_repository(sdist_of("requests", "requests", tmp_path), ENGINE)
    assert report.denied is False and report.verdict.allow is True
    deps = {d["name"]: d for d in report.input["dependencies"]}
    assert set(deps) == {"certifi", "charset-normalizer", "idna", "urllib3"}
    assert deps["certifi"]["license"] == "MPL-2.0" and deps["idna"]["license"] == "BSD-3-Clause"
    assert all(d["license_source"] == "sbom" and d["manifest"] == "PKG-INFO" for d in deps.values())
    # requests hashes with md5/sha1 for HTTP digest auth, marked usedforsecurity=False: facts, not denies
    md5 = [f for f in report.input["crypto"] if f["name"] == "md5"]
    assert md5 and all(f["for_security"] is False and f["file"] == "requests/auth.py" for f in md5)
    assert report.input["secrets"] == []
    scan = report.input["security_scan"]
    assert scan["status"] == "completed" and scan["issues"]["high"] == 0 and scan["issues"]["low"] >= 10
    assert {f["rule"] for f in report.findings} == {"bandit/B101", "vulnerabilities"}
    assert {
        "level": "note",
        "rule": "vulnerabilities",
        "msg": "vulnerability lookup skipped: offline",
    } in report.findings
    assert report.facts["vulnerability_scan"] == "skipped: offline"


def test_py_serializable_is_denied_for_its_dependency_licence(tmp_path: Path) -> None:
    report = check_repository(sdist_of("py-serializable", "py_serializable", tmp_path), ENGINE)
    assert report.denied is True
    version = metadata.version("defusedxml")
    assert report.verdict.reasons == [
        f'dependency defusedxml {version} has licence "Python-2.0", which is not on the licence allow-list'
    ]
    (error,) = [f for f in report.findings if f["level"] == "error"]
    assert error["rule"] == "licence-not-allowed" and error["file"] == "PKG-INFO"
    warnings = [f for f in report.findings if f["level"] == "warning"]
    assert warnings and {f["rule"] for f in warnings} == {"bandit/B307"}  # eval() in py_serializable/__init__.py

    sarif = to_sarif(report, "0.1.0")
    assert sarif["version"] == "2.1.0" and sarif["$schema"].endswith("sarif-2.1.0.json")
    (run,) = sarif["runs"]
    first = run["results"][0]
    assert first["ruleId"] == "licence-not-allowed" and first["level"] == "error"
    assert first["locations"][0]["physicalLocation"]["artifactLocation"] == {
        "uri": "PKG-INFO",
        "uriBaseId": "%SRCROOT%",
    }
    b307 = next(r for r in run["results"] if r["ruleId"] == "bandit/B307")
    assert b307["locations"][0]["physicalLocation"]["region"]["startLine"] > 0
    assert {r["id"] for r in run["tool"]["driver"]["rules"]} >= {"licence-not-allowed", "bandit/B307"}
    assert run["originalUriBaseIds"]["%SRCROOT%"]["uri"] == tmp_path.resolve().as_uri() + "/"


def test_planted_secret_weak_hash_and_pycrypto_are_denied(tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text("pycrypto==2.6.1\n")
    (tmp_path / "app.py").write_text(
        "import hashlib\nfrom Crypto.Cipher import AES\n\n"
        f'AWS_KEY = "{AWS_KEY}"\n'
        "def token(x):\n    return hashlib.md5(x).hexdigest()\n\n"
        "def etag(x):\n    return hashlib.sha1(x, usedforsecurity=False).hexdigest()\n"
    )
    report = check_repository(tmp_path, ENGINE)
    assert report.denied is True
    reasons = report.verdict.reasons
    assert "hard-coded secret (AWS Access Key) at app.py:4: move it to an environment variable or a secret store" in (
        reasons
    )
    assert any(r.startswith("banned cryptography at app.py:6: md5 used for security") for r in reasons)
    assert any(r.startswith("banned cryptography at app.py:2: import of Crypto.Cipher from pycrypto") for r in reasons)
    assert any(
        r.startswith("dependency pycrypto  is banned cryptography") for r in reasons
    )  # not installed: no version
    assert "dependency pycrypto  has no known licence" in " ".join(reasons)  # unknown licence string: deny
    assert not any("app.py:9" in r for r in reasons)  # sha1 with usedforsecurity=False is allowed


def test_secrets_count_only_on_added_lines(tmp_path: Path) -> None:
    git(tmp_path, "init", "-q")
    (tmp_path / "old.py").write_text(f'LEGACY = "{AWS_KEY}"\n')
    (tmp_path / "new.py").write_text("x = 1\n")
    git(tmp_path, "add", "-A")
    git(tmp_path, "commit", "-qm", "base")
    base = git(tmp_path, "rev-parse", "HEAD")
    (tmp_path / "new.py").write_text(f'x = 1\npassword = "{AWS_KEY}"\n')
    (tmp_path / "old.py").write_text(f'LEGACY = "{AWS_KEY}"\nok = 2\n')
    git(tmp_path, "commit", "-qam", "change")
    lines = added_lines(tmp_path, base, "HEAD")
    assert lines == {"new.py": {2}, "old.py": {2}}
    found = scan_secrets(tmp_path, ["new.py", "old.py"], lines)
    assert {(f["file"], f["line"]) for f in found} == {("new.py", 2)}  # the old secret is not in the diff
    assert {f["type"] for f in found} >= {"AWS Access Key"}


def test_crypto_scan_facts(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text(
        "import hashlib, hmac\nimport md5\n"
        "hashlib.new('MD5')\nhmac.new(b'k', b'm', digestmod='sha1')\nhashlib.sha256(b'x')\n"
    )
    (tmp_path / "broken.py").write_text("def (:\n")
    facts, problems = scan_crypto(tmp_path, ["a.py", "broken.py", "README.md"])
    assert [(f["line"], f["kind"], f["name"], f["for_security"]) for f in facts] == [
        (2, "import", "md5", True),
        (3, "hash", "md5", True),
        (4, "hash", "sha1", True),
    ]
    assert problems == ["broken.py: does not parse (line 1)"]


def test_bandit_scan_reports_high_severity(tmp_path: Path) -> None:
    (tmp_path / "svc.py").write_text("import subprocess\n\ndef run(cmd):\n    subprocess.call(cmd, shell=True)\n")
    scan = scan_bandit(tmp_path)
    assert scan["status"] == "completed" and scan["files"] == 1
    assert scan["issues"]["high"] == 1
    assert scan["findings"][0] | {"text": ""} == {
        "test_id": "B602", "file": "svc.py", "line": 4, "severity": "HIGH", "confidence": "HIGH", "text": "",
    }  # fmt: skip
    verdict = ENGINE.evaluate("merge", {"dependencies": [], "security_scan": scan})
    assert verdict.allow is False and verdict.reasons[0].startswith("security scan (bandit B602) at svc.py:4: ")


def test_manifests_closure_and_sbom_licences(tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text(
        "# app\nfastapi==0.115.0  # web\n-r other.txt\nuvloop; sys_platform == 'win32'\n"
    )
    (tmp_path / "requirements-dev.txt").write_text("pytest\n")
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\ndependencies = ["httpx>=0.27", "FastAPI"]\n')
    declared = declared_requirements(tmp_path)
    assert [(d["name"], d["source"]) for d in declared] == [
        ("fastapi", "requirements.txt"),
        ("httpx", "pyproject.toml"),
    ]
    closure = {d["name"]: d for d in dependency_closure(["httpx"])}
    assert closure["httpx"]["direct"] is True and "httpx" in closure["httpcore"]["required_by"]
    assert closure["anyio"]["installed"] is True and closure["anyio"]["direct"] is False
    assert component_licence({"licenses": [{"expression": "Apache-2.0 OR MIT"}]}) == "Apache-2.0 OR MIT"
    assert (
        component_licence(
            {
                "licenses": [
                    {"license": {"id": "Apache-2.0"}},
                    {"license": {"name": "License :: OSI Approved :: Apache Software License"}},
                ]
            }
        )
        == "Apache-2.0"
    )
    assert component_licence({"licenses": [{"license": {"name": "Frobnicate Public Licence"}}]}) == (
        "Frobnicate Public Licence"
    )
    assert component_licence({}) == "UNKNOWN"
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "requirements.txt").write_text("fastapi===\n")
    with pytest.raises(InputError, match=r"requirements.txt: not a requirement: 'fastapi==='"):
        declared_requirements(bad)


def run_cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(cwd), "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "pilotage", *args], cwd=cwd, env=env, capture_output=True, text=True)


def test_cli_exit_codes_json_sarif_and_broken_policy(tmp_path: Path) -> None:
    repo = sdist_of("py-serializable", "py_serializable", tmp_path / "ps")
    denied = run_cli(tmp_path, "policy", "check", str(repo), "--json", "--no-sbom")
    assert denied.returncode == 1, denied.stderr
    doc = json.loads(denied.stdout)
    assert doc["denied"] is True and doc["facts"]["licence_source"] == "metadata"
    assert doc["verdict"]["reasons"][0].startswith("dependency defusedxml ")
    sarif = run_cli(tmp_path, "policy", "check", str(repo), "--format", "sarif", "--no-sbom")
    assert sarif.returncode == 1 and json.loads(sarif.stdout)["version"] == "2.1.0"
    text = run_cli(tmp_path, "policy", "check", str(repo), "--no-sbom")
    assert text.returncode == 1 and "merge: denied" in text.stdout and "licence-not-allowed" in text.stdout

    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "bad.rego").write_text(
        "package pilotage.merge\n\ndeny contains msg if {\n  input.a ==\n}\n"
    )
    broken = run_cli(tmp_path, "policy", "check", str(repo), "--no-sbom")
    assert broken.returncode == 2
    assert broken.stderr.count("\n") == 1
    assert broken.stderr.startswith("error: policy policies/bad.rego does not parse at line 4: ")
    assert "policies/bad.rego:4:" in broken.stderr


def test_requests_is_denied_under_a_permissive_only_allow_list_for_certifi(tmp_path: Path) -> None:
    """Real input with a copyleft dependency: requests depends on certifi, MPL-2.0 (weak copyleft)."""
    permissive_only = [lic for lic in Settings().license_allowlist if not lic.startswith("MPL")]
    engine = RegoPolicyEngine(data={"license_allowlist": permissive_only})
    report = check_repository(sdist_of("requests", "requests", tmp_path), engine)
    assert report.denied is True
    version = metadata.version("certifi")
    assert report.verdict.reasons == [
        f'dependency certifi {version} has licence "MPL-2.0", which is not on the licence allow-list'
    ]
