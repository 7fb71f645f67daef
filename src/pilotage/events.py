"""CloudEvents 1.0 envelope and the catalogue of Pilotage event types.

The envelope follows the CloudEvents 1.0 specification (https://github.com/cloudevents/spec, "core" and the
JSON format): required ``specversion``, ``id``, ``source``, ``type``; optional ``subject``, ``time``,
``datacontenttype`` and ``data``. Pilotage adds one extension attribute, ``runid`` (CloudEvents extension names
are lower-case alphanumerics), which ties every event of one lifecycle run together.

Event type names are reverse-DNS: ``dev.pilotage.<area>.<verb>``, e.g. ``dev.pilotage.deploy.started``.
Type patterns used by subscribers are shell-style globs: ``dev.pilotage.deploy.*`` or ``*``.
"""

from __future__ import annotations

import fnmatch
import json
import uuid
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from pilotage.errors import InputError

__all__ = [
    "MAX_EVENT_BYTES",
    "CloudEvent",
    "EventType",
    "matches",
    "new_event",
]

#: Largest serialised event accepted by ``publish`` (bytes). Large artefacts go to files; events carry paths.
MAX_EVENT_BYTES = 1024 * 1024


class EventType:
    """Names of every event type Pilotage emits (``dev.pilotage.`` + area + verb).

    The ``data`` of each is a model in :mod:`pilotage.catalogue` (``docs/events-contract.md`` is generated
    from them): a new type is one constant here, one model and one registry line there.
    """

    PREFIX = "dev.pilotage."
    FLOW_QUEUED = "dev.pilotage.flow.queued"
    FLOW_STARTED = "dev.pilotage.flow.started"
    FLOW_COMPLETED = "dev.pilotage.flow.completed"
    FLOW_FAILED = "dev.pilotage.flow.failed"
    AGENT_FAILED = "dev.pilotage.agent.failed"
    DECISION = "dev.pilotage.decision.made"
    SPEC_PROPOSED = "dev.pilotage.spec.proposed"
    SPEC_VALIDATED = "dev.pilotage.spec.validated"
    CODE_GENERATED = "dev.pilotage.code.generated"
    PR_OPENED = "dev.pilotage.pr.opened"
    POLICY_EVALUATED = "dev.pilotage.policy.evaluated"
    TESTS_COMPLETED = "dev.pilotage.tests.completed"
    PERF_MEASURED = "dev.pilotage.perf.measured"
    PERF_ADVICE = "dev.pilotage.perf.advice"
    DEPLOY_REQUESTED = "dev.pilotage.deploy.requested"
    DEPLOY_STARTED = "dev.pilotage.deploy.started"
    DEPLOY_RESUMED = "dev.pilotage.deploy.resumed"
    DEPLOY_STEP = "dev.pilotage.deploy.step"
    DEPLOY_PROMOTED = "dev.pilotage.deploy.promoted"
    DEPLOY_ROLLED_BACK = "dev.pilotage.deploy.rolled_back"
    DEPLOY_PAUSED = "dev.pilotage.deploy.paused"
    DEPLOY_STANDBY_RELEASED = "dev.pilotage.deploy.standby_released"
    DEPLOY_RESUMED = "dev.pilotage.deploy.resumed"
    SLO_EVALUATED = "dev.pilotage.slo.evaluated"
    SLO_BREACH = "dev.pilotage.slo.breach"
    INCIDENT_OPENED = "dev.pilotage.incident.opened"
    ENV_SCALED_DOWN = "dev.pilotage.env.scaled_down"
    MODEL_UPDATED = "dev.pilotage.model.updated"
    CONTROL_PLANE_RECOVERED = "dev.pilotage.controlplane.recovered"
    # --- issue 17: services under management (pilotage.fleet)
    SERVICE_ADDED = "dev.pilotage.service.added"
    SERVICE_RELEASED = "dev.pilotage.service.released"
    SERVICE_UP = "dev.pilotage.service.up"
    SERVICE_DOWN = "dev.pilotage.service.down"
    # --- issue 19: releases of several services (pilotage.flows.release)
    RELEASE_PLANNED = "dev.pilotage.release.planned"
    RELEASE_COMPLETED = "dev.pilotage.release.completed"
    RELEASE_ROLLED_BACK = "dev.pilotage.release.rolled_back"
    CONTRACT_VERIFIED = "dev.pilotage.contract.verified"  # issue 19: a consumer's tests against a provider commit
    # --- issue 6: governance and human approval (signed: pilotage.policy.approval)
    SECURITY_SCANNED = "dev.pilotage.security.scanned"
    APPROVAL_REQUESTED = "dev.pilotage.approval.requested"
    APPROVAL_GRANTED = "dev.pilotage.approval.granted"
    APPROVAL_DENIED = "dev.pilotage.approval.denied"
    APPROVAL_EXPIRED = "dev.pilotage.approval.expired"
    APPROVAL_REJECTED = "dev.pilotage.approval.rejected"
    # --- issue 8: coordination. Contract-net (FIPA SC00029H performatives); a call for proposals is published as
    # CNET_CFP + "." + capability (topic partitioning: a worker reads only the calls for what it can do).
    CNET_CFP = "dev.pilotage.cnet.cfp"
    CNET_PROPOSE = "dev.pilotage.cnet.propose"
    CNET_REFUSE = "dev.pilotage.cnet.refuse"
    CNET_ACCEPT = "dev.pilotage.cnet.accept"
    CNET_REJECT = "dev.pilotage.cnet.reject"
    CNET_CANCEL = "dev.pilotage.cnet.cancel"
    CNET_DONE = "dev.pilotage.cnet.done"
    CNET_FAILURE = "dev.pilotage.cnet.failure"
    WORKER_HEARTBEAT = "dev.pilotage.worker.heartbeat"
    WORKER_STOPPED = "dev.pilotage.worker.stopped"
    MARKET_AUCTION_OPENED = "dev.pilotage.market.auction_opened"
    MARKET_BID = "dev.pilotage.market.bid"
    MARKET_AUCTION_CLOSED = "dev.pilotage.market.auction_closed"
    MARKET_RELEASED = "dev.pilotage.market.released"


