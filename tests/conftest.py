"""Fixtures for every test."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _operator_config_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Give each test its own ``$XDG_CONFIG_HOME``: the operator's approval key is created there, not in ``~``.

    Returns:
        The folder (``<tmp>/pilotage/approval.key`` is the default key file while the test runs).
    """
    folder = tmp_path_factory.mktemp("xdg-config")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(folder))
    monkeypatch.delenv("PILOTAGE_APPROVAL_KEY_FILE", raising=False)
    return folder
