"""Issue #15 finding 1: OpenAPI document text never runs as code in the generated service or its tests.

A document's path keys, schema and property names, operation ids, titles, versions, descriptions, summaries,
enums, defaults, examples and server URLs come from hostile alphabets (quotes, triple quotes, backslashes, line
breaks, NUL, Jinja syntax, ``__import__('os')``, keywords, builtins, the generated modules' own names, statements
that create a marker file). Generation must either refuse with an ``InputError`` that names the field, or produce
a service that imports, creates no marker file and serves the texts back as data. The services are imported and
asked in ONE long-lived child process (``tests/fixtures/service_importer.py``).
"""

from __future__ import annotations

import ast
import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pilotage.codegen.generator import generate_service
from pilotage.errors import InputError
from pilotage.spec.openapi import base_path
from pilotage.testing.spec_tests import write_spec_tests

IMPORTER = Path(__file__).resolve().parents[1] / "fixtures" / "service_importer.py"
#: Created by any injected statement that runs; must never exist.
MARKER = Path(tempfile.gettempdir()) / f"pilotage-hostile-marker-{os.getpid()}"
_RUN = f"open({str(MARKER)!r}, 'w').close()"
#: Pieces of hostile text: breaking out of every kind of literal, then running a statement.
FRAGMENTS = [
    '"',
    "'",
    '"""',
    "'''",
    "\\",
    "\\'",
    '\\"',
    "\n",
    "\r",
    "\r\n",
    "\u2028",
    "\u2029",
    "\x00",
    "\x0c",
    "\t",
    "{{ 7*7 }}",
    "{% for x in y %}",
    "{#",
    "#",
    "# -*- coding: utf-7 -*-\n",
    "+ADs-",
    "__import__('os')",
    _RUN,
    f"\n{_RUN}\n",
    f'"""\n{_RUN}\n"""',
    f"'''\n{_RUN}\n'''",
    f'")\n{_RUN}\n("',
    f"'}}\n{_RUN}\n{{'",
    f'"""\n{_RUN}\nasync def _f(request):\n    """',
    f"\n    {_RUN}\n",
    "class",
    "def",
    "None",
    "lambda",
    "import",
    "str",
    "int",
    "exec",
    "eval",
    "open",
    "id",
    "type",
    "list",
    "Field",
    "BaseModel",
    "ConfigDict",
    "Any",
    "build_app",
    "crud",
    "models",
    "app",
    "OPS",
    "STORE",
    "RESOURCES",
    "Operation",
    "ApiError",
    "Request",
    "Response",
    "model_config",
    "model_dump",
    "__class__",
    "_private",
    "é",
    "٣",
    "pet",
    "x",
    "1",
    " ",
]
HOSTILE = st.lists(st.sampled_from(FRAGMENTS), min_size=1, max_size=4).map("".join)
#: Component schema names must match ``^[a-zA-Z0-9.\-_]+$``: the hostile ones that do.
SCHEMA_NAMES = st.sampled_from(
    ["Field", "str", "build_app", "crud", "class", "None", "BaseModel", "Any", "app", "OPS", "models", "Item",
     "model_config", "__import__", "1st", "a.b", "-x", "_", "exec", "Exception", "Pet_"]
)  # fmt: skip


def _schema(props: dict[str, dict[str, Any]], description: str) -> dict[str, Any]:
    return {"type": "object", "description": description, "properties": props}


@st.composite
def hostile_documents(draw: st.DrawFn) -> dict[str, Any]:
    """An OpenAPI 3.0 document whose every free text is hostile; ``/items`` is a plain CRUD collection."""
    schema_name = draw(SCHEMA_NAMES)
    names = draw(st.lists(HOSTILE, min_size=1, max_size=4, unique=True))
    values = draw(st.lists(HOSTILE, min_size=2, max_size=2, unique=True))
    ids = iter(draw(st.lists(HOSTILE, min_size=4, max_size=4, unique=True)))  # operationIds are unique
    props = {
        name: {"type": "string", "description": draw(HOSTILE), "enum": values, "default": values[0],
               "example": values[0]}
        for name in names
    }  # fmt: skip
    props["size"] = {"type": "number", "default": draw(st.floats(allow_nan=True, allow_infinity=True) | st.just(1))}
    props["id"] = {"type": "integer"}
    ref = {"$ref": f"#/components/schemas/{schema_name}"}
    json_ref = {"application/json": {"schema": ref}}
    other_path = "/" + draw(HOSTILE)
    return {
        "openapi": "3.0.3",
        "info": {"title": draw(HOSTILE), "version": draw(HOSTILE), "description": draw(HOSTILE)},
        "servers": [{"url": draw(HOSTILE)}],
        "paths": {
            "/items": {
                "get": {
                    "operationId": next(ids),
                    "summary": draw(HOSTILE),
                    "responses": {
                        "200": {
                            "description": draw(HOSTILE),
                            "content": {"application/json": {"schema": {"type": "array", "items": ref}}},
                        }
                    },
                },  # fmt: skip
                "post": {
                    "operationId": next(ids),
                    "requestBody": {"required": True, "content": json_ref},
                    "responses": {"201": {"description": "created", "content": json_ref}},
                },
            },
            "/items/{id}": {
                "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}],
                "get": {
                    "operationId": next(ids),
                    "description": draw(HOSTILE),
                    "responses": {"200": {"description": "found", "content": json_ref}, "404": {"description": "no"}},
                },
            },
            "/hello": {
                "get": {
                    "operationId": next(ids),
                    "responses": {
                        "200": {
                            "description": "hi",
                            "content": {"application/json": {"schema": {"type": "string", "example": draw(HOSTILE)}}},
                        }
                    },
                },  # fmt: skip
            },
            other_path: {"get": {"summary": draw(HOSTILE), "responses": {"204": {"description": draw(HOSTILE)}}}},
        },
        "components": {"schemas": {schema_name: _schema(props, draw(HOSTILE))}},
    }


