"""Find the Python files and OpenAPI documents of a repository, name their modules, read them safely.

Discovery walks the folder following symbolic links to folders but never the same real folder twice (a symlink
loop is reported once and skipped); it ignores hidden folders, ``__pycache__``, ``node_modules`` and virtual
environments (a folder holding ``pyvenv.cfg``). A module's dotted name comes from the ``__init__.py`` chain above
the file, as Python would import it: ``src/pkg/sub/mod.py`` with ``pkg/__init__.py`` and ``pkg/sub/__init__.py`` is
``pkg.sub.mod``; a file in a folder without ``__init__.py`` is a top-level module (pytest's rootdir-less layout).
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pilotage.errors import InputError
from pilotage.spec.load import parse_document

__all__ = ["SKIP_DIRS", "Skipped", "discover", "find_specs", "load_spec", "module_name", "read_text"]

SKIP_DIRS = frozenset({"__pycache__", "node_modules", "site-packages", "dist-packages"})
_SPEC_SUFFIXES = (".yaml", ".yml", ".json")


@dataclass(frozen=True)
class Skipped:
    """A file or folder that could not be ingested: ``path`` and a one-line ``reason``."""

    path: str
    reason: str


def _skip_dir(name: str, path: str) -> bool:
    return name.startswith(".") or name in SKIP_DIRS or os.path.exists(os.path.join(path, "pyvenv.cfg"))


def discover(root: Path) -> tuple[list[Path], list[Path], list[Skipped]]:
    """Return ``(python files, candidate OpenAPI files, skipped)`` under ``root``, both lists sorted.

    ``root`` may be a single ``.py`` file. Symlinked folders are followed once per real folder; a folder reached
    again through a link is skipped with reason ``symlink loop``; a broken or self-referencing file link is skipped
    with the operating system's reason.
    """
    _package_parts.cache_clear()  # an __init__.py may have appeared since the last ingest in this process
    if root.is_file():
        return ([root] if root.suffix == ".py" else []), [], []
    py: list[Path] = []
    specs: list[Path] = []
    skipped: list[Skipped] = []
    seen: set[str] = set()
    for folder, dirs, files in os.walk(root, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen:
            skipped.append(Skipped(folder, f"symlink loop: {folder} is {real}, already read"))
            dirs[:] = []
            continue
        seen.add(real)
        dirs[:] = sorted(d for d in dirs if not _skip_dir(d, os.path.join(folder, d)))
        for name in sorted(files):
            path = Path(folder, name)
            if name.endswith(".py"):
                py.append(path)
            elif name.endswith(_SPEC_SUFFIXES):
                specs.append(path)
    return sorted(py), sorted(specs), skipped


@functools.lru_cache(maxsize=4096)
def _package_parts(folder: Path) -> tuple[str, ...]:
    """Dotted parts of the package ``folder`` is (empty when it has no ``__init__.py``), cached per folder."""
    if folder.parent == folder or not (folder / "__init__.py").exists():
        return ()
    return (*_package_parts(folder.parent), folder.name)


def module_name(path: Path) -> tuple[str, bool]:
    """Return ``(dotted module name, is_package)`` for ``path`` from the ``__init__.py`` chain above it."""
    is_package = path.name == "__init__.py"
    parts = _package_parts(path.parent) + (() if is_package else (path.stem,))
    return ".".join(parts) or path.stem, is_package


def read_text(path: Path) -> tuple[bytes, str]:
    """Return ``(raw bytes, text)`` of a source file.

    Raises:
        OSError: unreadable (including ``ELOOP`` for a symlink loop).
        UnicodeDecodeError: not UTF-8 (PEP 3120 default; ``# coding:`` cookies are honoured by ``bytes.decode``
            only for UTF-8 here, which is what the ingester supports).
    """
    data = path.read_bytes()
    return data, data.decode("utf-8-sig")


def load_spec(path: Path) -> dict[str, Any] | None:
    """Return the OpenAPI document in ``path``, or None when the file is not one (no top-level ``openapi`` key).

    Raises:
        OSError, UnicodeDecodeError: the file cannot be read.
        InputError: the file is not YAML/JSON or is over a document limit (:func:`pilotage.spec.load.parse_document`).
    """
    text = path.read_text(encoding="utf-8")
    if "openapi" not in text[:4096]:
        return None
    doc = parse_document(text, path=path, syntax="json" if path.suffix == ".json" else "yaml")  # bounded: issue #15
    if not isinstance(doc, dict) or "openapi" not in doc or not isinstance(doc.get("paths"), dict):
        return None
    return doc


def find_specs(candidates: list[Path], extra: list[Path]) -> tuple[list[tuple[Path, dict[str, Any]]], list[Skipped]]:
    """Load OpenAPI documents from discovered ``candidates`` (non-specs ignored) and ``extra`` (``--spec``: must be).

    Returns:
        ``([(path, document)], skipped)``; a ``--spec`` file that is not OpenAPI is skipped with its reason.
    """
    found: list[tuple[Path, dict[str, Any]]] = []
    skipped: list[Skipped] = []
    for path in [*extra, *(c for c in candidates if c not in extra)]:
        try:
            doc = load_spec(path)
        except (OSError, UnicodeDecodeError, InputError) as exc:
            if path in extra or path.suffix != ".json":
                skipped.append(Skipped(str(path), f"spec not readable: {' '.join(str(exc).split())[:200]}"))
            continue
        if doc is None:
            if path in extra:
                skipped.append(Skipped(str(path), "not an OpenAPI document (no openapi/paths keys)"))
            continue
        found.append((path, doc))
    return found, skipped
