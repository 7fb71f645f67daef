"""Consumer verification as a user meets it (issue #19): a provider delivery blocked by its consumer's tests.

The notes service and digest, its consumer, whose own test suite has a contract test that calls the real notes at
``$NOTES_URL`` (skipped when unset). A notes commit that renames ``text`` is delivered: before any rollout, digest's
production tests run against a scratch instance of the new notes, the contract test fails, and the delivery fails
naming digest and the test; production is untouched. `service show` says which digest commit failed to verify which
notes commit (human and JSON), and the log has the ``contract.verified`` event.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.conftest import FAST, of_type, read_log, run_cli
from tests.fixtures.consumer_repo import breaking_notes_change, make_pair
from tests.fixtures.fleet import commit_files
from tests.unit.test_fleet_verification import CONTRACT

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

PORT = 18760
SETTINGS = f"fleet_port_base = {PORT}\nstandby_s = 0.0\nconsumer_verification_timeout_s = 120.0\n{FAST}"
TEST = "tests/test_contract.py::test_a_created_note_keeps_its_text"


def test_a_provider_change_that_fails_its_consumers_tests_is_not_delivered(tmp_path: Path) -> None:
    notes, digest = make_pair(tmp_path / "repos")
    digest_commit = commit_files(digest, {"tests/test_contract.py": CONTRACT}, "digest: contract test")
    work = tmp_path / "ops"
    work.mkdir()
    (work / "pilotage.toml").write_text(SETTINGS, encoding="utf-8")
    assert run_cli(work, "service", "add", str(notes), str(digest)).code == 0
    before = json.loads(run_cli(work, "service", "show", "notes", "--json").stdout)["production_commit"]

    change = breaking_notes_change(notes)
    delivered = run_cli(work, "deliver", "notes", "HEAD", "--json", timeout_s=600)
    assert delivered.code == 1, delivered.stdout[-3000:] + delivered.stderr
    line = f"consumer verification of notes failed: digest@{digest_commit[:12]} (NOTES_URL): {TEST}"
    assert line in delivered.stdout + delivered.stderr
    [verified] = of_type(read_log(work), "contract.verified")
    assert verified.data["consumer_commit"] == digest_commit and verified.data["provider_commit"] == change
    assert (verified.data["passed"], verified.data["failed_tests"]) == (False, [TEST])
    [tests] = of_type(read_log(work), "tests.completed")
    assert tests.data["passed"] is False and tests.data["consumer_verification"]["summary"] == line
    assert not of_type(read_log(work), "deploy.started")  # nothing rolled out

    shown = json.loads(run_cli(work, "service", "show", "notes", "--json").stdout)
    assert shown["production_commit"] == before
    [row] = shown["dependencies"]["verifications"]["as_provider"]
    assert (row["consumer"], row["consumer_commit"], row["provider_commit"]) == ("digest", digest_commit, change)
    assert (row["passed"], row["failed_tests"]) == (False, [TEST])
    human = run_cli(work, "service", "show", "digest").stdout
    assert f"verified notes@{change[:12]} with {digest_commit[:12]}: FAILED {TEST}" in human
