"""Fault injection for tests and demos: error-rate, latency-shift and crash faults, per version, at run time.

Contract of a generated service (``codegen/templates/observe.py.tmpl``) and of ``tests/fixtures/tiny_service``:

=================================  ===============================================================================
``PILOTAGE_FAULT_ERROR_RATE``      0..1 at start: that share of requests (not /metrics, /healthz) answer 500
``PILOTAGE_FAULT_LATENCY_MS``      ms at start: every request is delayed that long (a latency shift)
``PILOTAGE_FAULT_CRASH_ON_START``  ``1``: the app raises at startup, the process exits (crash fault)
``PILOTAGE_FAULT_SCOPE``           ``flag``: error-rate and latency faults hit only requests whose release flag is
                                   not off (generated services, :mod:`pilotage.runtime.flags`)
``PILOTAGE_FAULT_ADMIN``           ``1``: enables ``GET``/``PUT /__pilotage/faults`` (off by default: a production
                                   service must not let anyone switch faults on)
=================================  ===============================================================================

``PUT /__pilotage/faults`` with JSON ``{"error_rate": 0.05, "latency_ms": 200, "crash": false}`` (each key
optional) switches the faults of that one process immediately; ``crash: true`` makes it exit 50 ms after
answering. The admin path is never counted in the metrics nor itself faulted. :func:`set_faults` is the client.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from pilotage.errors import BackendUnavailable, InputError
from pilotage.httpclient import async_client

__all__ = ["FAULTS_PATH", "FaultSpec", "fault_env", "get_faults", "set_faults"]

#: Admin path of the fault switch on a service instance.
FAULTS_PATH = "/__pilotage/faults"


@dataclass(frozen=True)
class FaultSpec:
    """Faults of one version: ``error_rate`` (0..1), ``latency_ms`` (added delay per request) and ``crash``.

    Raises:
        InputError: a value out of range.
    """

    error_rate: float = 0.0
    latency_ms: float = 0.0
    crash: bool = False

    def __post_init__(self) -> None:
        if not 0.0 <= self.error_rate <= 1.0:
            raise InputError(f"fault error_rate {self.error_rate} is not in 0..1", hint="e.g. 0.05 for 5 %")
        if self.latency_ms < 0:
            raise InputError(f"fault latency_ms {self.latency_ms} is negative", hint="e.g. 200")

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON body of ``PUT /__pilotage/faults``."""
        return {"error_rate": self.error_rate, "latency_ms": self.latency_ms, "crash": self.crash}


def fault_env(spec: FaultSpec, *, admin: bool = False) -> dict[str, str]:
    """Environment variables that start a version with ``spec`` (``crash`` → crash on start) and the admin switch."""
    env = {"PILOTAGE_FAULT_ERROR_RATE": str(spec.error_rate), "PILOTAGE_FAULT_LATENCY_MS": str(spec.latency_ms)}
    if spec.crash:
        env["PILOTAGE_FAULT_CRASH_ON_START"] = "1"
    if admin:
        env["PILOTAGE_FAULT_ADMIN"] = "1"
    return env


async def _call(method: str, url: str, body: dict[str, Any] | None, timeout_s: float) -> dict[str, Any]:
    target = url.rstrip("/") + FAULTS_PATH
    try:
        async with async_client(timeout=timeout_s) as client:
            response = await client.request(method, target, json=body)
    except httpx.HTTPError as exc:
        raise BackendUnavailable(
            f"cannot reach {target}: {type(exc).__name__}", hint="is the version running?", url=target
        ) from exc
    if response.status_code == 404:
        raise InputError(
            f"{target} answered 404: the fault switch is disabled", hint="start the version with PILOTAGE_FAULT_ADMIN=1"
        )
    if response.status_code != 200:
        raise BackendUnavailable(f"{target} answered HTTP {response.status_code}", hint="check the service log")
    data: dict[str, Any] = response.json()
    return data


async def set_faults(instance_url: str, spec: FaultSpec, *, timeout_s: float = 2.0) -> dict[str, Any]:
    """Switch the faults of the version at ``instance_url`` now; return the state it reports.

    With ``spec.crash`` the process exits right after answering.

    Raises:
        InputError: the switch is disabled (no ``PILOTAGE_FAULT_ADMIN=1``).
        BackendUnavailable: the instance cannot be reached or answered an error.
    """
    return await _call("PUT", instance_url, spec.to_dict(), timeout_s)


async def get_faults(instance_url: str, *, timeout_s: float = 2.0) -> dict[str, Any]:
    """Return the faults the version at ``instance_url`` currently injects.

    Raises:
        InputError: the switch is disabled. BackendUnavailable: unreachable.
    """
    return await _call("GET", instance_url, None, timeout_s)
