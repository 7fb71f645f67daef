"""Spec-driven API tests written into the service's repository (issue #5, part 1).

Two pytest files go to ``<service>/tests/`` so the tests stay with the code and run in the repository's own CI:

* ``test_pilotage_api_schemathesis.py`` — schemathesis v4's Python API: ``schemathesis.openapi.from_path`` on the
  spec, ``@schema.parametrize()`` with **all** checks (``case.call_and_validate()``) and the stateful workflow
  ``schema.as_state_machine()`` (transitions from the spec's OpenAPI links plus the links schemathesis infers).
* ``test_pilotage_api_crud.py`` — inferred create → read → list → update → read → delete → read chains for every
  CRUD resource (:func:`infer_crud_chains`). Bodies are drawn from the spec (schemathesis'
  ``operation.as_strategy()``, positive data); the oracle is the resource's life cycle, which schemathesis' checks
  do not know: what was created can be read back with the same fields, appears in the list, an update is visible,
  a deleted resource answers 404. Every assertion message ends with the curl lines that reproduce the chain.

Both files target ``PILOTAGE_BASE_URL`` when set (a running instance), else the app in-process (``app.main:app``
over ASGI, the generated-service convention), with the path of the document's ``servers[0]`` after it
(``API_URL``). Authentication: every request carries the credentials its operation's security asks for, made from
the run's test principal ``PILOTAGE_TEST_PRINCIPAL`` (:mod:`pilotage.testing.credentials`, copied into both
files), plus ``PILOTAGE_TEST_HEADERS`` (a JSON object of headers, set from
``settings.testing_auth_headers``), so no secret is written into the repository.

The CRUD resources and their chains are inferred by :mod:`pilotage.testing.crud_chains`; this module renders both
files, quoting every document-derived value through :mod:`pilotage.codegen.quoting` and checking the result.
"""

from __future__ import annotations

import ast
import functools
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

from pilotage.codegen.quoting import (
    check_python,
    identifiers_of,
    py_docstring,
    py_literal,
    require_json_data,
)
from pilotage.errors import InputError
from pilotage.spec.load import parse_document, to_json_data
from pilotage.spec.openapi import base_path
from pilotage.spec.refs import bundle_refs
from pilotage.testing.crud_chains import CrudChain, infer_crud_chains

__all__ = [
    "CRUD_FILE",
    "SCHEMATHESIS_FILE",
    "CrudChain",
    "infer_crud_chains",
    "render_crud_tests",
    "render_schemathesis_tests",
    "write_spec_tests",
]

#: File name of the schemathesis (Python API) tests in ``<service>/tests``.
SCHEMATHESIS_FILE = "test_pilotage_api_schemathesis.py"
#: File name of the inferred CRUD chain tests in ``<service>/tests``.
CRUD_FILE = "test_pilotage_api_crud.py"
_HEADER = '''"""{title}

Written by Pilotage's testing agent from the spec at SPEC (regenerate rather than edit). Target: ``PILOTAGE_BASE_URL``
when set, else ``app.main:app`` in-process; extra request headers (authentication) from ``PILOTAGE_TEST_HEADERS``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

# starlette's test client (the in-process target) warns about httpx; that is not the service's problem
pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")

SPEC = Path(__file__).resolve().parent / {spec_rel}
BASE_URL = os.environ.get("PILOTAGE_BASE_URL") or None
HEADERS = json.loads(os.environ.get("PILOTAGE_TEST_HEADERS") or "{{}}")
PRINCIPAL = os.environ.get("PILOTAGE_TEST_PRINCIPAL") or ""
MAX_EXAMPLES = int(os.environ.get("PILOTAGE_MAX_EXAMPLES") or {max_examples})
TIMEOUT_S = float(os.environ.get("PILOTAGE_REQUEST_TIMEOUT_S") or {timeout_s})
SETTINGS = settings(
    max_examples=MAX_EXAMPLES, deadline=None, database=None, derandomize={derandomize},
    suppress_health_check=list(HealthCheck),
)

schema = schemathesis.openapi.from_path(str(SPEC))
if BASE_URL is None:
    from app.main import app

    schema.app = app
    BASE_URL = "http://testserver"  # the app's own root (``/metrics``)
# the API under the path of the document's servers[0] (variables at their defaults), as the service serves it
API_URL = BASE_URL.rstrip("/") + {base_path}
'''

