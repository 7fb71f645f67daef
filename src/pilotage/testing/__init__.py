"""Test runners driven by the testing agent: schemathesis property tests from the spec, the service's own pytest.

Both run as bounded subprocesses (:mod:`pilotage.testing.process` says why) and return plain dataclasses whose
``to_dict()`` is the ``tests.completed`` event shape (``docs/events-contract.md``).
"""

from __future__ import annotations

from pilotage.testing.curl import curl_command
from pilotage.testing.process import ProcessOutcome, run_process
from pilotage.testing.pytest_runner import UnitResult, parse_junit, run_pytest
from pilotage.testing.schemathesis_results import OperationResult, SchemathesisResult
from pilotage.testing.schemathesis_runner import load_operations, run_schemathesis

__all__ = [
    "OperationResult",
    "ProcessOutcome",
    "SchemathesisResult",
    "UnitResult",
    "curl_command",
    "load_operations",
    "parse_junit",
    "run_process",
    "run_pytest",
    "run_schemathesis",
]
