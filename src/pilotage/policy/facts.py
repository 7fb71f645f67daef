"""Dependency facts for the policies: what a repository declares, what that pulls in, and every licence.

Offline by construction: declared requirements come from the repository's files, versions and the transitive
closure from the installed distributions' metadata (``Requires-Dist``, markers evaluated for this interpreter,
extras not followed), and licences from a CycloneDX SBOM of the environment made with ``cyclonedx-bom``
(``cyclonedx-py environment``, https://github.com/CycloneDX/cyclonedx-python), falling back to the installed
metadata (:mod:`pilotage.policy.licenses`) for a distribution the SBOM does not name.

Declared requirements are read from, in this order (all that exist): ``requirements*.txt`` at the top of the
repository, ``pyproject.toml`` ``[project] dependencies`` (PEP 621), ``setup.cfg`` ``[options] install_requires``,
and ``PKG-INFO`` ``Requires-Dist`` (the core metadata an sdist carries).
"""

from __future__ import annotations

import configparser
import email.parser
import functools
import json
import re
import subprocess
import sys
import tomllib
from collections.abc import Iterable, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any, cast

from packaging.markers import default_environment
from packaging.requirements import InvalidRequirement, Requirement

from pilotage.errors import BackendError, InputError
from pilotage.policy.licenses import CLASSIFIER_TO_SPDX, UNKNOWN, license_of
from pilotage.runtime.sandbox import sandbox_env

__all__ = [
    "component_licence",
    "declared_requirements",
    "dependency_closure",
    "dependency_facts",
    "normalise",
    "sbom_licences",
]

#: Seconds ``cyclonedx-py environment`` may take (measured: 0.3 s for 120 distributions without validation).
SBOM_TIMEOUT_S = 120.0
_NORMALISE = re.compile(r"[-_.]+")


def normalise(name: str) -> str:
    """Return the PEP 503 normalised form of a distribution name (``Py_Serializable`` → ``py-serializable``)."""
    return _NORMALISE.sub("-", name).lower()


def _requirement(text: str, source: str) -> Requirement | None:
    """Parse one requirement; None for a line that is not one (options, URLs, blank, comments)."""
    text = text.split(" #", 1)[0].strip()
    if not text or text.startswith(("#", "-", "git+", "http:", "https:", "file:", ".")):
        return None
    try:
        return Requirement(text)
    except InvalidRequirement as exc:
        raise InputError(f"{source}: not a requirement: {text!r} ({exc})", hint=f"fix the line in {source}") from exc


def _applies(req: Requirement) -> bool:
    """True when the requirement's marker holds for this interpreter without extras."""
    if req.marker is None:
        return True
    env = cast(dict[str, str], {**default_environment(), "extra": ""})
    return bool(req.marker.evaluate(env))


def declared_requirements(root: Path) -> list[dict[str, str]]:
    """Return the runtime requirements a repository declares: ``[{"name", "specifier", "source"}]``, unique by name.

    Args:
        root: the repository folder.

    Returns:
        Sorted by normalised name; ``source`` is the file (relative to ``root``) that declared it first.

    Raises:
        InputError: a requirements line, ``pyproject.toml`` or ``setup.cfg`` does not parse (names the file).
    """
    found: dict[str, dict[str, str]] = {}
    for text, source in _manifest_lines(root):
        req = _requirement(text, source)
        if req is not None and _applies(req):
            found.setdefault(normalise(req.name), {"name": req.name, "specifier": str(req.specifier), "source": source})
    return [found[key] for key in sorted(found)]