class Importer:
    """The parent's end of ``tests/fixtures/service_importer.py``.

    :meth:`submit` does not wait: a reader thread collects the answers (checking for the marker file after each),
    so the child imports one service while the parent generates the next. :meth:`ask` waits for its answer.
    """

    def __init__(self) -> None:
        env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, str(IMPORTER)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
        )
        self.pending: queue.Queue[tuple[Path, Any, bool]] = queue.Queue()
        self.answers: queue.Queue[tuple[Path, Any, dict[str, Any]]] = queue.Queue()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            folder, context, remove = self.pending.get()
            answer = dict(json.loads(line))
            answer["marker"] = MARKER.exists()  # checked before the next service is imported
            if remove:
                shutil.rmtree(folder, ignore_errors=True)
            self.answers.put((folder, context, answer))
        self.answers.put((Path(), None, {"ok": False, "error": f"the importer died (exit {self.proc.poll()})"}))

    def submit(self, folder: Path, requests: list[dict[str, Any]], context: Any = None, remove: bool = False) -> None:
        """Send ``folder`` to the child; its answer comes out of :attr:`answers` with ``context``."""
        assert self.proc.stdin is not None
        self.pending.put((folder, context, remove))
        self.proc.stdin.write(json.dumps({"dir": str(folder), "requests": requests}) + "\n")
        self.proc.stdin.flush()

    def ask(self, folder: Path, requests: list[dict[str, Any]]) -> dict[str, Any]:
        """Send ``folder`` and wait for its answer (no other submission may be outstanding)."""
        self.submit(folder, requests)
        answered, _, answer = self.answers.get(timeout=120)
        assert answered == folder, answer
        assert not answer["marker"], f"document text ran as code in {folder}"
        return answer

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(30)
        self.reader.join(30)
        assert self.proc.stdout is not None
        self.proc.stdout.close()


@pytest.fixture(scope="module")
def importer() -> Iterator[Importer]:
    MARKER.unlink(missing_ok=True)
    child = Importer()
    yield child
    child.close()
    MARKER.unlink(missing_ok=True)


@pytest.fixture(autouse=True)
def _no_marker() -> None:
    """Each test starts without the marker file (so one test's injected statement cannot fail the next)."""
    MARKER.unlink(missing_ok=True)


