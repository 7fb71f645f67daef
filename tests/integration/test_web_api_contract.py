"""The HTTP API's contract: its OpenAPI document, schemathesis against it, and no secret in any answer."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from pilotage.bus.sqlite import SQLiteBus
from pilotage.catalogue import checked_event
from pilotage.events import EventType
from pilotage.settings import Settings
from pilotage.testing.schemathesis_runner import run_schemathesis
from tests.fixtures.web_log import DECISION_ID, DEPLOYMENT, RUN, SERVICE, ServedApi, fill_log

API = "/api/v1"
#: Planted in the settings (a test header, the API token) and in an event written before the masker knew it.
HEADER_SECRET, TOKEN, EVENT_SECRET = "hdr-5ecret-91f3c07a", "tok-5ecret-2b8e44d1", "evt-5ecret-63aa0f19"


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[ServedApi, dict[str, str]]]:
    home = (tmp_path / ".pilotage").resolve()
    ids = fill_log(home)
    api = ServedApi(Settings(home=home)).start()
    try:
        yield api, ids
    finally:
        api.stop()


def _concrete(path: str, ids: dict[str, str]) -> str:
    values = {"{name}": SERVICE, "{run_id}": RUN, "{decision_id}": DECISION_ID, "{deployment_id}": DEPLOYMENT,
              "{approval_id}": ids["approval_id"]}  # fmt: skip
    for placeholder, value in values.items():
        path = path.replace(placeholder, value)
    return path


def test_the_openapi_document_lists_every_operation_with_problem_responses(
    served: tuple[ServedApi, dict[str, str]],
) -> None:
    api, _ = served
    doc = httpx.get(f"{api.url}{API}/openapi.json", timeout=30).json()
    assert set(doc["paths"]) == {f"{API}{p}" for p in (
        "/services", "/services/{name}", "/fleet/graph", "/runs", "/runs/{run_id}", "/events",
        "/decisions/{decision_id}", "/rollouts", "/rollouts/{deployment_id}", "/market", "/cost", "/approvals",
        "/approvals/{approval_id}/approve", "/approvals/{approval_id}/deny", "/deliveries")}  # fmt: skip
    posts = [p for p, ops in doc["paths"].items() if "post" in ops]
    assert sorted(posts) == [f"{API}/approvals/{{approval_id}}/approve", f"{API}/approvals/{{approval_id}}/deny",
                             f"{API}/deliveries"]  # fmt: skip
    rollout = doc["paths"][f"{API}/rollouts/{{deployment_id}}"]["get"]["responses"]
    assert rollout["200"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/RolloutOut"}
    assert "application/problem+json" in rollout["404"]["content"]


def test_schemathesis_finds_no_server_error_and_no_contract_violation(
    served: tuple[ServedApi, dict[str, str]], tmp_path: Path
) -> None:
    api, _ = served
    spec = tmp_path / "openapi.json"
    spec.write_text(httpx.get(f"{api.url}{API}/openapi.json", timeout=30).text, encoding="utf-8")
    result = asyncio.run(
        run_schemathesis(spec, api.url, tmp_path / "schemathesis", max_examples=5, timeout_s=300, seed=20)
    )
    summary = json.dumps(result.to_dict()["operations"], indent=1)
    assert result.complete and result.requests > 100, summary
    assert (result.server_errors, result.failures, result.checks_failed) == (0, 0, []), summary


def test_no_secret_from_settings_or_events_appears_in_any_answer(tmp_path: Path) -> None:
    home = (tmp_path / ".pilotage").resolve()
    ids = fill_log(home)

    async def plant() -> None:  # an event written before the masker knew the value (an older log)
        async with SQLiteBus(f"sqlite:///{home / 'events.db'}") as bus:
            data = {"run_id": RUN, "status": "completed", "outcome": "none", "error": f"token={EVENT_SECRET}"}
            await bus.publish(checked_event(EventType.FLOW_COMPLETED, data, source="/t", subject=SERVICE, runid=RUN))

    asyncio.run(plant())
    settings = Settings(home=home, testing_auth_headers={"X-Tenant": HEADER_SECRET, "X-Event": EVENT_SECRET},
                        api_token=TOKEN)  # fmt: skip
    api = ServedApi(settings).start()
    try:
        doc = httpx.get(f"{api.url}{API}/openapi.json", timeout=30).json()
        answers = [json.dumps(doc)]
        for path, ops in doc["paths"].items():
            if "get" in ops:
                answer = httpx.get(f"{api.url}{_concrete(path, ids)}", params={"limit": 500}, timeout=30)
                assert answer.status_code == 200, (path, answer.text)
                answers.append(answer.text)
        bad = httpx.post(f"{api.url}{API}/deliveries", json={"service": HEADER_SECRET}, timeout=30,
                         headers={"Authorization": f"Bearer {TOKEN}"})  # fmt: skip
        answers.append(bad.text)
    finally:
        api.stop()
    everything = "\n".join(answers)
    assert "[masked]" in everything  # the planted event is there, masked
    for secret in (HEADER_SECRET, TOKEN, EVENT_SECRET):
        assert secret not in everything
