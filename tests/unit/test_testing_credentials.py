"""Issue 18 item 7: the credentials every request of a run sends, made from the run's test principal."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pilotage.runtime.sandbox import sandbox_env
from pilotage.testing.credentials import PRINCIPAL_ENV, credentials_for, ensure_principal, schemathesis_auth
from pilotage.testing.schemathesis_runner import write_config
from pilotage.testing.spec_tests import write_spec_tests

PRINCIPAL = "pilotage:0123456789abcdefghij"
SCHEMES = {
    "jwt": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
    "basic": {"type": "http", "scheme": "basic"},
    "key": {"type": "apiKey", "in": "header", "name": "X-Api-Key"},
    "q": {"type": "apiKey", "in": "query", "name": "api_key"},
    "c": {"type": "apiKey", "in": "cookie", "name": "session"},
    "tls": {"type": "mutualTLS"},
    "oauth": {"type": "oauth2", "flows": {}},
}


def test_each_scheme_kind_sends_the_principal_where_the_scheme_says() -> None:
    basic = "Basic " + base64.b64encode(PRINCIPAL.encode()).decode()
    assert credentials_for([{"jwt": []}], SCHEMES, PRINCIPAL) == {
        "headers": {"Authorization": f"Bearer {PRINCIPAL}"}, "query": {}, "cookies": {}}  # fmt: skip
    assert credentials_for([{"basic": []}], SCHEMES, PRINCIPAL) == {
        "headers": {"Authorization": basic}, "query": {}, "cookies": {}}  # fmt: skip
    assert credentials_for([{"key": [], "q": [], "c": []}], SCHEMES, PRINCIPAL) == {
        "headers": {"X-Api-Key": PRINCIPAL}, "query": {"api_key": PRINCIPAL},
        "cookies": {"session": PRINCIPAL}}  # fmt: skip
    oauth = credentials_for([{"oauth": ["read"]}], SCHEMES, PRINCIPAL)
    assert oauth is not None and oauth["headers"] == {"Authorization": f"Bearer {PRINCIPAL}"}


def test_alternatives_anonymous_access_and_schemes_that_cannot_be_met() -> None:
    none: dict[str, dict[str, str]] = {"headers": {}, "query": {}, "cookies": {}}
    assert credentials_for([], SCHEMES, PRINCIPAL) == none and credentials_for(None, SCHEMES, PRINCIPAL) == none
    assert credentials_for([{}, {"jwt": []}], SCHEMES, PRINCIPAL) == none  # anonymous first
    # mutual TLS cannot be met: the next alternative is taken
    assert credentials_for([{"tls": []}, {"key": []}], SCHEMES, PRINCIPAL)["headers"] == {"X-Api-Key": PRINCIPAL}  # type: ignore[index]
    assert credentials_for([{"tls": []}], SCHEMES, PRINCIPAL) is None
    assert credentials_for([{"missing": []}], SCHEMES, PRINCIPAL) is None
    assert credentials_for([{"jwt": []}], SCHEMES, "") is None  # no principal set


def test_the_principal_is_made_once_registered_and_passed_to_the_run_s_processes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pilotage.secrets import masker

    monkeypatch.delenv(PRINCIPAL_ENV, raising=False)
    principal = ensure_principal()
    assert len(principal) >= 16 and principal.startswith("pilotage:") and ensure_principal() == principal
    assert os.environ[PRINCIPAL_ENV] == principal and sandbox_env()[PRINCIPAL_ENV] == principal
    assert principal not in masker().mask_text(f"token {principal}")
    monkeypatch.setenv(PRINCIPAL_ENV, "short")
    assert ensure_principal() != "short"  # too short to be a credential: replaced


def test_schemathesis_config_names_the_principal_by_placeholder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PRINCIPAL_ENV, PRINCIPAL)
    assert schemathesis_auth(SCHEMES) == {
        "jwt": {"bearer": "${PILOTAGE_TEST_PRINCIPAL}"},
        "basic": {"username": "${PILOTAGE_TEST_PRINCIPAL_USER}", "password": "${PILOTAGE_TEST_PRINCIPAL_PASSWORD}"},
        "key": {"api_key": "${PILOTAGE_TEST_PRINCIPAL}"},
        "q": {"api_key": "${PILOTAGE_TEST_PRINCIPAL}"},
        "c": {"api_key": "${PILOTAGE_TEST_PRINCIPAL}"},
        "oauth": {"bearer": "${PILOTAGE_TEST_PRINCIPAL}"},
    }
    text = write_config(tmp_path / "schemathesis.toml", {}, {"jwt": SCHEMES["jwt"]}).read_text()
    assert '[auth.openapi."jwt"]\nbearer = "${PILOTAGE_TEST_PRINCIPAL}"' in text and PRINCIPAL not in text


#: A small secured API: the document's top-level bearer security covers every operation but the health check.
SECURED_DOC = {
    "openapi": "3.0.3",
    "info": {"title": "notes", "version": "1.0.0"},
    "security": [{"jwt": []}],
    "components": {
        "securitySchemes": {"jwt": {"type": "http", "scheme": "bearer"}},
        "schemas": {
            "NoteIn": {
                "type": "object",
                "required": ["text"],
                "additionalProperties": False,
                "properties": {"text": {"type": "string", "maxLength": 20}},
            },  # fmt: skip
            "Note": {
                "type": "object",
                "required": ["id", "text"],
                "properties": {"id": {"type": "integer"}, "text": {"type": "string"}},
            },  # fmt: skip
        },
    },
    "paths": {
        "/notes": {
            "get": {
                "responses": {
                    "200": {
                        "description": "all",
                        "content": {
                            "application/json": {
                                "schema": {"type": "array", "items": {"$ref": "#/components/schemas/Note"}}
                            }
                        },
                    },
                    "401": {"description": "no credentials"},
                }
            },  # fmt: skip
            "post": {
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/NoteIn"}}},
                },  # fmt: skip
                "responses": {
                    "201": {
                        "description": "created",
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Note"}}},
                    },  # fmt: skip
                    "401": {"description": "no credentials"},
                    "422": {"description": "invalid"},
                },
            },
        },
        "/notes/{noteId}": {
            "parameters": [{"name": "noteId", "in": "path", "required": True, "schema": {"type": "integer"}}],
            "get": {
                "responses": {
                    "200": {
                        "description": "one",
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Note"}}},
                    },  # fmt: skip
                    "401": {"description": "no credentials"},
                    "404": {"description": "no such note"},
                }
            },
            "delete": {
                "responses": {
                    "204": {"description": "deleted"},
                    "401": {"description": "no credentials"},
                    "404": {"description": "no such note"},
                }
            },  # fmt: skip
        },
    },
}

#: The service of SECURED_DOC: every operation checks ``Authorization: Bearer $PILOTAGE_TEST_PRINCIPAL``.
SECURED_APP = """
import os
from fastapi import FastAPI, HTTPException, Request, Response
from pydantic import BaseModel, ConfigDict, Field

