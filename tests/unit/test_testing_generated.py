"""Issue #5: CRUD chain inference, ghostwriter post-processing, flaky classification, JUnit case parsing."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pilotage.errors import InputError
from pilotage.testing.ghostwrite import complete_tests, return_check
from pilotage.testing.metrics_support import plain_get
from pilotage.testing.spec_tests import infer_crud_chains, write_spec_tests
from pilotage.testing.suite import classify_flaky, parse_cases

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "inventory-service"


def test_the_metrics_contract_test_calls_a_get_that_needs_no_parameter() -> None:
    """Not a templated path, not one with a required parameter (also behind a $ref), not the uncounted endpoints."""
    required_header = {"name": "h", "in": "header", "required": True}
    doc = {
        "paths": {
            "/healthz": {"get": {}},
            "/metrics": {"get": {}},
            "/items/{id}": {"get": {}},
            "/search": {"get": {"parameters": [{"name": "q", "in": "query", "required": True}]}},
            "/reports": {"parameters": [{"$ref": "#/components/parameters/H"}], "get": {}},
            "/orders": {"post": {}},
            "/items": {"get": {"parameters": [{"name": "limit", "in": "query"}]}},
        },
        "components": {"parameters": {"H": required_header}},
    }
    assert plain_get(doc) == "/items"
    assert plain_get({"paths": {"/healthz": {"get": {}}}}) is None
    odd = {"/metrics/": {"get": {}}, "/p": {"get": {"parameters": {"q": {"required": True}}}}, "x": {"get": {}}}
    assert plain_get({"paths": odd}) is None  # trailing slash, parameters not a list, no leading slash
    assert plain_get({"paths": ["/items"]}) is None and plain_get([]) is None
    assert plain_get(yaml.safe_load((EXAMPLE / "openapi.yaml").read_text())) == "/items"
    assert plain_get(yaml.safe_load((FIXTURES / "specs" / "petstore3.yaml").read_text())) == "/pet/findByStatus"


def test_crud_chains_of_the_inventory_example() -> None:
    chains = infer_crud_chains(yaml.safe_load((EXAMPLE / "openapi.yaml").read_text()))
    assert [(c.collection, c.item, c.key, [u["method"] for u in c.updates], c.delete) for c in chains] == [
        ("/items", "/items/{itemId}", "id", ["PUT"], True)
    ]
    assert chains[0].page == {"param": "limit", "maximum": 100, "default": 20}
    assert chains[0].defaults == {"minimum": 0}
    assert chains[0].defaulted == [{"path": "/items", "params": {"limit": 20}},
                                   {"path": "/items/{itemId}/reorder", "params": {"batch": 10}}]  # fmt: skip
    assert [(p["method"], p["path"]) for p in chains[0].probes] == [
        ("GET", "/items/{itemId}"), ("DELETE", "/items/{itemId}"), ("GET", "/items/{itemId}/reorder")]  # fmt: skip
    assert [(b["method"], b["path"]) for b in chains[0].below] == [("GET", "/items/{itemId}/reorder")]
    assert chains[0].searches == [{"path": "/items", "params": ["low"], "exact": {"low": [True, False]},
                                   "limit": ["limit", 100]}]  # fmt: skip


def test_written_files_compile(tmp_path: Path) -> None:
    written = write_spec_tests(FIXTURES / "ok_service" / "openapi.yaml", tmp_path, max_examples=3)
    assert [c["name"] for c in written["chains"]] == ["pets"]
    for key in ("schemathesis_file", "crud_file"):
        source = Path(written[key]).read_text()
        compile(source, written[key], "exec")
        assert "PILOTAGE_BASE_URL" in source


def _crud_run(service: Path) -> subprocess.CompletedProcess[str]:
    write_spec_tests(service / "openapi.yaml", service, crud_examples=3)
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_pilotage_api_crud.py"]
    return subprocess.run(argv, cwd=service, capture_output=True, text=True, timeout=300, check=False)


@pytest.mark.parametrize(
    ("bug", "message"),
    [
        (None, None),
        ("    return items[:limit]\n", "does not list the resource just created"),
        # a delete that deletes nothing: the failing chain's replay meets a 409, so only the test's failure is checked
        ('        conn.execute("DELETE FROM items WHERE id = ?", (itemId,))\n', "test_crud_items"),
    ],
)
def test_crud_chain_oracle_on_the_inventory_example(tmp_path: Path, bug: str | None, message: str | None) -> None:
    service = tmp_path / "inventory"
    shutil.copytree(EXAMPLE, service, ignore=shutil.ignore_patterns("test_pilotage_*", "__pycache__"))
    main = service / "app" / "main.py"
    if bug is not None:  # a lost list entry / a delete that deletes nothing: what the life-cycle oracle must catch
        source = main.read_text()
        assert bug in source
        replacement = bug.replace("return items[:limit]", "return []") if "return" in bug else ""
        main.write_text(source.replace(bug, replacement))
    run = _crud_run(service)
    if message is None:
        assert run.returncode == 0, run.stdout[-3000:]
    else:
        assert run.returncode == 1, run.stdout[-3000:]
        assert message in run.stdout


def typed(x: int) -> float:
    return x / 2


def untyped_result(x: int) -> object:
    return x


def test_return_check_follows_the_annotation() -> None:
    assert return_check(typed) == "assert isinstance(result, (int, float,)), result"
    assert return_check(untyped_result) is None


def test_fuzz_stub_is_completed_and_unfillable_dropped() -> None:
    source = (
        "from hypothesis import given, strategies as st\nimport mod\n\n"
        "@given(x=st.integers())\ndef test_fuzz_typed(x: int) -> None:\n    mod.typed(x=x)\n\n"
        "@given(x=st.nothing())\ndef test_fuzz_other(x) -> None:\n    mod.other(x=x)\n"
    )
    kept, dropped, imports = complete_tests(source, {"typed": typed})
    assert len(kept) == 1 and "result = mod.typed(x=x)" in kept[0] and "assert isinstance(result" in kept[0]
    assert dropped == [{"test": "test_fuzz_other", "reason": "ghostwriter could not build a strategy for an argument"}]
    assert "import mod" in imports


def test_flaky_means_mixed_history() -> None:
    flaky, failing = classify_flaky({"a": [False, True, False], "b": [False, False], "c": [False, True]})
    assert flaky == ["a", "c"] and failing == ["b"]


def test_parse_cases_kinds_and_curl(tmp_path: Path) -> None:
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_pilotage_api_crud.py").write_text("")
    (tmp_path / "tests" / "test_own.py").write_text("")
    junit = tmp_path / "j.xml"
    junit.write_text(
        '<testsuites><testsuite tests="2">'
        '<testcase classname="tests.test_pilotage_api_crud" name="test_crud_pets">'
        '<failure message="boom">GET after DELETE answered 200\nReproduce:\ncurl -X POST http://x/pets</failure>'
        '</testcase><testcase classname="tests.test_own" name="test_ok"/></testsuite></testsuites>'
    )
    cases = parse_cases(junit, tmp_path)
    assert [(c["nodeid"], c["kind"], c["outcome"]) for c in cases] == [
        ("tests/test_pilotage_api_crud.py::test_crud_pets", "crud", "failed"),
        ("tests/test_own.py::test_ok", "unit", "passed"),
    ]
    assert cases[0]["reproduce"] == "curl -X POST http://x/pets"


VALIDATE = "validate the spec as OpenAPI 3 (e.g. with schemathesis)"
THINGS = """paths:
  /things: {post: {responses: {"201": {content: {application/json: {schema: {properties: {id: {type: integer}}}}}}}}}
  /things/{id}: {get: {}}
