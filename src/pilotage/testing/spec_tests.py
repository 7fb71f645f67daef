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
over ASGI, the generated-service convention). Authentication comes from ``PILOTAGE_TEST_HEADERS`` (a JSON object of
headers, set from ``settings.testing_auth_headers``), so no secret is written into the repository.

A CRUD resource is a collection path ``C`` with ``POST`` and an item path ``C/{param}`` with ``GET``; its key is the
property of the create response named like ``param``, else ``id`` when ``param`` ends with ``Id``/``_id`` (the
convention of the generated services and of most hand-written APIs). A nested collection (``/carts/{cartId}/items``)
gets its parent (``/carts``) created first.
"""

from __future__ import annotations

import os
import pprint
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pilotage.errors import InputError

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
_METHODS = ("get", "put", "post", "delete", "patch")


@dataclass
class CrudChain:
    """One CRUD resource of a spec.

    Attributes:
        name: test name part (``carts_items``).
        collection: collection path (``/carts/{cartId}/items``).
        item: item path (``/carts/{cartId}/items/{itemId}``).
        param: the item path parameter (``itemId``).
        key: the response property holding the id (``id``).
        update: ``"PUT"``, ``"PATCH"`` or None.
        delete: True when the item path has ``DELETE``.
        has_list: True when the collection has ``GET`` returning an array.
        parent: name of the parent chain for a nested collection (its id fills the scope parameter), or None.
        scope_param: the collection's path parameter filled with the parent's id, or None.
    """

    name: str
    collection: str
    item: str
    param: str
    key: str
    update: str | None = None
    delete: bool = False
    has_list: bool = False
    parent: str | None = None
    scope_param: str | None = None
    fields: list[str] = field(default_factory=list)


def _resolve(doc: dict[str, Any], node: Any, depth: int = 0) -> Any:
    while isinstance(node, dict) and isinstance(node.get("$ref"), str) and depth < 20:
        ref = node["$ref"]
        if not ref.startswith("#/"):
            return {}
        target: Any = doc
        for part in ref[2:].split("/"):
            target = target.get(part.replace("~1", "/").replace("~0", "~"), {}) if isinstance(target, dict) else {}
        node, depth = target, depth + 1
    return node


def _json_schema(doc: dict[str, Any], holder: Any) -> dict[str, Any]:
    content = (_resolve(doc, holder) or {}).get("content") or {}
    media: Any = content.get("application/json") or next(iter(content.values()), {}) if content else {}
    schema = _resolve(doc, (media or {}).get("schema") or {})
    return schema if isinstance(schema, dict) else {}


def _success(doc: dict[str, Any], operation: dict[str, Any]) -> dict[str, Any]:
    responses = operation.get("responses") or {}
    for code in sorted(str(c) for c in responses):
        if code.startswith("2"):
            return _json_schema(doc, responses.get(code) if code in responses else responses.get(int(code)))
    return {}


def _key_for(param: str, props: dict[str, Any]) -> str | None:
    if param in props:
        return param
    if re.search(r"(Id|_id|ID)$", param) and "id" in props:
        return "id"
    return None


def infer_crud_chains(doc: dict[str, Any]) -> list[CrudChain]:
    """Find the CRUD resources of an OpenAPI document (rules in the module docstring).

    Args:
        doc: the OpenAPI 3 document as a dict (``$ref`` inside the document only).

    Returns:
        The chains, parents before their nested collections, in path order.
    """
    paths: dict[str, Any] = doc.get("paths") or {}
    chains: dict[str, CrudChain] = {}
    for collection in sorted(paths, key=lambda p: (p.count("/"), p)):
        ops = paths[collection] or {}
        if "post" not in ops:
            continue
        for item, item_ops in paths.items():
            match = re.fullmatch(re.escape(collection.rstrip("/")) + r"/\{([^}/]+)\}", item)
            if not match or "get" not in (item_ops or {}):
                continue
            props = _resolve(doc, _success(doc, ops["post"]).get("properties")) or {}
            key = _key_for(match.group(1), props)
            if key is None:
                continue
            scope = re.findall(r"\{([^}/]+)\}", collection)
            parent = None
            if scope:
                parent_item = collection.rsplit("/", 1)[0]
                parent = next((c.name for c in chains.values() if c.item == parent_item), None)
                if parent is None or len(scope) != 1:
                    continue  # a nested collection whose parent cannot be created here
            list_schema = _success(doc, ops["get"]) if "get" in ops else {}
            name = re.sub(r"\W+", "_", re.sub(r"\{[^}]*\}", "", collection)).strip("_").lower() or "root"
            chains[name] = CrudChain(
                name=name,
                collection=collection,
                item=item,
                param=match.group(1),
                key=key,
                update="PUT" if "put" in item_ops else "PATCH" if "patch" in item_ops else None,
                delete="delete" in item_ops,
                has_list=list_schema.get("type") == "array",
                parent=parent,
                scope_param=scope[0] if scope else None,
                fields=sorted(props),
            )
            break
    return list(chains.values())


_HEADER = '''"""{title}

