"""Code facts for the policies: hard-coded secrets, cryptography in use, a bandit scan, and the vulnerability status.

Every scanner reports *facts* (what was found, where); the Rego policies decide what is refused. All of them run
offline:

* secrets: ``detect-secrets`` (Yelp, https://github.com/Yelp/detect-secrets) with its default plugins, per file;
  for a change only the lines the diff adds count (:func:`added_lines` reads ``git diff -U0``). The secret value
  never leaves this module: a fact is ``{file, line, type}``.
* cryptography: an AST walk of Python files for ``hashlib.<algo>()``, ``hashlib.new("<algo>")``,
  ``hmac.new(..., digestmod=...)`` (with whether ``usedforsecurity=False`` was passed) and imports of ``Crypto``
  (pycrypto or pycryptodome, told apart by the installed distribution that provides the module), ``md5`` and ``sha``.
* security scan: ``bandit`` (PyCQA, https://github.com/PyCQA/bandit) in a subprocess, JSON report.
* vulnerabilities: a lookup needs the network (OSV, PyPI advisories), so it is reported as ``skipped: offline`` —
  never as passed.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from collections.abc import Iterable, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

from pilotage.errors import BackendError
from pilotage.runtime.sandbox import launch_options, sandbox_env

__all__ = [
    "OFFLINE_VULNERABILITIES",
    "added_lines",
    "python_files",
    "scan_bandit",
    "scan_crypto",
    "scan_secrets",
    "source_files",
]

#: What the vulnerability lookup reports without network access (it is never "passed").
OFFLINE_VULNERABILITIES: dict[str, Any] = {
    "status": "skipped: offline",
    "checked": False,
    "reason": "vulnerability lookup (OSV / PyPI advisory database) needs the network; not run",
}
#: Folders never scanned (virtual environments, VCS data, caches, build output).
SKIP_DIRS = frozenset(
    {".git", ".hg", ".venv", "venv", "env", "node_modules", "__pycache__", ".tox", ".nox", ".mypy_cache",
     ".ruff_cache", ".pytest_cache", "build", "dist", "site-packages", ".pilotage"}
)  # fmt: skip
#: Largest file scanned for secrets, bytes (minified bundles and data dumps above it are skipped).
MAX_SCAN_BYTES = 1_000_000
#: Seconds bandit may run on one target.
BANDIT_TIMEOUT_S = 300.0
_HUNK = re.compile(r"^@@ -\d+(?:,\d+)? \+(\d+)(?:,(\d+))? @@")
_WEAK_CANDIDATES = {"md2", "md4", "md5", "sha1", "sha", "ripemd160", "sha224", "sha256", "sha384", "sha512"}


def source_files(root: Path) -> list[str]:
    """Return the files below ``root`` worth scanning (relative POSIX paths, sorted), skipping :data:`SKIP_DIRS`."""
    out = []
    for path in root.rglob("*"):
        rel = path.relative_to(root)
        if any(part in SKIP_DIRS or part.endswith(".egg-info") for part in rel.parts[:-1]):
            continue
        if path.is_file() and not path.is_symlink() and path.stat().st_size <= MAX_SCAN_BYTES:
            out.append(rel.as_posix())
    return sorted(out)


def python_files(files: Iterable[str]) -> list[str]:
    """Keep the ``.py`` files of ``files``."""
    return [f for f in files if f.endswith(".py")]


def added_lines(repo: Path, base: str, head: str) -> dict[str, set[int]]:
    """Return ``{path: {line numbers in head}}`` of the lines ``git diff base head`` adds.

    Raises:
        BackendError: git failed (not a repository, unknown commit).
    """
    try:
        proc = subprocess.run(
            ["git", "-C", str(repo), "diff", "-U0", "--no-color", "--no-ext-diff", base, head],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env=sandbox_env(),
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BackendError(f"git diff in {repo} failed: {exc}", hint="install git") from exc
    if proc.returncode != 0:
        raise BackendError(f"git diff {base[:12]} {head[:12]} in {repo} failed: {proc.stderr.strip()}")
    out: dict[str, set[int]] = {}
    current: str | None = None
    for line in proc.stdout.splitlines():
        if line.startswith("+++ "):
            target = line[4:].strip()
            current = target[2:] if target.startswith("b/") else None
            if current is not None:
                out.setdefault(current, set())
        elif current is not None and (match := _HUNK.match(line)):
            start, count = int(match.group(1)), int(match.group(2) or "1")
            out[current].update(range(start, start + count))
    return out


def scan_secrets(
    root: Path, files: Iterable[str], only_lines: Mapping[str, set[int]] | None = None
) -> list[dict[str, Any]]:
    """Run detect-secrets over ``files`` (relative to ``root``); return ``[{file, line, type}]`` sorted.

    Args:
        root: the folder the paths are relative to.
        files: the files to scan; binary and unreadable files yield nothing.
        only_lines: when given, keep a finding only if its line is in ``only_lines[file]`` (the diff's lines).
    """
    from detect_secrets.core.scan import scan_file
    from detect_secrets.settings import default_settings

    found: set[tuple[str, int, str]] = set()
    with default_settings():
        for rel in files:
            path = root / rel
            if not path.is_file() or (only_lines is not None and not only_lines.get(rel)):
                continue
            try:
                with path.open("rb") as handle:
                    if b"\0" in handle.read(4096):
                        continue  # binary
                secrets = list(scan_file(str(path)))
            except (OSError, UnicodeDecodeError, ValueError):
                continue
            for secret in secrets:
                line = int(secret.line_number or 0)
                if only_lines is None or line in only_lines.get(rel, set()):
                    found.add((rel, line, str(secret.type)))
    return [{"file": f, "line": n, "type": t} for f, n, t in sorted(found)]


def _module_distribution(module: str) -> str | None:
    top = module.split(".")[0]
    dists = metadata.packages_distributions().get(top) or []
    return dists[0].lower() if len(dists) == 1 else None


def _const_str(node: ast.AST | None) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _for_security(call: ast.Call) -> bool:
    """False only when the call passes ``usedforsecurity=False`` literally (Python 3.9+ hashlib)."""
    for kw in call.keywords:
        if kw.arg == "usedforsecurity" and isinstance(kw.value, ast.Constant) and kw.value.value is False:
            return False
    return True


def _call_facts(node: ast.Call, file: str) -> list[dict[str, Any]]:
    func = node.func
    name: str | None = None
    if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
        owner, attr = func.value.id, func.attr
        if owner == "hashlib" and attr.lower() in _WEAK_CANDIDATES:
            name = attr.lower()
        elif owner == "hashlib" and attr == "new":
            name = (_const_str(node.args[0]) if node.args else None) or ""
        elif owner == "hmac" and attr in {"new", "digest"}:
            digest = next((kw.value for kw in node.keywords if kw.arg == "digestmod"), None)
            if digest is None and len(node.args) >= 3:
                digest = node.args[2]
            name = _const_str(digest) or (
                digest.attr if isinstance(digest, ast.Attribute) and isinstance(digest.value, ast.Name) else None
            )
    if not name:
        return []
    return [
        {
            "file": file,
            "line": node.lineno,
            "kind": "hash",
            "name": name.lower().replace("-", ""),
            "for_security": _for_security(node),
            "distribution": None,
        }
    ]


def _import_facts(node: ast.Import | ast.ImportFrom, file: str) -> list[dict[str, Any]]:
    modules = [alias.name for alias in node.names] if isinstance(node, ast.Import) else [node.module or ""]
    if isinstance(node, ast.ImportFrom) and node.level:
        return []  # relative import: the project's own module
    out = []
    for module in modules:
        if module.split(".")[0] in {"Crypto", "md5", "sha"}:
            out.append(
                {
                    "file": file,
                    "line": node.lineno,
                    "kind": "import",
                    "name": module,
                    "for_security": True,
                    "distribution": _module_distribution(module),
                }
            )
    return out


def scan_crypto(root: Path, files: Iterable[str]) -> tuple[list[dict[str, Any]], list[str]]:
    """Find the cryptography a set of Python files uses.

    Args:
        root: the folder the paths are relative to.
        files: Python files (other files are ignored).

    Returns:
        (facts ``[{file, line, kind: "hash" | "import", name, for_security, distribution}]`` sorted by place,
        problems: ``["<file>: does not parse (line N)"]`` for files that are not valid Python 3).
    """
    facts: list[dict[str, Any]] = []
    problems: list[str] = []
    for rel in python_files(files):
        path = root / rel
        try:
            tree = ast.parse(path.read_bytes(), filename=rel)
        except (SyntaxError, ValueError) as exc:
            problems.append(f"{rel}: does not parse (line {getattr(exc, 'lineno', '?')})")
            continue
        except OSError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                facts.extend(_call_facts(node, rel))
            elif isinstance(node, ast.Import | ast.ImportFrom):
                facts.extend(_import_facts(node, rel))
    weak = [f for f in facts if f["kind"] == "import" or f["name"] not in {"sha224", "sha256", "sha384", "sha512"}]
    return sorted(weak, key=lambda f: (f["file"], f["line"], f["name"])), problems


def scan_bandit(root: Path, files: Iterable[str] | None = None, timeout_s: float = BANDIT_TIMEOUT_S) -> dict[str, Any]:
    """Run bandit on ``root`` (or on ``files`` below it) and summarise its JSON report.

    Returns:
        ``{"tool": "bandit", "version", "status": "completed" | "error", "reason", "target", "files": n,
        "issues": {"high", "medium", "low"}, "findings": [{test_id, file, line, severity, confidence, text}]}``
        (findings sorted by severity then place; ``file`` relative to ``root``). A bandit that cannot run gives
        ``status: "error"`` — a scan that did not complete, which the deploy policy refuses.
    """
    targets = [str(root / f) for f in python_files(files)] if files is not None else [str(root)]
    base: dict[str, Any] = {"tool": "bandit", "version": _version("bandit"), "target": str(root), "files": 0}
    empty = {"high": 0, "medium": 0, "low": 0}
    if not targets:
        return {**base, "status": "completed", "reason": "no Python files", "issues": empty, "findings": []}
    cmd = [sys.executable, "-m", "bandit", "-f", "json", "-q", "-r", *targets]
    try:
        proc = subprocess.run(  # the allow-list environment: the scanned code is untrusted (issue 15)
            cmd, capture_output=True, text=True, timeout=timeout_s, check=False, **launch_options(root)
        )
        report = json.loads(proc.stdout)
    except subprocess.TimeoutExpired:
        return {**base, "status": "error", "reason": f"bandit timed out after {timeout_s:g} s", "issues": empty}
    except (OSError, json.JSONDecodeError) as exc:
        return {**base, "status": "error", "reason": f"bandit did not run: {exc}", "issues": empty}
    rank = {"HIGH": 0, "MEDIUM": 1, "LOW": 2}
    findings = []
    for item in report.get("results") or []:
        path = Path(item.get("filename", ""))
        rel = path.relative_to(root).as_posix() if path.is_absolute() and path.is_relative_to(root) else str(path)
        findings.append(
            {
                "test_id": item.get("test_id", ""),
                "file": rel,
                "line": int(item.get("line_number") or 1),
                "severity": str(item.get("issue_severity", "")).upper(),
                "confidence": str(item.get("issue_confidence", "")).upper(),
                "text": item.get("issue_text", ""),
            }
        )
    findings.sort(key=lambda f: (rank.get(f["severity"], 3), f["file"], f["line"], f["test_id"]))
    issues = {level: sum(1 for f in findings if f["severity"] == level.upper()) for level in empty}
    totals = (report.get("metrics") or {}).get("_totals") or {}
    errors = report.get("errors") or []
    return {
        **base,
        "status": "completed",
        "reason": f"{len(errors)} file(s) bandit could not parse" if errors else "",
        "files": len([k for k in (report.get("metrics") or {}) if k != "_totals"]),
        "lines": int(totals.get("loc") or 0),
        "issues": issues,
        "findings": findings,
    }


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return ""
