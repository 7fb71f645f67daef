"""OpenAPI specs: loading and validation, the change-request grammar, evolution and diff."""

from __future__ import annotations

from pilotage.spec.diff import SpecDiff, diff_specs
from pilotage.spec.evolve import Change, apply_change, evolve, operations, plan_change
from pilotage.spec.grammar import GRAMMAR, ParsedRequest, parse_request
from pilotage.spec.load import dump_spec, load_spec, spec_digest, spec_key, validate_spec

__all__ = [
    "GRAMMAR",
    "Change",
    "ParsedRequest",
    "SpecDiff",
    "apply_change",
    "diff_specs",
    "dump_spec",
    "evolve",
    "load_spec",
    "operations",
    "parse_request",
    "plan_change",
    "spec_digest",
    "spec_key",
    "validate_spec",
]
