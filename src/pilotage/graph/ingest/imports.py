"""IMPORTS edges: grimp's import graph for packages, the file's own ``ast`` imports otherwise.

grimp (the import-graph library behind import-linter) builds the graph of every clean top-level package in one call:
it is the reference for what a module imports, including imports resolved through re-exports and
``TYPE_CHECKING`` blocks. It parses the whole package and fails on the first file it cannot read, and it only sees
packages (folders with ``__init__.py``) it can find on ``sys.path`` — so a package with a skipped file, a package
shadowed by another of the same name, and loose modules (test files outside packages) use the imports read by
:mod:`pilotage.graph.ingest.parse` instead. Each edge says which (``source: grimp`` or ``source: ast``).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Container, Iterable
from pathlib import Path

__all__ = ["grimp_imports", "resolve_module"]


def resolve_module(target: str, known: Container[str]) -> str | None:
    """Return the longest prefix of dotted ``target`` that is a known module, or None (external import)."""
    parts = target.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in known:
            return candidate
    return None


def _findable(package: str, folder: Path) -> str | None:
    """Return None when ``import package`` would load ``folder``; else why not."""
    importlib.invalidate_caches()
    loaded = sys.modules.get(package)
    try:
        spec = importlib.util.find_spec(package) if loaded is None else loaded.__spec__
    except (ImportError, ValueError) as exc:
        return f"not importable: {exc}"
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not any(os.path.realpath(loc) == os.path.realpath(folder) for loc in locations):
        where = locations[0] if locations else "nowhere"
        return f"the name {package!r} resolves to {where}, not {folder}"
    return None


def grimp_imports(packages: dict[str, Path], wanted: Iterable[str]) -> tuple[dict[str, set[str]], dict[str, str]]:
    """Ask grimp what each module in ``wanted`` imports, for the top-level ``packages``.

    Args:
        packages: top-level package name → its folder (the one holding ``__init__.py``).
        wanted: module names whose direct imports are needed (modules outside ``packages`` are ignored).

    Returns:
        ``(imports, fallbacks)``: module → internal modules it directly imports, for modules of the packages grimp
        built; and package → the reason grimp could not be used for it (its modules need the ``ast`` fallback).
    """
    import grimp  # a dependency of the [dev] install; imported here so the CLI starts fast

    fallbacks: dict[str, str] = {}
    usable: dict[str, Path] = {}
    added: list[str] = []
    for folder in sorted(packages.values()):
        parent = str(folder.parent)
        if parent not in sys.path:
            sys.path.insert(0, parent)
            added.append(parent)
    try:
        for name, folder in sorted(packages.items()):
            why = _findable(name, folder)
            if why is None:
                usable[name] = folder
            else:
                fallbacks[name] = why
        if not usable:
            return {}, fallbacks
        try:
            graph = grimp.build_graph(*sorted(usable), cache_dir=None)
        except Exception as exc:  # noqa: BLE001 - grimp raises several unrelated types (UnicodeError, ParseError …)
            reason = f"grimp failed: {type(exc).__name__}: {' '.join(str(exc).split())[:200]}"
            return {}, {**fallbacks, **dict.fromkeys(usable, reason)}
    finally:
        for parent in added:
            sys.path.remove(parent)
    out: dict[str, set[str]] = {}
    for module in wanted:
        if module.split(".")[0] in usable and module in graph.modules:
            out[module] = set(graph.find_modules_directly_imported_by(module))
    return out, fallbacks