Written by Pilotage's testing agent from {spec} (regenerate rather than edit). Target: ``PILOTAGE_BASE_URL`` when
set, else ``app.main:app`` in-process; extra request headers (authentication) from ``PILOTAGE_TEST_HEADERS`` (JSON).
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

SPEC = Path(__file__).resolve().parent / {spec_rel!r}
BASE_URL = os.environ.get("PILOTAGE_BASE_URL") or None
HEADERS = json.loads(os.environ.get("PILOTAGE_TEST_HEADERS") or "{{}}")
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
    BASE_URL = "http://testserver"  # the app's own root: the spec's ``servers`` prefix is not the app's
'''

_SCHEMATHESIS_BODY = '''

@schema.parametrize()
@SETTINGS
def test_api(case: schemathesis.Case) -> None:
    """Every operation with every schemathesis check (server errors, conformance, negative data ...)."""
    case.call_and_validate(base_url=BASE_URL, headers=HEADERS, timeout=TIMEOUT_S)


class Workflow(schema.as_state_machine()):  # type: ignore[misc]
    """Stateful sequences along the spec's OpenAPI links and the links schemathesis infers."""

    def get_call_kwargs(self, case: schemathesis.Case) -> dict[str, object]:
        return {"base_url": BASE_URL, "headers": HEADERS, "timeout": TIMEOUT_S}


TestWorkflow = Workflow.TestCase
TestWorkflow.settings = settings(SETTINGS, stateful_step_count=6)
'''


def _header(title: str, spec_rel: str, max_examples: int, timeout_s: float, derandomize: bool) -> str:
    return _HEADER.format(
        title=title, spec=spec_rel, spec_rel=spec_rel, max_examples=max_examples, timeout_s=timeout_s,
        derandomize=derandomize,
    )  # fmt: skip


def render_schemathesis_tests(spec_rel: str, *, max_examples: int, timeout_s: float, derandomize: bool = True) -> str:
    """Return the source of ``test_pilotage_api_schemathesis.py`` (spec path relative to the tests folder)."""
    title = "Property-based API tests from the OpenAPI spec (schemathesis v4 Python API, all checks, stateful)."
    return _header(title, spec_rel, max_examples, timeout_s, derandomize) + _SCHEMATHESIS_BODY


def render_crud_tests(
    spec_rel: str, chains: list[CrudChain], *, max_examples: int, timeout_s: float, derandomize: bool = True
) -> str:
    """Return the source of ``test_pilotage_api_crud.py``: one hypothesis test per chain (``crud_support`` helpers).

    The chain logic is :mod:`pilotage.testing.crud_support`'s source, copied into the file, so the repository's
    tests do not import Pilotage.
    """
    from pilotage.testing import crud_support

    support = Path(crud_support.__file__).read_text(encoding="utf-8").split("\n# --- copied below ---\n", 1)[1]
    title = "Create → read → update → delete chains inferred from the OpenAPI spec (resource life-cycle oracle)."
    parts = [_header(title, spec_rel, max_examples, timeout_s, derandomize)]
    parts.append("from hypothesis import Phase, given\nfrom hypothesis import strategies as st\n")
    parts.append(support)
    parts.append(f"\nCHAINS = {pprint.pformat({c.name: asdict(c) for c in chains}, width=110)}\n")
    for chain in chains:
        parts.append(
            f"\n\n@settings(SETTINGS, phases=[Phase.explicit, Phase.generate])  # no shrinking: bounded time\n"
            f"@given(data=st.data())\ndef test_crud_{chain.name}(data: st.DataObject) -> None:\n"
            f'    """{chain.collection}: create, read back, list, update, delete, then 404."""\n'
            f"    run_chain(data, {chain.name!r})\n"
        )
    return "".join(parts)


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
        InputError: the spec cannot be read as YAML/JSON (names the file).
    """
    spec_path, tests_dir = Path(spec_path).resolve(), Path(service_dir).resolve() / "tests"
    try:
        doc = yaml.safe_load(spec_path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError, UnicodeDecodeError) as exc:
        raise InputError(
            f"cannot read the OpenAPI file {spec_path}: {exc}", hint="fix the spec", path=spec_path
        ) from exc
    if not isinstance(doc, dict):
        raise InputError(f"{spec_path} is not an OpenAPI document (no mapping)", hint="fix the spec", path=spec_path)
    tests_dir.mkdir(parents=True, exist_ok=True)
    spec_rel = os.path.relpath(spec_path, tests_dir)
    st_file = tests_dir / SCHEMATHESIS_FILE
    st_file.write_text(render_schemathesis_tests(spec_rel, max_examples=max_examples, timeout_s=request_timeout_s))
    chains = infer_crud_chains(doc)
    crud_file = tests_dir / CRUD_FILE
    if chains:
        crud_file.write_text(
            render_crud_tests(spec_rel, chains, max_examples=crud_examples, timeout_s=request_timeout_s)
        )
    else:
        crud_file.unlink(missing_ok=True)
    return {
        "schemathesis_file": str(st_file),
        "crud_file": str(crud_file) if chains else None,
        "chains": [asdict(c) for c in chains],
    }