_SCHEMATHESIS_BODY = '''

@schema.parametrize()
@SETTINGS
def test_api(case: schemathesis.Case) -> None:
    """Every operation with every schemathesis check (server errors, conformance, negative data ...)."""
    authenticate(case, PRINCIPAL)
    case.call_and_validate(base_url=API_URL, headers=HEADERS, timeout=TIMEOUT_S)


class Workflow(schema.as_state_machine()):  # type: ignore[misc]
    """Stateful sequences along the spec's OpenAPI links and the links schemathesis infers."""

    def get_call_kwargs(self, case: schemathesis.Case) -> dict[str, object]:
        authenticate(case, PRINCIPAL)
        return {"base_url": API_URL, "headers": HEADERS, "timeout": TIMEOUT_S}


TestWorkflow = Workflow.TestCase
TestWorkflow.settings = settings(SETTINGS, stateful_step_count=6)
'''


#: Names the per-chain test functions use besides the static parts' (see :func:`_vocabulary`).
_CHAIN_NAMES = frozenset(
    "settings SETTINGS phases Phase explicit generate given data st DataObject max_examples run_chain run_updates "
    "run_key_reuse run_unknown_keys run_paging run_metrics".split()
)
_HYPOTHESIS_IMPORTS = "from hypothesis import Phase, given\nfrom hypothesis import strategies as st\n"


def _header(
    title: str, spec_rel: str, max_examples: int, timeout_s: float, derandomize: bool, base_path: str = ""
) -> str:
    """The module docstring and setup; spec text and settings only as :func:`py_literal` literals.

    ``base_path``: the path of the document's ``servers[0].url`` (:func:`pilotage.spec.openapi.base_path`).
    """
    return _HEADER.format(
        title=title, spec_rel=py_literal(spec_rel), max_examples=py_literal(max_examples),
        timeout_s=py_literal(timeout_s), derandomize=py_literal(derandomize), base_path=py_literal(base_path),
    )  # fmt: skip


@functools.cache
def _vocabulary() -> frozenset[str]:
    """Every identifier the static parts of the two generated files use (Pilotage's own text, not the spec's)."""
    from pilotage.testing import credentials, crud_oracles, crud_support, metrics_support

    static = _header("t", "s", 1, 1.0, True) + _SCHEMATHESIS_BODY + _HYPOTHESIS_IMPORTS
    static += _copied(credentials) + _copied(crud_support) + _copied(crud_oracles) + _copied(metrics_support)
    return frozenset(name for name, _ in identifiers_of(ast.parse(static))) | _CHAIN_NAMES


def render_schemathesis_tests(
    spec_rel: str, *, max_examples: int, timeout_s: float, derandomize: bool = True, base_path: str = ""
) -> str:
    """Return the source of ``test_pilotage_api_schemathesis.py`` (spec path relative to the tests folder).

    ``base_path``: where the service serves the API (the document's ``servers[0]`` path, ``""`` for the root).
    """
    title = "Property-based API tests from the OpenAPI spec (schemathesis v4 Python API, all checks, stateful)."
    source = _header(title, spec_rel, max_examples, timeout_s, derandomize, base_path) + _auth_support()
    source += _SCHEMATHESIS_BODY
    check_python(source, file=f"tests/{SCHEMATHESIS_FILE}", allowed=_vocabulary())
    return source


def _copied(module: Any) -> str:
    """The part of a support module below its ``# --- copied below ---`` marker (what the generated file holds)."""
    return str(Path(module.__file__).read_text(encoding="utf-8").split("\n# --- copied below ---\n", 1)[1])


def _auth_support() -> str:
    """:mod:`pilotage.testing.credentials`' copied part: the credentials of each request (issue 18)."""
    from pilotage.testing.credentials import copied_source

    return "\n" + copied_source()


