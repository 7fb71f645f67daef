"""The generated services under schemathesis v4 (real uvicorn processes): no server errors, few other failures."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from pilotage.codegen.generator import generate_service
from pilotage.spec.evolve import evolve
from pilotage.spec.grammar import parse_request
from pilotage.spec.load import dump_spec, load_spec
from pilotage.spec.openapi import api_url
from tests.fixtures import CHECKOUT_SPEC
from tests.unit.test_codegen import serve

PETSTORE = Path("/work/shared/specs/petstore3.yaml")
CHECKOUT = CHECKOUT_SPEC
SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"
#: The petstore operations whose behaviour is not inferred: 501 from app/handlers.py until written.
UNWRITTEN = ("uploadFile", "getInventory", "createUsersWithListInput")

pytestmark = pytest.mark.slow


def schemathesis(
    spec: Path, url: str, checks: str, max_examples: int = 20, unwritten: tuple[str, ...] = ()
) -> tuple[int, str]:
    """Run schemathesis; the ``unwritten`` operationIds (501 from app/handlers.py) are excluded."""
    excluded = [arg for op_id in unwritten for arg in ("--exclude-operation-id", op_id)]
    done = subprocess.run(
        [
            str(SCHEMATHESIS),
            "run",
            str(spec),
            "--url",
            url,
            "--checks",
            checks,
            "--max-examples",
            str(max_examples),
            "--seed",
            "7",
            "--no-color",
            *excluded,
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    return done.returncode, done.stdout + done.stderr


def failures(output: str) -> int:
    match = re.search(r"(\d+) failures?", output)
    return int(match.group(1)) if match else 0


@pytest.mark.parametrize("enforce_auth", ["0", "1"])
def test_petstore_has_no_server_errors(tmp_path: Path, enforce_auth: str) -> None:
    generate_service(PETSTORE, tmp_path)
    for root in serve(tmp_path, {"PILOTAGE_ENFORCE_AUTH": enforce_auth}):
        url = api_url(root, PETSTORE)  # the API is served under servers[0]'s path (/api/v3)
        stub = httpx.get(url + "/store/inventory", headers={"api_key": "k"})
        assert stub.status_code == (501 if enforce_auth == "0" else 401), stub.text
        code, out = schemathesis(PETSTORE, url, "not_a_server_error", unwritten=UNWRITTEN)
        assert code == 0, out[-4000:]
        assert failures(out) == 0 and re.search(r"(\d+) generated, \1 passed", out), out[-4000:]
        code, out = schemathesis(PETSTORE, url, "all", unwritten=UNWRITTEN)
        # Left: form-encoding ambiguities (one-value arrays, nested objects) and presence-only auth checks.
        assert failures(out) <= 10, out[-6000:]
        assert "Server error" not in out


def test_evolved_checkout_passes_every_check(tmp_path: Path) -> None:
    doc = evolve(
        load_spec(CHECKOUT), parse_request("Add discount code support with fields code:string, percent:integer")
    )
    spec = dump_spec(doc, tmp_path / "openapi.next.yaml")
    service = tmp_path / "service"
    generate_service(doc, service)
    for root in serve(service):
        url = api_url(root, spec)
        code, out = schemathesis(spec, url, "not_a_server_error", max_examples=30)
        assert code == 0 and failures(out) == 0, out[-4000:]
        code, out = schemathesis(spec, url, "all", max_examples=30)
        # Usually "No issues found"; one unreproduced stateful-phase failure was seen once in ~10 runs.
        assert failures(out) <= 2, out[-6000:]
