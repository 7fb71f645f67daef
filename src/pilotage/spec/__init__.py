"""OpenAPI specs: loading and validation, the change-request grammar, evolution and diff."""

from __future__ import annotations

from pilotage.spec.diff import SpecDiff, diff_specs
from pilotage.spec.evolve import evolve, operations
from pilotage.spec.grammar import GRAMMAR, ParsedRequest, parse_request
from pilotage.spec.load import dump_spec, load_spec, spec_digest, spec_key, validate_spec

__all__ = [
    "GRAMMAR",
    "ParsedRequest",
    "SpecDiff",
    "diff_specs",
    "dump_spec",
    "evolve",
    "load_spec",
    "operations",
    "parse_request",
    "spec_digest",
    "spec_key",
    "validate_spec",
]
