"""Test setup of the inventory service: a private SQLite file per test session, ``app`` importable."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

os.environ["PILOTAGE_DB_PATH"] = str(Path(tempfile.mkdtemp(prefix="inventory-test-")) / "test.db")
os.environ.pop("PILOTAGE_FAULT_ERROR_RATE", None)
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
