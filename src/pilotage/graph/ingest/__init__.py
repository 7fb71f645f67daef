"""Ingest a Python repository into the knowledge graph (``pilotage graph ingest``); see :mod:`.engine`."""

from __future__ import annotations

from pilotage.graph.ingest.engine import IngestReport, ingest
from pilotage.graph.ingest.scan import Skipped

__all__ = ["IngestReport", "Skipped", "ingest"]