def render_crud_tests(
    spec_rel: str,
    chains: list[CrudChain],
    *,
    max_examples: int,
    timeout_s: float,
    derandomize: bool = True,
    metrics_path: str | None = None,
    base_path: str = "",
) -> str:
    """Return the source of ``test_pilotage_api_crud.py``: one hypothesis test per chain (``crud_oracles``).

    With ``metrics_path`` also ``test_metrics_contract``, which sends ``GET metrics_path``
    (:func:`~pilotage.testing.metrics_support.plain_get`) under ``base_path`` (the document's ``servers[0]`` path,
    where the service serves the API; ``/metrics`` stays at the root). The chain logic is
    :mod:`pilotage.testing.crud_support`'s and :mod:`~pilotage.testing.crud_oracles`' source, and the metrics check
    :mod:`~pilotage.testing.metrics_support`'s, copied into the file, so the repository's tests do not import
    Pilotage. Spec text is written only as :func:`py_literal` literals; chain names are :func:`python_name`
    identifiers; the result passes :func:`check_python`.

    Raises:
        InputError: the source fails the quoting check (a Pilotage bug: names the identifier).
        ValueError: a chain holds a value that is not JSON data (:func:`write_spec_tests` refuses it first).
    """
    from pilotage.testing import crud_oracles, crud_support, metrics_support

    support = _copied(crud_support) + _copied(crud_oracles)
    title = "Create → read → update → delete chains inferred from the OpenAPI spec (resource life-cycle oracle)."
    parts = [_header(title, spec_rel, max_examples, timeout_s, derandomize, base_path), _HYPOTHESIS_IMPORTS]
    parts += [_auth_support(), support]
    parts.append(f"\nCHAINS = {py_literal({c.name: asdict(c) for c in chains}, width=110, sort_dicts=True)}\n")
    tests: set[str] = set()
    for chain in chains:
        name = py_literal(chain.name)
        doc = f"{chain.collection}: create, read back, list, search, delete, then 404."
        parts.append(_chain_test("crud", chain.name, doc, f"run_chain(data, {name})", tests))
        if chain.updates:
            doc = f"{chain.item}: every update is visible on read and in the searches."
            parts.append(_chain_test("update", chain.name, doc, f"run_updates(data, {name})", tests))
        if chain.delete:
            doc = f"{chain.collection}: a key the service assigns is not handed out again after a delete."
            parts.append(_chain_test("key_reuse", chain.name, doc, f"run_key_reuse(data, {name})", tests))
        if chain.probes:
            doc = f"{chain.item}: keys at integer boundaries get no server error."
            parts.append(_chain_test("unknown_keys", chain.name, doc, f"run_unknown_keys({name})", tests))
        if chain.page and not chain.parent:
            doc = f"{chain.collection}: {chain.page['default'] + 1} resources, then the page sizes."
            parts.append(_chain_test("paging", chain.name, doc, f"run_paging(data, {name})", tests))
    if metrics_path is not None:  # Pilotage's metrics contract, checked with three GET of that path
        parts.append(_copied(metrics_support))
        doc = "GET /metrics counts the requests answered, per status (what the SLO watcher reads)."
        parts.append(_chain_test("metrics_contract", "", doc, f"run_metrics({py_literal(metrics_path)})", tests))
    source = "".join(parts)
    check_python(source, file=f"tests/{CRUD_FILE}", allowed=_vocabulary() | tests)
    return source


#: Decorators of the chain tests by kind ("" for a plain test).
_DECORATORS = {
    "crud": "@settings(SETTINGS, phases=[Phase.explicit, Phase.generate])  # no shrinking: bounded time\n",
    "update": "@settings(SETTINGS, phases=[Phase.explicit, Phase.generate])\n",
    "key_reuse": "@settings(SETTINGS, phases=[Phase.explicit, Phase.generate])\n",
    "paging": "@settings(SETTINGS, max_examples=1, phases=[Phase.generate])\n",
}


def _chain_test(kind: str, chain: str, doc: str, call: str, tests: set[str]) -> str:
    """One test function ``test_<kind>_<chain>`` (``chain`` a :func:`python_name`); adds its name to ``tests``."""
    function = f"test_{kind}_{chain}" if chain else f"test_{kind}"
    tests.add(function)
    decorator = _DECORATORS.get(kind, "")
    if decorator:
        head = f"{decorator}@given(data=st.data())\ndef {function}(data: st.DataObject) -> None:\n"
    else:
        head = f"def {function}() -> None:\n"
    return f"\n\n{head}    {py_docstring(doc, 4)}\n    {call}\n"


