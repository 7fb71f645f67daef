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


@pytest.fixture(autouse=True)
def _no_inherited_test_principal(monkeypatch: pytest.MonkeyPatch) -> None:
    """Start each test without ``PILOTAGE_TEST_PRINCIPAL`` and restore it after.

    ``ensure_principal`` (a run in this process) sets it in ``os.environ``; without this fixture a later test in the
    same worker would inherit it (CI: the locust test that expects a secured operation left out saw it load-tested).
    """
    monkeypatch.delenv("PILOTAGE_TEST_PRINCIPAL", raising=False)


#: Test modules that bind fixed ports (``fleet_port_base``, stable addresses from 18100 up, the API's 8700): under
#: ``pytest -n 2 --dist loadgroup`` (scripts/test) they run on one worker, one after another.
FIXED_PORT_MODULES = ("tests/unit/test_fleet_", "tests/integration/test_web_api", "tests/integration/test_dashboard",
                      "tests/integration/test_fleet_chain")  # fmt: skip


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Put the tests of :data:`FIXED_PORT_MODULES` in one xdist group (a no-op without pytest-xdist)."""
    for item in items:
        where = item.nodeid.split("::", 1)[0]
        if where.startswith(FIXED_PORT_MODULES):
            item.add_marker(pytest.mark.xdist_group("fixed-ports"))
