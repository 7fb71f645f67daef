"""``POST /api/v1/deliveries``: hand a delivery to ``pilotage serve``, as ``pilotage deliver`` does when one serves.

The delivery is checked first (:func:`pilotage.fleet.submission.check_delivery`: managed, the revision exists, its
descriptor is valid, it is not production already), then its ``flow.queued``
(:func:`pilotage.flows.feature_delivery.queued_event`) is published to the log the control plane consumes; its
admission starts it when a place is free and no delivery of the service runs (issue 19). The answer comes at once
(202): the run's progress is in ``/runs/{run_id}``, ``/events?run=`` and the event stream.
"""

from __future__ import annotations

import asyncio
from typing import Any

from pilotage.bus.base import Bus
from pilotage.errors import ConfigError
from pilotage.settings import Settings
from pilotage.web.models import DeliveryIn

__all__ = ["submit_delivery"]


async def submit_delivery(settings: Settings, bus: Bus, body: DeliveryIn) -> dict[str, Any]:
    """Check and publish the delivery of ``body.rev`` of ``body.service``; return the Submitted dict.

    Raises:
        ConfigError: no control plane serves ``settings.home`` (nothing would run it), or the descriptor at the
            revision is invalid.
        InputError: not managed, revision not found, or already production.
    """
    from pilotage.fleet.registry import load_fleet
    from pilotage.fleet.submission import check_delivery, delivery_run
    from pilotage.flows.feature_delivery import queued_event
    from pilotage.flows.supervisor import serving_pid

    if serving_pid(settings.home) is None:
        raise ConfigError(f"no control plane serves {settings.home}", hint="start `pilotage serve` in this folder")
    fleet = await load_fleet(bus)
    managed, sha = await asyncio.to_thread(check_delivery, fleet, body.service, body.rev, body.budget_s, queued=True)
    run = delivery_run(settings, managed, body.rev, sha, commit_tests=body.commit_tests)
    event = queued_event(run)
    await bus.publish(event)
    return {
        "run_id": run.run_id,
        "service": managed.name,
        "rev": body.rev,
        "commit": sha,
        "production_commit": managed.production_commit,
        "event_id": event.id,
    }