def _read_document(spec_path: Path) -> Any:
    """Decode the spec through the one bounded loader (JSON as JSON: YAML reads U+2028 or NEL in a string as a break).

    Raises:
        InputError: missing, unreadable, over a document limit, or not YAML/JSON (names the file).
    """
    try:
        text = spec_path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        hint = "check the path" if isinstance(exc, OSError) else "fix the spec"
        raise InputError(f"cannot read the OpenAPI file {spec_path}: {exc}", hint=hint, path=spec_path) from exc
    if text.lstrip().startswith("{"):
        try:
            return parse_document(text, path=spec_path, kind="OpenAPI file", syntax="json")
        except InputError:
            pass  # a YAML flow mapping, or broken JSON: YAML's reading (and its error) applies
    return parse_document(text, path=spec_path, kind="OpenAPI file")


def write_spec_tests(
    spec_path: Path,
    service_dir: Path,
    *,
    max_examples: int = 10,
    crud_examples: int = 5,
    request_timeout_s: float = 5.0,
) -> dict[str, Any]:
    """Write both test files into ``service_dir/tests`` (overwriting earlier versions).

    Args:
        spec_path: the OpenAPI document (YAML or JSON).
        service_dir: the service folder (its ``tests/`` is created when missing).
        max_examples: examples per operation in the schemathesis file.
        crud_examples: examples (chains) per resource in the CRUD file.
        request_timeout_s: per-request timeout written as the default (``PILOTAGE_REQUEST_TIMEOUT_S`` overrides).

    Returns:
        ``{"schemathesis_file": path, "crud_file": path or None, "chains": [CrudChain dicts]}`` (paths as strings).

    Raises:
        InputError: the spec cannot be read as YAML/JSON, holds values that are not JSON data (NaN, infinity: names
            the field), an object in it has the wrong shape (names the file), or a ``$ref`` is refused or does not
            resolve (:mod:`pilotage.spec.refs`: names the ref).
    """
    spec_path, tests_dir = Path(spec_path).resolve(), Path(service_dir).resolve() / "tests"
    doc = _read_document(spec_path)
    if not isinstance(doc, dict):
        raise InputError(f"{spec_path} is not an OpenAPI document (no mapping)", hint="fix the spec", path=spec_path)
    paths = doc.get("paths")
    if paths is not None and (not isinstance(paths, dict) or not all(isinstance(p, str) for p in paths)):
        raise InputError(
            f"{spec_path}: 'paths' must map path strings (\"/items/{{id}}\") to operations",
            hint="fix the spec",
            path=spec_path,
        )
    doc = bundle_refs(to_json_data(doc), spec_path)  # YAML's 200: keys as JSON has them; other files' refs local
    require_json_data(doc, path=str(spec_path))
    tests_dir.mkdir(parents=True, exist_ok=True)
    spec_rel = os.path.relpath(spec_path, tests_dir)
    st_file = tests_dir / SCHEMATHESIS_FILE
    prefix = base_path(doc)
    st_file.write_text(
        render_schemathesis_tests(spec_rel, max_examples=max_examples, timeout_s=request_timeout_s, base_path=prefix)
    )
    try:
        chains = infer_crud_chains(doc)
    except (AttributeError, TypeError) as exc:  # an operation, parameter or schema that is not OpenAPI's shape
        raise InputError(
            f"{spec_path}: an OpenAPI object has the wrong shape ({exc})",
            hint="validate the spec as OpenAPI 3 (e.g. with schemathesis)",
            path=spec_path,
        ) from exc
    crud_file = tests_dir / CRUD_FILE
    if chains:
        from pilotage.testing.metrics_support import plain_get

        source = render_crud_tests(
            spec_rel, chains, max_examples=crud_examples, timeout_s=request_timeout_s, metrics_path=plain_get(doc),
            base_path=prefix,
        )  # fmt: skip
        crud_file.write_text(source)
    else:
        crud_file.unlink(missing_ok=True)
    return {
        "schemathesis_file": str(st_file),
        "crud_file": str(crud_file) if chains else None,
        "chains": [asdict(c) for c in chains],
    }