app = FastAPI()
NOTES = {}
IDS = iter(range(1, 10**9))


class NoteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field(max_length=20)


def check(request: Request) -> None:
    principal = os.environ.get("PILOTAGE_TEST_PRINCIPAL", "")
    if not principal or request.headers.get("authorization") != f"Bearer {principal}":
        raise HTTPException(401, "missing credentials", headers={"WWW-Authenticate": "Bearer"})


@app.get("/notes")
def list_notes(request: Request):
    check(request)
    return list(NOTES.values())


@app.post("/notes", status_code=201)
def create(request: Request, body: NoteIn):
    check(request)
    note = {"id": next(IDS), "text": body.text}
    NOTES[note["id"]] = note
    return note


@app.get("/notes/{noteId}")
def read(request: Request, noteId: int):
    check(request)
    if noteId not in NOTES:
        raise HTTPException(404, "no such note")
    return NOTES[noteId]


@app.delete("/notes/{noteId}", status_code=204)
def delete(request: Request, noteId: int):
    check(request)
    if NOTES.pop(noteId, None) is None:
        raise HTTPException(404, "no such note")
    return Response(status_code=204)
"""


def _crud(tmp_path: Path, principal: str | None) -> tuple[subprocess.CompletedProcess[str], dict[str, int]]:
    service = tmp_path / "notes"
    (service / "app").mkdir(parents=True)
    (service / "app" / "__init__.py").write_text("")
    (service / "app" / "main.py").write_text(SECURED_APP)
    (service / "openapi.yaml").write_text(yaml.safe_dump(SECURED_DOC))
    write_spec_tests(service / "openapi.yaml", service, crud_examples=2)
    env = {k: v for k, v in os.environ.items() if k != PRINCIPAL_ENV} | (
        {PRINCIPAL_ENV: principal} if principal else {}
    )
    junit = tmp_path / "crud.xml"
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_pilotage_api_crud.py",
            f"--junitxml={junit}", "-rs"]  # fmt: skip
    run = subprocess.run(argv, cwd=service, capture_output=True, text=True, timeout=300, check=False, env=env)
    from pilotage.testing.suite import parse_cases

    outcomes = [c["outcome"] for c in parse_cases(junit, service)]
    return run, {o: outcomes.count(o) for o in ("passed", "failed", "skipped")}


def test_crud_tests_authenticate_every_request_of_a_secured_api(tmp_path: Path) -> None:
    """Create, read, list and delete all carry the bearer token: the chain passes instead of skipping on GET."""
    run, counts = _crud(tmp_path, PRINCIPAL)
    assert run.returncode == 0, run.stdout[-3000:]
    assert counts["passed"] >= 3 and counts["failed"] == 0, (counts, run.stdout[-2000:])
    assert "credentials" not in run.stdout  # no test skipped for want of them (only the metrics test: no /metrics)
    assert PRINCIPAL not in json.dumps(SECURED_DOC)


def test_crud_tests_without_a_principal_skip_and_say_why(tmp_path: Path) -> None:
    run, counts = _crud(tmp_path, None)
    assert counts["skipped"] >= 2 and counts["failed"] == 0, run.stdout[-2000:]
    assert "answered 401 without credentials (set PILOTAGE_TEST_PRINCIPAL" in run.stdout


def test_a_document_with_top_level_security_gets_load_and_rollout_targets_with_the_principal() -> None:
    """Issue 18: the perf stage no longer finds nothing to call (and no wrong hint) for a secured document."""
    from pilotage.perf.locustfile import load_targets
    from pilotage.rollout.traffic_plan import build_traffic_plan

    assert load_targets(SECURED_DOC) == []
    targets = load_targets(SECURED_DOC, principal=True)
    assert [(t.operation, t.security) for t in targets] == [("GET /notes", [{"jwt": []}])]
    plan = build_traffic_plan(SECURED_DOC, principal=True)
    assert [r["operation"] for r in plan["requests"]] == ["GET /notes"]  # the item needs a write to exist
    assert plan["schemes"] == {"jwt": {"type": "http", "scheme": "bearer"}}
    unmet = {
        **SECURED_DOC,
        "security": [{"tls": []}],
        "components": {"securitySchemes": {"tls": {"type": "mutualTLS"}}},
    }
    assert load_targets(unmet, principal=True) == []
    assert {s["kind"] for s in build_traffic_plan(unmet, principal=True)["skipped"]} == {"credentials", "writes"}
