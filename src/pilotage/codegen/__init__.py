"""OpenAPI → runnable FastAPI service (pydantic models, SQLite persistence, tests, CI), and git plumbing."""

from __future__ import annotations

from pilotage.codegen.generator import SERVICE_FILES, GeneratedService, generate_service, read_requirements

__all__ = ["SERVICE_FILES", "GeneratedService", "generate_service", "read_requirements"]