def _manifest_lines(root: Path) -> list[tuple[str, str]]:
    """Every requirement text the manifests of ``root`` declare, with its file: ``[(text, source)]``."""
    lines: list[tuple[str, str]] = []
    for path in sorted(root.glob("requirements*.txt")):
        if "dev" in path.name or "test" in path.name:
            continue  # development-only requirements are not shipped with the service
        lines.extend((line, path.name) for line in path.read_text(encoding="utf-8", errors="replace").splitlines())
    pyproject = root / "pyproject.toml"
    if pyproject.is_file():
        try:
            doc = tomllib.loads(pyproject.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise InputError(f"{pyproject}: not valid TOML: {exc}", hint="fix pyproject.toml", path=pyproject) from exc
        lines.extend((str(text), "pyproject.toml") for text in (doc.get("project") or {}).get("dependencies") or [])
    setup_cfg = root / "setup.cfg"
    if setup_cfg.is_file():
        parser = configparser.ConfigParser(interpolation=None)
        try:
            parser.read(setup_cfg, encoding="utf-8")
        except configparser.Error as exc:
            raise InputError(f"{setup_cfg}: does not parse: {exc}", hint="fix setup.cfg", path=setup_cfg) from exc
        lines.extend(
            (line, "setup.cfg") for line in parser.get("options", "install_requires", fallback="").splitlines()
        )
    pkg_info = root / "PKG-INFO"
    if pkg_info.is_file():
        message = email.parser.Parser().parsestr(pkg_info.read_text(encoding="utf-8", errors="replace"))
        lines.extend((str(text), "PKG-INFO") for text in message.get_all("Requires-Dist") or [])
    return lines


def _installed(name: str) -> metadata.Distribution | None:
    for candidate in (name, normalise(name), normalise(name).replace("-", "_")):
        try:
            return metadata.distribution(candidate)
        except metadata.PackageNotFoundError:
            continue
    return None


def dependency_closure(names: Iterable[str]) -> list[dict[str, Any]]:
    """Follow ``Requires-Dist`` of the installed distributions from ``names`` (breadth first).

    Args:
        names: the direct dependencies (distribution names).

    Returns:
        ``[{"name", "version", "direct": bool, "installed": bool, "required_by": [str]}]`` sorted by name; a
        distribution that is not installed has version ``""`` and is not followed further.
    """
    direct = {normalise(n) for n in names}
    out: dict[str, dict[str, Any]] = {}
    queue = [(n, "") for n in names]
    while queue:
        name, parent = queue.pop(0)
        key = normalise(name)
        if key in out:
            if parent and parent not in out[key]["required_by"]:
                out[key]["required_by"].append(parent)
            continue
        dist = _installed(name)
        out[key] = {
            "name": dist.metadata["Name"] if dist is not None else name,
            "version": dist.version if dist is not None else "",
            "direct": key in direct,
            "installed": dist is not None,
            "required_by": [parent] if parent else [],
        }
        if dist is None:
            continue
        for text in dist.requires or []:
            try:
                req = Requirement(text)
            except InvalidRequirement:
                continue  # a broken installed metadata line: not ours to fix
            if _applies(req):
                queue.append((req.name, out[key]["name"]))
    return [out[key] for key in sorted(out)]


def component_licence(component: Mapping[str, Any]) -> str:
    """Return the licence of one CycloneDX component (1.4-1.6 JSON), as an SPDX id or expression.

    An ``expression`` entry wins; otherwise every ``license.id`` and ``license.name`` (trove classifiers mapped
    with :data:`~pilotage.policy.licenses.CLASSIFIER_TO_SPDX`) is collected, duplicates dropped, and joined
    with ``AND`` (CycloneDX lists without an expression do not say "or": every listed licence must be allowed,
    the fail-closed reading). ``UNKNOWN`` when the component names none.
    """
    found: list[str] = []
    for entry in component.get("licenses") or []:
        if not isinstance(entry, dict):
            continue
        if isinstance(entry.get("expression"), str) and entry["expression"].strip():
            return str(entry["expression"]).strip()
        lic = entry.get("license") or {}
        value = str(lic.get("id") or lic.get("name") or "").strip()
        if value.startswith("License ::"):
            last = value.split("::")[-1].strip()
            if last in {"OSI Approved", "DFSG approved"}:
                continue
            value = CLASSIFIER_TO_SPDX.get(last, last)
        if value and value not in found:
            found.append(value)
    return " AND ".join(found) if found else UNKNOWN


@functools.lru_cache(maxsize=4)
def sbom_licences(python: str = sys.executable, timeout_s: float = SBOM_TIMEOUT_S) -> dict[str, str]:
    """Make a CycloneDX SBOM of the environment of ``python`` and return ``{normalised name: licence}``.

    Runs ``python -m cyclonedx_py environment PYTHON --no-validate --output-reproducible`` (offline; cached per
    interpreter for the life of the process: installed packages do not change during a run).

    Raises:
        BackendError: cyclonedx-py is missing, fails, times out or prints something that is not an SBOM.
    """
    cmd = [sys.executable, "-m", "cyclonedx_py", "environment", python, "--no-validate", "--output-reproducible"]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False, env=sandbox_env())
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BackendError(f"SBOM (cyclonedx-py) failed: {exc}", hint="pip install cyclonedx-bom") from exc
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise BackendError(f"SBOM (cyclonedx-py) exited {proc.returncode}: {last}", hint="pip install cyclonedx-bom")
    try:
        doc = json.loads(proc.stdout)
    except json.JSONDecodeError as exc:
        raise BackendError(f"SBOM (cyclonedx-py) printed no JSON: {exc}", hint="pip install cyclonedx-bom") from exc
    return {
        normalise(str(c.get("name"))): component_licence(c)
        for c in doc.get("components") or []
        if isinstance(c, dict) and c.get("name")
    }


def dependency_facts(direct: Iterable[str], *, use_sbom: bool = True) -> tuple[list[dict[str, Any]], str]:
    """Return every dependency of ``direct`` (closure) with its licence, and where the licences came from.

    Args:
        direct: the distribution names the code depends on directly.
        use_sbom: take licences from the CycloneDX SBOM (default); False reads installed metadata only.

    Returns:
        ``([{"name", "version", "license", "license_source": "sbom" | "metadata", "direct", "installed",
        "required_by"}], source)`` where ``source`` is ``"cyclonedx-py"`` or ``"metadata (SBOM failed: ...)"``.
    """
    closure = dependency_closure(direct)
    sbom: dict[str, str] = {}
    source = "metadata"
    if use_sbom:
        try:
            sbom = sbom_licences()
            source = "cyclonedx-py"
        except BackendError as exc:
            source = f"metadata (SBOM failed: {exc.message})"
    out = []
    for dep in closure:
        licence = sbom.get(normalise(dep["name"]), "")
        origin = "sbom"
        if not licence or licence == UNKNOWN:
            licence, origin = license_of(dep["name"]), "metadata"
        out.append({**dep, "license": licence, "license_source": origin})
    return out, source
