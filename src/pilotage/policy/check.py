"""``pilotage policy check``: the governance policies run on a repository, with findings as text, JSON or SARIF.

The repository's facts are gathered offline (:mod:`pilotage.policy.facts`, :mod:`pilotage.policy.scans`) into
the ``merge`` input — the same document the governance agent builds for a generated change — and the ``merge``
policies are evaluated on it:

``{"repository", "commit", "dependencies": [{name, version, license, license_source, direct, installed,
required_by}], "new_dependencies": [], "files_changed": [every scanned file], "crypto": [...], "secrets": [...],
"security_scan": {bandit summary}, "vulnerability_scan": {"status": "skipped: offline"}}``

A repository has no base to compare with, so ``new_dependencies`` is empty (nothing waits for approval). The
report lists the policy findings (``error`` for a deny, ``warning`` for an approval a change would need) and, as
``note``/``warning`` findings that deny nothing, bandit's low and medium issues and the skipped vulnerability
lookup. SARIF output follows SARIF 2.1.0 (OASIS, https://docs.oasis-open.org/sarif/sarif/v2.1.0/).
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pilotage.errors import InputError
from pilotage.policy.base import PolicyEngine, Verdict
from pilotage.policy.facts import declared_requirements, dependency_facts, normalise
from pilotage.policy.scans import OFFLINE_VULNERABILITIES, scan_bandit, scan_crypto, scan_secrets, source_files

__all__ = ["CheckReport", "check_repository", "repository_input", "to_sarif"]

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
_LEVEL = {"deny": "error", "approval": "warning"}
_BANDIT_LEVEL = {"HIGH": "error", "MEDIUM": "warning", "LOW": "note"}


@dataclass
class CheckReport:
    """The outcome of :func:`check_repository`.

    Attributes:
        path: the repository checked (absolute).
        verdict: the ``merge`` verdict.
        findings: ``[{"level": "error" | "warning" | "note", "rule", "msg", "file"?, "line"?}]``, denies first.
        facts: counts and sources (dependencies, licence source, files scanned, bandit, vulnerability status).
        input: the policy input document.
    """

    path: Path
    verdict: Verdict
    findings: list[dict[str, Any]] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)
    input: dict[str, Any] = field(default_factory=dict)

    @property
    def denied(self) -> bool:
        """True when a policy denied (exit code 1); a pending approval alone is not a deny."""
        return any(f["kind"] == "deny" for f in self.verdict.findings) or (
            not self.verdict.allow and not self.verdict.needs_approval
        )

    def to_dict(self) -> dict[str, Any]:
        """Return the report as JSON-serialisable data (what ``--json`` prints)."""
        return {
            "path": str(self.path),
            "denied": self.denied,
            "verdict": self.verdict.to_dict(),
            "findings": self.findings,
            "facts": self.facts,
        }


def _head(root: Path) -> str:
    try:
        proc = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return proc.stdout.strip() if proc.returncode == 0 else ""


def repository_input(root: Path, *, use_sbom: bool = True) -> dict[str, Any]:
    """Gather the facts of the repository at ``root`` into the ``merge`` input (module docstring).

    Raises:
        InputError: ``root`` is not a folder, or a dependency manifest does not parse.
    """
    if not root.is_dir():
        raise InputError(f"{root} is not a folder", hint="give the path of a repository", path=root)
    declared = declared_requirements(root)
    dependencies, licence_source = dependency_facts([d["name"] for d in declared], use_sbom=use_sbom)
    sources = {normalise(d["name"]): d["source"] for d in declared}
    for dep in dependencies:
        root_dep = dep["name"] if dep["direct"] else (dep["required_by"] or [""])[0]
        dep["manifest"] = sources.get(normalise(root_dep), "")
    files = source_files(root)
    crypto, unparsable = scan_crypto(root, files)
    return {
        "repository": str(root),
        "commit": _head(root),
        "dependencies": dependencies,
        "new_dependencies": [],
        "files_changed": files,
        "crypto": crypto,
        "secrets": scan_secrets(root, files),
        "security_scan": scan_bandit(root),
        "vulnerability_scan": dict(OFFLINE_VULNERABILITIES),
        "licence_source": licence_source,
        "unparsable_files": unparsable,
    }


def check_repository(root: Path, engine: PolicyEngine, *, use_sbom: bool = True) -> CheckReport:
    """Run the ``merge`` policies of ``engine`` on the repository at ``root``.

    Raises:
        InputError: as :func:`repository_input`.
    """
    root = root.resolve()
    policy_input = repository_input(root, use_sbom=use_sbom)
    verdict = engine.evaluate("merge", policy_input)
    manifests = {normalise(d["name"]): d.get("manifest", "") for d in policy_input["dependencies"]}
    findings: list[dict[str, Any]] = []
    for found in verdict.findings:
        item = {"level": _LEVEL.get(found["kind"], "error"), **{k: v for k, v in found.items() if k != "kind"}}
        if "file" not in item and found.get("dependency"):
            manifest = manifests.get(normalise(found["dependency"]))
            if manifest:
                item["file"] = manifest
        findings.append(item)
    if not verdict.findings and not verdict.allow:  # the engine could not answer: fail closed, one finding
        findings.extend({"level": "error", "rule": "policy-engine", "msg": reason} for reason in verdict.reasons)
    scan = policy_input["security_scan"]
    for issue in scan.get("findings") or []:
        if issue["severity"] != "HIGH":  # high ones are policy denies above
            findings.append(
                {
                    "level": _BANDIT_LEVEL.get(issue["severity"], "note"),
                    "rule": f"bandit/{issue['test_id']}",
                    "msg": f"{issue['text']} (bandit {issue['test_id']}, severity {issue['severity'].lower()}, "
                    f"confidence {issue['confidence'].lower()})",
                    "file": issue["file"],
                    "line": issue["line"],
                }
            )
    if scan.get("status") != "completed":
        findings.append({"level": "warning", "rule": "security-scan", "msg": f"bandit: {scan.get('reason')}"})
    findings.append(
        {"level": "note", "rule": "vulnerabilities", "msg": f"vulnerability lookup {OFFLINE_VULNERABILITIES['status']}"}
    )
    facts = {
        "dependencies": len(policy_input["dependencies"]),
        "direct_dependencies": sum(1 for d in policy_input["dependencies"] if d["direct"]),
        "licences": {d["name"]: d["license"] for d in policy_input["dependencies"]},
        "licence_source": policy_input["licence_source"],
        "files_scanned": len(policy_input["files_changed"]),
        "secrets": len(policy_input["secrets"]),
        "crypto_uses": len(policy_input["crypto"]),
        "security_scan": {k: scan.get(k) for k in ("tool", "version", "status", "files", "issues")},
        "vulnerability_scan": policy_input["vulnerability_scan"]["status"],
        "unparsable_files": policy_input["unparsable_files"],
    }
    return CheckReport(path=root, verdict=verdict, findings=findings, facts=facts, input=policy_input)


def to_sarif(report: CheckReport, tool_version: str = "") -> dict[str, Any]:
    """Return the report as a SARIF 2.1.0 log (one run; locations relative to ``%SRCROOT%`` = the repository)."""
    rules: dict[str, dict[str, Any]] = {}
    results = []
    for found in report.findings:
        rule = str(found["rule"])
        rules.setdefault(rule, {"id": rule, "shortDescription": {"text": rule.replace("-", " ")}})
        result: dict[str, Any] = {"ruleId": rule, "level": found["level"], "message": {"text": found["msg"]}}
        if found.get("file"):
            location: dict[str, Any] = {"artifactLocation": {"uri": found["file"], "uriBaseId": "%SRCROOT%"}}
            if found.get("line"):
                location["region"] = {"startLine": int(found["line"])}
            result["locations"] = [{"physicalLocation": location}]
        results.append(result)
    return {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "pilotage",
                        "version": tool_version,
                        "informationUri": "https://github.com/pilotage/pilotage",
                        "rules": list(rules.values()),
                    }
                },
                "originalUriBaseIds": {"%SRCROOT%": {"uri": report.path.as_uri() + "/"}},
                "invocations": [
                    {
                        "executionSuccessful": report.verdict.allow or bool(report.verdict.findings),
                        "toolExecutionNotifications": [
                            {"level": "note", "message": {"text": OFFLINE_VULNERABILITIES["reason"]}}
                        ],
                    }
                ],
                "results": results,
            }
        ],
    }