def _requests(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """``GET /hello`` (501 naming its hostile operationId) and ``POST /items`` with every property's hostile example."""
    schema = next(iter(doc["components"]["schemas"].values()))
    body = {name: prop["example"] for name, prop in schema["properties"].items() if "example" in prop}
    prefix = base_path(doc)  # the service serves the API under the path of its servers[0].url
    return [{"method": "GET", "path": prefix + "/hello"}, {"method": "POST", "path": prefix + "/items", "json": body}]


def _served_as_data(doc: dict[str, Any], answer: dict[str, Any]) -> None:
    """The service imported, ran no injected statement and answered the document's texts as data."""
    assert not answer["marker"], "document text ran as code"
    assert answer["ok"], answer.get("error")
    assert answer["title"] == doc["info"]["title"] and answer["version"] == doc["info"]["version"]
    assert answer["openapi"] == doc
    hello = f"not implemented: {doc['paths']['/hello']['get']['operationId']}; edit app/handlers.py"
    first = answer["answers"][0]
    assert (first["status"], first["json"]) == (501, {"detail": hello})  # never the document's example
    body = _requests(doc)[1]["json"]
    created = answer["answers"][1]
    assert created["status"] == 201, created
    assert {k: v for k, v in created["json"].items() if k in body} == body


def _refusal_names_the_field(exc: InputError) -> None:
    """A refusal is a document problem (with its JSON path where known), never a failed quoting check.

    openapi-spec-validator raises on some path templates (``/{{ 7*7 }}``: "Single '}' encountered in format
    string"); ``validate_spec`` reports those as an invalid document without a JSON path.
    """
    assert "identifier" not in exc.context and "generated" not in exc.message.split(":")[0], exc
    named = str(getattr(exc, "json_path", "")).startswith("$")
    assert named or "is not a valid OpenAPI" in exc.message, f"refused without naming the field: {exc}"


def _generate(root: Path, importer: Importer, stats: dict[str, int], doc: dict[str, Any]) -> None:
    """One example: refused naming the field, or generated (and its CRUD tests written) and sent to the child."""
    folder = root / f"svc{stats['generated'] + stats['refused']}"
    try:
        generate_service(doc, folder)
    except InputError as exc:
        stats["refused"] += 1
        _refusal_names_the_field(exc)
        return
    stats["generated"] += 1
    written = write_spec_tests(folder / "app" / "openapi.json", folder)  # its files pass check_python or raise
    assert written["chains"], "the /items resource must give a CRUD chain"
    importer.submit(folder, _requests(doc), context=doc, remove=True)


def test_hostile_documents_never_run_code(importer: Importer, tmp_path: Path) -> None:
    """≥ 1,000 hostile documents: refused naming the field, or a service that imports and serves them as data.

    Generation, the quoting check and the testing agent's test files run under hypothesis; every generated service
    is imported and asked in the child while the next is generated, and checked once all have answered (a failure
    there names the document but is not shrunk).
    """
    started = time.monotonic()
    stats = {"generated": 0, "refused": 0}

    @settings(
        max_examples=int(os.environ.get("PILOTAGE_HOSTILE_EXAMPLES", "1000")),
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(doc=hostile_documents())
    def generate(doc: dict[str, Any]) -> None:
        _generate(tmp_path, importer, stats, doc)

    generate()
    failures = []
    for _ in range(stats["generated"]):
        folder, doc, answer = importer.answers.get(timeout=120)
        try:
            _served_as_data(doc, answer)
        except AssertionError as exc:
            failures.append(f"{folder.name}: {exc}\n{json.dumps(doc)[:3000]}")
    elapsed_s = time.monotonic() - started
    print(f"hostile documents: {stats['generated']} services imported and served, {stats['refused']} refused, "
          f"{elapsed_s:.1f} s")  # fmt: skip
    assert not failures, f"{len(failures)} services failed; the first:\n{failures[0]}"
    assert not MARKER.exists()
    assert stats["generated"] >= 0.6 * (stats["generated"] + stats["refused"]), stats  # most must be served


# --- the named instances -------------------------------------------------------------------------------


def _doc(**changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "openapi": "3.0.3",
        "info": {"title": "T", "version": "1"},
        "paths": {
            "/hello": {
                "get": {
                    "responses": {
                        "200": {
                            "description": "hi",
                            "content": {"application/json": {"schema": {"type": "string", "example": "hello"}}},
                        }
                    },
                },  # fmt: skip
            },
        },
    }
    doc.update(changes)
    return doc


def test_path_key_with_triple_quotes_and_a_statement_is_data(importer: Importer, tmp_path: Path) -> None:
    """The issue's exploit: a path key closes the handler docstring and adds a module-level statement."""
    doc = _doc()
    doc["paths"][f'/x"""\n{_RUN}\nasync def _f(request):\n    """'] = {
        "get": {"responses": {"200": {"description": "ok"}}}
    }
    generate_service(doc, tmp_path)
    answer = importer.ask(tmp_path, [{"method": "GET", "path": "/hello"}])
    assert not MARKER.exists(), "the path key ran as code on import"
    assert answer["ok"], answer.get("error")
    assert list(answer["openapi"]["paths"]) == list(doc["paths"])


@pytest.mark.parametrize("name", ["Field", "str", "build_app", "crud"])
def test_names_of_the_generated_modules_as_schema_property_and_operation_names(
    importer: Importer, tmp_path: Path, name: str
) -> None:
    """A schema, a property and operationIds named like a builtin or the generated modules' own names."""
    ref = {"$ref": f"#/components/schemas/{name}"}
    props = {name: {"type": "string"}, "other-name": {"type": "string"}}  # the second needs Field(alias=...)
    doc = _doc(components={"schemas": {name: {"type": "object", "properties": props}}})
    doc["paths"]["/items"] = {
        "post": {
            "operationId": name,
            "requestBody": {"required": True, "content": {"application/json": {"schema": ref}}},
            "responses": {"201": {"description": "created", "content": {"application/json": {"schema": ref}}}},
        }
    }
    item_id = {"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}
    doc["paths"]["/items/{id}"] = {"get": {"parameters": [item_id], "responses": {"200": {"description": "ok"}}}}
    doc["paths"]["/hello"]["get"]["operationId"] = name + "()"  # unique in the document, the same identifier
    generate_service(doc, tmp_path)
    body = {name: "v", "other-name": "w"}
    requests = [
        {"method": "GET", "path": "/hello"},
        {"method": "POST", "path": "/items", "json": body},
        {"method": "POST", "path": "/items", "json": {name: 5}},
    ]
    answer = importer.ask(tmp_path, requests)
    assert answer["ok"], answer.get("error")
    assert [(a["status"], a["json"]) for a in answer["answers"][:2]] == [
        (501, {"detail": f"not implemented: {name}(); edit app/handlers.py"}),
        (201, body),
    ]
    assert answer["answers"][2]["status"] == 400  # the property named like the module is still validated


@pytest.mark.parametrize(
    ("yaml_value", "where"),
    [("default: .inf", "$.components.schemas.Item.properties.size.default"),
     ("example: .nan", "$.components.schemas.Item.properties.size.example")],
)  # fmt: skip
def test_non_finite_default_or_example_is_refused_naming_the_field(tmp_path: Path, yaml_value: str, where: str) -> None:
    """YAML's ``.inf``/``.nan`` have no JSON number: refused with the field, not a service that answers 500."""
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "openapi: 3.0.3\ninfo: {title: T, version: '1'}\n"
        "paths:\n  /items:\n    get:\n      responses:\n        '200':\n          description: ok\n"
        "          content:\n            application/json:\n              schema: {$ref: '#/components/schemas/Item'}\n"
        "components:\n  schemas:\n    Item:\n      type: object\n      properties:\n"
        f"        size: {{type: number, {yaml_value}}}\n"
    )
    with pytest.raises(InputError) as raised:
        generate_service(spec, tmp_path / "svc")
    assert raised.value.json_path == where
    assert where in str(raised.value)
    assert not (tmp_path / "svc" / "app").exists()  # nothing written


def test_title_and_version_with_backslash_and_nul_are_served_as_data(importer: Importer, tmp_path: Path) -> None:
    doc = _doc(info={"title": 'C:\\new\\x00 "api"\x00\\', "version": "1\\\x00\u2028"})
    doc["paths"]["/hello"]["get"]["summary"] = "sum\\mary\x00 with \"\"\" and '''"
    generate_service(doc, tmp_path)
    answer = importer.ask(tmp_path, [{"method": "GET", "path": "/hello"}])
    assert answer["ok"], answer.get("error")
    assert (answer["title"], answer["version"]) == (doc["info"]["title"], doc["info"]["version"])
    assert answer["openapi"]["info"] == doc["info"]


def test_crud_test_file_keeps_hostile_paths_as_data(tmp_path: Path) -> None:
    """The testing agent's CRUD test file: a collection path that closes the test's docstring stays a string."""
    collection = f'/x"""\n{_RUN}\n"""'
    ref = {"$ref": "#/components/schemas/Item"}
    created = {"201": {"description": "ok", "content": {"application/json": {"schema": ref}}}}
    item_id = {"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}
    doc = _doc(
        paths={
            collection: {"post": {"responses": created}},
            collection + "/{id}": {"get": {"parameters": [item_id], "responses": created}},
        },
        components={"schemas": {"Item": {"type": "object", "properties": {"id": {"type": "integer"}}}}},
    )
    spec = tmp_path / "openapi.json"
    spec.write_text(json.dumps(doc))
    write_spec_tests(spec, tmp_path)
    tree = ast.parse((tmp_path / "tests" / "test_pilotage_api_crud.py").read_bytes())
    chains = next(
        ast.literal_eval(node.value)
        for node in tree.body
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "CHAINS"
    )
    ((name, chain),) = chains.items()
    assert chain["collection"] == collection
    test = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == f"test_crud_{name}")
    assert ast.get_docstring(test, clean=False) == f"{collection}: create, read back, list, search, delete, then 404."
    calls = {n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
    assert "open" not in calls
    spec_rel = next(
        n.value.right.value
        for n in tree.body
        if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", "") == "SPEC"
        and isinstance(n.value, ast.BinOp) and isinstance(n.value.right, ast.Constant)
    )  # fmt: skip
    assert (tmp_path / "tests" / spec_rel).resolve() == spec.resolve()  # the file's SPEC is the spec