def matches(pattern: str, event_type: str) -> bool:
    """Return True when ``event_type`` matches the glob ``pattern`` (``*`` matches everything)."""
    return pattern == "*" or pattern == event_type or fnmatch.fnmatchcase(event_type, pattern)


class CloudEvent(BaseModel):
    """One CloudEvents 1.0 event, immutable.

    Attributes:
        id: unique per source (a UUID4 by default).
        source: URI-reference of the producer, e.g. ``/pilotage/agents/design``.
        type: reverse-DNS event type, see :class:`EventType`.
        subject: what the event is about (Pilotage uses the service name).
        time: RFC 3339 timestamp (UTC).
        datacontenttype: always ``application/json`` for Pilotage events.
        data: JSON-serialisable payload.
        runid: extension attribute: the lifecycle run the event belongs to ("" when none).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    specversion: str = "1.0"
    id: str = Field(default_factory=lambda: str(uuid.uuid4()))
    source: str
    type: str
    subject: str | None = None
    time: str = Field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="microseconds"))
    datacontenttype: str = "application/json"
    data: Any = None
    runid: str = ""

    @field_validator("specversion")
    @classmethod
    def _v1(cls, value: str) -> str:
        if value != "1.0":
            raise ValueError(f"specversion must be '1.0', got {value!r}")
        return value

    @field_validator("id", "source", "type")
    @classmethod
    def _non_empty(cls, value: str) -> str:
        if not value:
            raise ValueError("must be a non-empty string")
        return value

    @field_validator("runid")
    @classmethod
    def _extension_name_rules(cls, value: str) -> str:
        if len(value) > 128:
            raise ValueError("runid longer than 128 characters")
        return value

    def to_json(self) -> str:
        """Serialise to the CloudEvents JSON format (one line, UTF-8 text).

        Raises:
            InputError: ``data`` is not JSON-serialisable or the event exceeds :data:`MAX_EVENT_BYTES`.
        """
        body = self.model_dump(exclude_none=True)
        if not self.runid:
            body.pop("runid", None)
        try:
            text = json.dumps(body, separators=(",", ":"), allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise InputError(
                f"event {self.type} {self.id}: data is not JSON-serialisable: {exc}",
                hint="put only str/int/float/bool/None/list/dict in event data",
                event_id=self.id,
            ) from exc
        if len(text.encode()) > MAX_EVENT_BYTES:
            raise InputError(
                f"event {self.type} {self.id} is {len(text.encode())} bytes, over the {MAX_EVENT_BYTES}-byte limit",
                hint="write large artefacts to a file and put its path in the event",
                event_id=self.id,
            )
        return text

    @classmethod
    def from_json(cls, text: str | bytes) -> CloudEvent:
        """Parse one event from CloudEvents JSON.

        Raises:
            InputError: not JSON, or not a valid CloudEvents 1.0 event.
        """
        try:
            body = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InputError(f"event is not valid JSON: {exc}", hint="send CloudEvents 1.0 JSON") from exc
        return cls.from_dict(body)

    @classmethod
    def from_dict(cls, body: Any) -> CloudEvent:
        """Build an event from a decoded CloudEvents JSON object.

        Raises:
            InputError: a required attribute is missing or has the wrong type.
        """
        if not isinstance(body, dict):
            raise InputError("event is not a JSON object", hint="send CloudEvents 1.0 JSON")
        try:
            return cls.model_validate(body)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "event"
            raise InputError(
                f"not a CloudEvents 1.0 event: {where}: {first['msg']}",
                hint="required attributes are specversion='1.0', id, source, type",
            ) from exc


def new_event(
    type: str,
    data: Any,
    *,
    source: str,
    subject: str | None = None,
    runid: str = "",
) -> CloudEvent:
    """Create a Pilotage event with a fresh id and the current UTC time."""
    return CloudEvent(type=type, data=data, source=source, subject=subject, runid=runid)
