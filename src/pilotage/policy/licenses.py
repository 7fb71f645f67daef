"""Licences of Python distributions, read offline from their installed metadata.

The sources, in order (Python core metadata specification, https://packaging.python.org/en/latest/specifications/
core-metadata/):

1. ``License-Expression`` (metadata 2.4, PEP 639): an SPDX expression such as ``MIT`` or ``Apache-2.0 OR MIT``;
2. ``License``: free text; used when it is one short line (``BSD-3-Clause``, ``MIT License``); a long field is
   usually the whole licence text and is only scanned for the well-known opening sentences below;
3. Trove classifiers ``License :: OSI Approved :: MIT License`` (https://pypi.org/classifiers/), mapped to SPDX
   ids (https://spdx.org/licenses/) by :data:`CLASSIFIER_TO_SPDX`; several are joined with ``OR`` as a
   package declaring several licences lets its users pick one (the SPDX meaning of ``OR``).

``UNKNOWN`` is returned when none of them names a licence, and for a distribution that is not installed: a
policy treats it as a reason to deny, never as permission. Nothing is fetched from the network.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from importlib import metadata
from typing import Any

__all__ = ["CLASSIFIER_TO_SPDX", "UNKNOWN", "enrich", "license_from_metadata", "license_of"]

#: What :func:`license_of` returns when the metadata names no licence (the value setuptools wrote for years).
UNKNOWN = "UNKNOWN"

#: Trove licence classifier (last segment) → SPDX identifier. Classifiers that do not pin a version
#: (``BSD License``, ``Apache Software License``) map to the family name the allow-list uses.
CLASSIFIER_TO_SPDX: dict[str, str] = {
    "MIT License": "MIT",
    "MIT No Attribution License (MIT-0)": "MIT-0",
    "BSD License": "BSD",
    "Apache Software License": "Apache-2.0",
    "ISC License (ISCL)": "ISC",
    "Python Software Foundation License": "PSF-2.0",
    "Mozilla Public License 2.0 (MPL 2.0)": "MPL-2.0",
    "Mozilla Public License 1.1 (MPL 1.1)": "MPL-1.1",
    "The Unlicense (Unlicense)": "Unlicense",
    "zlib/libpng License": "Zlib",
    "Zope Public License": "ZPL-2.1",
    "Historical Permission Notice and Disclaimer (HPND)": "HPND",
    "Eclipse Public License 2.0 (EPL-2.0)": "EPL-2.0",
    "GNU General Public License v2 (GPLv2)": "GPL-2.0-only",
    "GNU General Public License v2 or later (GPLv2+)": "GPL-2.0-or-later",
    "GNU General Public License v3 (GPLv3)": "GPL-3.0-only",
    "GNU General Public License v3 or later (GPLv3+)": "GPL-3.0-or-later",
    "GNU General Public License (GPL)": "GPL",
    "GNU Lesser General Public License v2 (LGPLv2)": "LGPL-2.0-only",
    "GNU Lesser General Public License v2 or later (LGPLv2+)": "LGPL-2.0-or-later",
    "GNU Lesser General Public License v3 (LGPLv3)": "LGPL-3.0-only",
    "GNU Lesser General Public License v3 or later (LGPLv3+)": "LGPL-3.0-or-later",
    "GNU Library or Lesser General Public License (LGPL)": "LGPL",
    "GNU Affero General Public License v3": "AGPL-3.0-only",
    "GNU Affero General Public License v3 or later (AGPLv3+)": "AGPL-3.0-or-later",
}

#: Opening words of common licence texts (as pasted whole into the ``License`` field) → SPDX id.
_TEXT_MARKERS: tuple[tuple[str, str], ...] = (
    ("permission is hereby granted, free of charge", "MIT"),
    ("apache license", "Apache-2.0"),
    ("redistribution and use in source and binary forms", "BSD"),
    ("mozilla public license version 2.0", "MPL-2.0"),
    ("permission to use, copy, modify, and/or distribute this software for any purpose", "ISC"),
    ("gnu general public license", "GPL"),
    ("gnu lesser general public license", "LGPL"),
)

#: Longest ``License`` value still taken as a licence name rather than a licence text (characters).
_MAX_NAME_LEN = 100
_NORMALISE_NAME = re.compile(r"[-_.]+")


def _clean(value: str | None) -> str:
    value = (value or "").strip()
    return "" if value.upper() in {"", UNKNOWN, "NONE", "N/A"} else value


def _from_classifiers(classifiers: Iterable[str]) -> str:
    found: list[str] = []
    for classifier in classifiers:
        parts = [part.strip() for part in classifier.split("::")]
        if len(parts) < 2 or parts[0] != "License":
            continue
        name = parts[-1]
        if name in {"OSI Approved", "DFSG approved", "Free For Educational Use", "Free for non-commercial use"}:
            continue
        spdx = CLASSIFIER_TO_SPDX.get(name, name)
        if spdx not in found:
            found.append(spdx)
    return " OR ".join(found)


def _from_text(text: str) -> str:
    head = " ".join(text[:600].lower().split())
    for marker, spdx in _TEXT_MARKERS:
        if marker in head:
            return spdx
    return ""


def license_from_metadata(meta: Mapping[str, Any] | Any) -> str:
    """Return the licence named by one distribution's metadata (an ``email.message.Message``-like mapping).

    Args:
        meta: ``importlib.metadata.distribution(name).metadata`` or a dict with the same keys
            (``License-Expression``, ``License``, ``Classifier`` as a list).

    Returns:
        An SPDX id or expression, the short ``License`` text, or ``"UNKNOWN"``.
    """
    expression = _clean(meta.get("License-Expression"))
    if expression:
        return expression
    text = _clean(meta.get("License"))
    if text and "\n" not in text and len(text) <= _MAX_NAME_LEN:
        return text
    get_all = getattr(meta, "get_all", None)
    classifiers = get_all("Classifier") if callable(get_all) else meta.get("Classifier")
    from_classifiers = _from_classifiers(classifiers or [])
    if from_classifiers:
        return from_classifiers
    return (_from_text(text) if text else "") or UNKNOWN


def license_of(distribution: str) -> str:
    """Return the licence of the installed distribution ``distribution`` (``httpx`` → ``BSD-3-Clause``).

    Args:
        distribution: the distribution name as on PyPI; case, ``-``, ``_`` and ``.`` are equivalent (PEP 503).

    Returns:
        An SPDX id or expression, the short ``License`` text, or ``"UNKNOWN"`` when the distribution is not
        installed or its metadata names no licence. Reads local metadata only (no network).
    """
    try:
        meta = metadata.metadata(distribution)
    except metadata.PackageNotFoundError:
        normalised = _NORMALISE_NAME.sub("-", distribution).lower()
        if normalised == distribution:
            return UNKNOWN
        try:
            meta = metadata.metadata(normalised)
        except metadata.PackageNotFoundError:
            return UNKNOWN
    return license_from_metadata(meta)


def enrich(dependencies: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Return copies of ``[{name, version, ...}]`` with a ``license`` key from :func:`license_of`.

    A dependency that already carries a non-empty ``license`` keeps it (the producer knew better); the input
    is not modified.

    Args:
        dependencies: dicts with at least ``name`` (str); ``version`` is passed through.

    Returns:
        New dicts, same order, each with ``license`` (str).
    """
    out: list[dict[str, Any]] = []
    for dep in dependencies:
        item = dict(dep)
        if not _clean(str(item.get("license") or "")):
            item["license"] = license_of(str(item.get("name", ""))) if item.get("name") else UNKNOWN
        out.append(item)
    return out
