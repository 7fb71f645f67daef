"""Licences from real installed package metadata (offline)."""

from __future__ import annotations

from email.message import Message

from pilotage.policy.licenses import UNKNOWN, enrich, license_from_metadata, license_of


def test_licences_of_installed_packages() -> None:
    assert license_of("httpx") == "BSD-3-Clause"  # License field
    assert license_of("pydantic") == "MIT"  # License-Expression
    assert license_of("Jinja2") == "BSD"  # only a Trove classifier ("BSD License")
    assert license_of("jinja2") == "BSD"
    assert license_of("markdown_it_py") == "MIT"  # name normalised to markdown-it-py
    assert "BSD" in license_of("httpx").upper()


def test_not_installed_is_unknown() -> None:
    assert license_of("pilotage-no-such-distribution") == UNKNOWN == "UNKNOWN"


def _meta(**fields: str | list[str]) -> Message:
    msg = Message()
    for key, value in fields.items():
        for item in value if isinstance(value, list) else [value]:
            msg[key.replace("_", "-")] = item
    return msg


def test_metadata_precedence_and_classifier_mapping() -> None:
    assert license_from_metadata(_meta(License_Expression="Apache-2.0", License="MIT")) == "Apache-2.0"
    assert license_from_metadata(_meta(License="MIT License")) == "MIT License"
    assert license_from_metadata(_meta(Classifier="License :: OSI Approved :: Apache Software License")) == (
        "Apache-2.0"
    )
    both = _meta(
        Classifier=[
            "License :: DFSG approved",
            "License :: OSI Approved :: MIT License",
            "License :: OSI Approved :: GNU General Public License v3 (GPLv3)",
        ]
    )
    assert license_from_metadata(both) == "MIT OR GPL-3.0-only"
    assert license_from_metadata(_meta(License="UNKNOWN")) == UNKNOWN
    assert license_from_metadata(_meta()) == UNKNOWN


def test_full_licence_text_in_license_field() -> None:
    mit_text = "Copyright (c) 2024 Someone\n\nPermission is hereby granted, free of charge, to any person ..."
    assert license_from_metadata(_meta(License=mit_text)) == "MIT"
    assert license_from_metadata(_meta(License="Some custom terms\nline two\n")) == UNKNOWN
    classified = _meta(License="long\ntext", Classifier="License :: OSI Approved :: ISC License (ISCL)")
    assert license_from_metadata(classified) == "ISC"


def test_enrich_adds_licences_without_mutating() -> None:
    deps = [
        {"name": "httpx", "version": "0.28"},
        {"name": "vendored", "version": "1", "license": "MIT"},
        {"name": "ghost-pkg-zz", "version": "9"},
    ]
    out = enrich(deps)
    assert out == [
        {"name": "httpx", "version": "0.28", "license": "BSD-3-Clause"},
        {"name": "vendored", "version": "1", "license": "MIT"},
        {"name": "ghost-pkg-zz", "version": "9", "license": "UNKNOWN"},
    ]
    assert "license" not in deps[0]
