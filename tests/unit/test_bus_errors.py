"""Bus error paths that need no server: URL redaction, unreachable brokers, bad URLs, lease planning."""

from __future__ import annotations

import asyncio
import importlib.util

import pytest

from pilotage.bus.base import coerce_event, redact_url
from pilotage.bus.leases import ClaimPlanner, Lease
from pilotage.errors import BackendUnavailable, ConfigError, InputError
from pilotage.registry import backend_class


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("nats://user:s3cret@host:4222/S", "nats://user:***@host:4222/S"),
        ("kafka://user:s3cret@b1:9092,b2:9092/t", "kafka://user:***@b1:9092,b2:9092/t"),
        ("nats://token@host:4222", "nats://token@host:4222"),
        ("nats://host:4222/a@b", "nats://host:4222/a@b"),
        ("sqlite:///x.db", "sqlite:///x.db"),
    ],
)
def test_redact_url_hides_only_the_password(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_unreachable_nats_is_backend_unavailable_with_the_url_and_no_password() -> None:
    from pilotage.bus.nats import NatsBus

    bus = NatsBus("nats://pilot:s3cret@127.0.0.1:1/S")
    with pytest.raises(BackendUnavailable) as info:
        asyncio.run(bus.open())
    assert "nats://pilot:***@127.0.0.1:1/S" in str(info.value)
    assert "s3cret" not in str(info.value)
    assert info.value.url == "nats://pilot:***@127.0.0.1:1/S"  # type: ignore[attr-defined]


@pytest.mark.skipif(importlib.util.find_spec("aiokafka") is None, reason="aiokafka (extra 'kafka') not installed")
def test_unreachable_kafka_is_backend_unavailable_with_the_url_and_no_password() -> None:
    from pilotage.bus.kafka import KafkaBus

    with pytest.raises(BackendUnavailable) as info:
        asyncio.run(KafkaBus("kafka://pilot:s3cret@127.0.0.1:1/topic").open())
    assert "kafka://pilot:***@127.0.0.1:1/topic" in str(info.value)
    assert "s3cret" not in str(info.value)


@pytest.mark.parametrize("url", ["nats://", "nats://host:4222/bad.stream", "http://host:4222"])
def test_bad_nats_url_is_config_error_without_io(url: str) -> None:
    from pilotage.bus.nats import NatsBus

    with pytest.raises(ConfigError):
        NatsBus(url)


def test_registry_serves_nats_and_names_the_kafka_extra_when_missing() -> None:
    assert backend_class("bus", "nats://127.0.0.1:4222").__name__ == "NatsBus"
    if importlib.util.find_spec("aiokafka") is None:
        with pytest.raises(ConfigError, match=r"pilotage\[kafka\]"):
            backend_class("bus", "kafka://127.0.0.1:9092")
    else:
        assert backend_class("bus", "kafka://127.0.0.1:9092").__name__ == "KafkaBus"


def test_publishing_something_that_is_not_an_event_is_input_error() -> None:
    with pytest.raises(InputError, match="cannot publish a int"):
        coerce_event(42)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="not a JSON object"):
        coerce_event("[1, 2]")
    with pytest.raises(InputError, match="not valid JSON"):
        coerce_event(b"\xff\xfe")


def test_claim_planner_skips_acked_blocks_in_flight_subjects_and_bounds_the_commit() -> None:
    leases = {
        1: Lease("a", 0, 1, acked=True, subject="x"),
        2: Lease("a", 100.0, 1, subject="x"),  # in flight until t=100
        4: Lease("b", 5.0, 1, subject="y"),  # expired at t=50
    }
    planner = ClaimPlanner(leases, now=50.0, max_events=10)
    for offset, subject in [(1, "x"), (2, "x"), (3, "x"), (4, "y"), (5, None), (6, "z")]:
        planner.offer(offset, subject)
    assert planner.claimed == [4, 5, 6]  # 3 waits for 2 (same subject), 4's lease expired
    assert planner.new_committed(0, 6) == 1


def test_claim_planner_stops_at_max_and_commits_to_the_end_when_all_acked() -> None:
    planner = ClaimPlanner({}, now=0.0, max_events=2)
    assert [planner.offer(o, None) for o in (1, 2, 3)] == [True, True, False]
    done = ClaimPlanner({1: Lease("a", 0, 1, acked=True), 2: Lease("a", 0, 1, acked=True)}, 0.0, 5)
    done.offer(1, None)
    done.offer(2, None)
    assert done.claimed == [] and done.new_committed(0, 9) == 9
