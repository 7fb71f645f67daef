"""Event-data models of services under management (issue #17): added, released to production, up, down."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator

from pilotage.catalogue.base import EventData, Obj
from pilotage.names import valid_name


class ServiceAdded(EventData):
    """A repository was put under management. `pilotage service add` → fleet state, graph.

    Attributes:
        service: the descriptor's name (unique among managed services).
        repo_path: the service's git repository (absolute).
        commit: its production commit from now on (the repository's HEAD when added).
        stable_port: the port of the service's stable address ``http://127.0.0.1:<port>``, kept across deliveries.
        descriptor: the validated ``pilotage.yaml`` at ``commit`` (schema field names).
    """

    service: Annotated[str, AfterValidator(valid_name)]
    repo_path: str
    commit: str
    stable_port: int
    descriptor: Obj


class ServiceReleased(EventData):
    """A delivery was promoted: ``commit`` is the service's production commit. Rollout agent → fleet state."""

    service: Annotated[str, AfterValidator(valid_name)]
    commit: str
    previous_commit: str
    deployment_id: str
    run_id: str


class ServiceUp(EventData):
    """The production version serves behind the stable address. Fleet keeper → `pilotage up`, `service show`.

    ``reason``: ``up`` (started), ``recreated`` (its process had died), ``woken`` (a request arrived while it was
    scaled to zero; ``wake_s`` = seconds from that request to the version answering), ``released`` (a delivery's
    new version promoted: it serves the stable address now; published by the rollout agent).
    """

    service: str
    commit: str
    url: str
    instance_url: str
    pid: int
    reason: str
    wake_s: float | None = None


class ServiceDown(EventData):
    """The production version stopped. Fleet keeper → `service show`.

    ``reason``: ``down`` (`pilotage down`, the control plane stopped), ``scaled_to_zero`` (idle; the stable
    address stays open and wakes it on the next request) or ``failed`` (it did not prepare or start: ``error``).
    """

    service: str
    commit: str
    url: str
    reason: str
    error: str | None = None
