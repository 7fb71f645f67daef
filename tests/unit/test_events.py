import json

import pytest

from pilotage.errors import InputError
from pilotage.events import MAX_EVENT_BYTES, CloudEvent, EventType, matches, new_event


def test_round_trip_keeps_every_attribute() -> None:
    event = new_event(EventType.DEPLOY_STEP, {"weight": 25}, source="/t", subject="checkout", runid="run-1")
    back = CloudEvent.from_json(event.to_json())
    assert back == event
    body = json.loads(event.to_json())
    assert body["specversion"] == "1.0"
    assert body["datacontenttype"] == "application/json"
    assert body["runid"] == "run-1"


def test_runid_is_omitted_when_empty() -> None:
    assert "runid" not in json.loads(new_event("x.y", None, source="/t").to_json())


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("not json", "not valid JSON"),
        ("[1, 2]", "not a JSON object"),
        ('{"specversion": "1.0", "id": "a", "source": "/s"}', "type"),
        ('{"specversion": "0.3", "id": "a", "source": "/s", "type": "t"}', "specversion"),
        ('{"specversion": "1.0", "id": "", "source": "/s", "type": "t"}', "id"),
    ],
)
def test_malformed_events_are_input_errors(text: str, needle: str) -> None:
    with pytest.raises(InputError) as info:
        CloudEvent.from_json(text)
    assert needle in str(info.value)


def test_unserialisable_and_oversize_data_rejected() -> None:
    with pytest.raises(InputError, match="not JSON-serialisable"):
        new_event("x.y", {"s": {1, 2}}, source="/t").to_json()
    with pytest.raises(InputError, match="over the"):
        new_event("x.y", "a" * (MAX_EVENT_BYTES + 1), source="/t").to_json()


def test_type_patterns() -> None:
    assert matches("dev.pilotage.deploy.*", EventType.DEPLOY_STEP)
    assert not matches("dev.pilotage.deploy.*", EventType.SLO_BREACH)
    assert matches("*", "anything")
    assert matches(EventType.SLO_BREACH, EventType.SLO_BREACH)