"""


@pytest.mark.parametrize(
    ("text", "message", "hint"),
    [
        ("paths: [1, 2]\n", "'paths' must map path strings", "fix the spec"),
        ("paths: {1: {}}\n", "'paths' must map path strings", "fix the spec"),
        ("- a list\n", "is not an OpenAPI document", "fix the spec"),
        (None, "cannot read the OpenAPI file", "check the path"),
        # operations of the wrong shape (were AttributeError/TypeError tracebacks)
        ('paths: {"/things": {post: x}, "/things/{id}": {get: {}}}\n', "has the wrong shape", VALIDATE),
        ('paths: {"/things": [post], "/things/{id}": {get: {}}}\n', "has the wrong shape", VALIDATE),
        (
            'paths: {"/things": {post: {responses: ["201"]}}, "/things/{id}": {get: {}}}\n',
            "has the wrong shape",
            VALIDATE,
        ),
        (THINGS.replace("{id: {type: integer}}", "[id]"), "has the wrong shape", VALIDATE),  # properties: a list
    ],
)
def test_a_spec_that_is_not_openapi_gets_a_clear_error(
    tmp_path: Path, text: str | None, message: str, hint: str
) -> None:
    spec = tmp_path / "openapi.yaml"
    if text is not None:
        spec.write_text(text)
    with pytest.raises(InputError) as caught:
        write_spec_tests(spec, tmp_path / "svc")
    assert message in str(caught.value) and str(spec) in str(caught.value)
    assert caught.value.hint == hint


def test_a_documented_refusal_of_a_valid_create_is_the_contract_not_a_crud_finding(tmp_path: Path) -> None:
    # payments declines an amount over its limit with 402, which its document declares: the CRUD chain draws another
    # body instead of failing "answered 402, not 2xx" (a new user could not deliver payments with default settings)
    document = yaml.safe_load((EXAMPLE.parent / "fleet" / "payments" / "openapi.yaml").read_text())
    chain = next(c for c in infer_crud_chains(document) if c.collection == "/payments")
    assert chain.create_refusals == [402, 422]  # what its POST documents (the rule schemathesis' findings follow)
    service = tmp_path / "payments"
    shutil.copytree(EXAMPLE.parent / "fleet" / "payments", service, ignore=shutil.ignore_patterns("__pycache__"))
    main = service / "app" / "main.py"
    main.write_text(main.read_text().replace("if payment.amount_cents > LIMIT_CENTS:", "if payment.amount_cents > 1:"))
    (service / "pytest.ini").write_text("[pytest]\ntestpaths = tests\n")  # in-process: starlette's TestClient warns
    run = _crud_run(service)  # every amount but 1 is declined: the chain still runs on the one it can create
    assert run.returncode == 0, run.stdout[-3000:]
