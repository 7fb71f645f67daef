"""Synthetic traffic: a bounded open-loop generator of GET requests, for rollouts of services with no real users.

The demo has no users, so a rollout would have nothing to measure. :class:`TrafficGenerator` sends ``rps``
GET requests per second (open loop: requests are launched on a fixed schedule whether or not earlier ones have
answered, as load generators such as wrk2 do to avoid coordinated omission) to ``base_url`` + each of ``paths``
in turn. It is bounded: at most ``max_in_flight`` requests are outstanding (a launch is skipped, and counted in
``skipped``, when the limit is reached) and it runs until :meth:`TrafficGenerator.stop` or ``duration_s``.

Each request carries a targeting key (header :data:`TARGETING_KEY_HEADER`, ``user-0`` … ``user-<N-1>``, drawn
uniformly from a pool of ``targeting_keys`` users), so a service whose release flag is split by targeting key
(:mod:`pilotage.runtime.flags`) serves a share of synthetic users with the flag on, as it would real ones.

Generators are registered by name (the deployment id) in a process-wide registry (:func:`start_traffic`,
:func:`get_traffic`, :func:`stop_traffic`) so the agent that rolls back or promotes a deployment can stop the
traffic another agent started. The registry lives in the process, like the proxies of the local runtime.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from pilotage.errors import InputError

__all__ = [
    "TARGETING_KEYS",
    "TARGETING_KEY_HEADER",
    "TrafficGenerator",
    "TrafficStats",
    "get_traffic",
    "start_traffic",
    "stop_traffic",
]

#: Default bound on outstanding requests; at 40 rps and the default 2 s timeout it is never reached by a healthy
#: service, and it caps sockets when a backend hangs.
MAX_IN_FLIGHT = 64
#: Request header naming the synthetic user (the OpenFeature targeting key of generated services).
TARGETING_KEY_HEADER = "x-targeting-key"
#: Default number of synthetic users: at 1,000 keys a 5 % release reaches 50 ± 7 of them (binomial s.d.).
TARGETING_KEYS = 1000


@dataclass
class TrafficStats:
    """Counts of a generator.

    ``sent`` requests, answers by ``statuses`` (code → count), transport ``failures`` (no HTTP answer) and
    launches ``skipped`` because ``max_in_flight`` requests were outstanding.
    """

    sent: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    failures: int = 0
    skipped: int = 0

    def to_dict(self) -> dict[str, Any]:
        """Return the counts as a JSON-serialisable dict (status codes as strings)."""
        return {
            "sent": self.sent,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "failures": self.failures,
            "skipped": self.skipped,
        }


class TrafficGenerator:
    """Open-loop GET traffic at a fixed rate.

    Args:
        base_url: where to send requests (a proxy URL, ``http://127.0.0.1:PORT``).
        paths: request paths cycled in order, e.g. ``["/orders", "/discount-codes"]``.
        rps: requests per second (> 0).
        duration_s: stop by itself after this many seconds (None: run until :meth:`stop`).
        timeout_s: per-request timeout, seconds.
        max_in_flight: bound on outstanding requests.
        targeting_keys: size of the pool of synthetic users the requests' targeting keys are drawn from.
        seed: seed of the draw (None: a different sequence each run).

    Raises:
        InputError: ``paths`` is empty, a path does not start with ``/``, ``rps`` is not positive or
            ``targeting_keys`` is below 1.
    """

    def __init__(
        self,
        base_url: str,
        paths: list[str],
        rps: float,
        *,
        duration_s: float | None = None,
        timeout_s: float = 2.0,
        max_in_flight: int = MAX_IN_FLIGHT,
        targeting_keys: int = TARGETING_KEYS,
        seed: int | None = None,
    ) -> None:
        if not paths or any(not p.startswith("/") for p in paths):
            raise InputError(f"traffic paths {paths!r} must be a non-empty list of /paths", hint="pass e.g. ['/items']")
        if rps <= 0:
            raise InputError(f"traffic rate {rps} rps must be positive", hint="set synthetic_traffic_rps > 0")
        if targeting_keys < 1:
            raise InputError(f"traffic targeting_keys {targeting_keys} must be at least 1", hint="e.g. 1000 users")
        self.targeting_keys = targeting_keys
        self._random = random.Random(seed)
        self.base_url = base_url.rstrip("/")
        self.paths = list(paths)
        self.rps = rps
        self.duration_s = duration_s
        self.timeout_s = timeout_s
        self.max_in_flight = max_in_flight
        self.stats = TrafficStats()
        self._task: asyncio.Task[None] | None = None
        self._pending: set[asyncio.Task[None]] = set()

    @property
    def running(self) -> bool:
        """True while the generator launches requests."""
        return self._task is not None and not self._task.done()

    def start(self) -> TrafficGenerator:
        """Start sending on the running loop; return self. Calling it twice does nothing."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"traffic-{self.base_url}")
        return self

    async def stop(self) -> TrafficStats:
        """Stop launching, wait for outstanding requests (at most ``timeout_s``) and return the counts. Idempotent."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        return self.stats

    async def _run(self) -> None:
        interval = 1.0 / self.rps
        started = time.monotonic()
        async with httpx.AsyncClient(timeout=self.timeout_s) as client:
            try:
                index = 0
                while self.duration_s is None or time.monotonic() - started < self.duration_s:
                    if len(self._pending) >= self.max_in_flight:
                        self.stats.skipped += 1
                    else:
                        path = self.paths[index % len(self.paths)]
                        task = asyncio.create_task(self._one(client, path))
                        self._pending.add(task)
                        task.add_done_callback(self._pending.discard)
                    index += 1
                    # schedule on the ideal timeline (no drift from slow iterations)
                    delay = started + index * interval - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
            finally:
                if self._pending:
                    await asyncio.wait(set(self._pending), timeout=self.timeout_s)
                for task in list(self._pending):
                    task.cancel()

    async def _one(self, client: httpx.AsyncClient, path: str) -> None:
        self.stats.sent += 1
        user = f"user-{self._random.randrange(self.targeting_keys)}"
        try:
            response = await client.get(self.base_url + path, headers={TARGETING_KEY_HEADER: user})
        except httpx.HTTPError:
            self.stats.failures += 1
            return
        self.stats.statuses[response.status_code] = self.stats.statuses.get(response.status_code, 0) + 1


_REGISTRY: dict[str, TrafficGenerator] = {}


def start_traffic(name: str, base_url: str, paths: list[str], rps: float, **options: Any) -> TrafficGenerator:
    """Start a :class:`TrafficGenerator` registered as ``name`` (replacing and stopping nothing: names are unique).

    Raises:
        InputError: a running generator already has that name, or the arguments are invalid.
    """
    current = _REGISTRY.get(name)
    if current is not None and current.running:
        raise InputError(f"synthetic traffic {name!r} is already running", hint="stop it first")
    generator = TrafficGenerator(base_url, paths, rps, **options).start()
    _REGISTRY[name] = generator
    return generator


def get_traffic(name: str) -> TrafficGenerator | None:
    """Return the generator registered as ``name``, or None."""
    return _REGISTRY.get(name)


async def stop_traffic(name: str) -> TrafficStats | None:
    """Stop and unregister the generator ``name``; return its counts, or None when there is none. Idempotent."""
    generator = _REGISTRY.pop(name, None)
    return await generator.stop() if generator is not None else None
