"""Each test gets an empty payments database in its own SQLite file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient


@pytest.fixture
def client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    monkeypatch.setenv("PAYMENTS_DB_PATH", str(tmp_path / "payments.db"))
    from app.main import app

    with TestClient(app) as test_client:
        yield test_client
