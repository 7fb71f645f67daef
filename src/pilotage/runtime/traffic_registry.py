"""The data plane's synthetic traffic, by name: start, hold, restart and stop a rollout's generators.

Generators (:class:`~pilotage.runtime.traffic.TrafficGenerator`) are registered by name (the deployment id, or
``<id>#preview``) so the agent that rolls back or promotes a deployment can stop the traffic another agent
started. They run on the data plane, never on the caller's loop: in the data-plane child process when this process
has one (:func:`pilotage.runtime.dataplane_process.current`, the CLI's control plane), else on the data plane's
thread (:data:`~pilotage.runtime.dataplane.DATA_PLANE`). Every function here has the same meaning in both; only
:func:`get_traffic` (the generator object) is for the thread's registry alone.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

from pilotage.errors import InputError
from pilotage.runtime.dataplane import DATA_PLANE
from pilotage.runtime.dataplane_process import current as data_plane_process
from pilotage.runtime.traffic import TrafficGenerator, TrafficStats
from pilotage.testing.credentials import PRINCIPAL_ENV

__all__ = [
    "get_traffic",
    "hold_traffic",
    "restart_traffic",
    "running_traffic",
    "start_traffic",
    "stop_traffic",
    "traffic_unwritten",
]

_REGISTRY: dict[str, TrafficGenerator] = {}


async def start_traffic(
    name: str, base_url: str, traffic: list[str] | Mapping[str, Any], rps: float, **options: Any
) -> TrafficGenerator | None:
    """Start a :class:`TrafficGenerator` on ``traffic`` (a plan or paths) registered as ``name``.

    Its requests are probes (:data:`~pilotage.runtime.proxy.PROBE_HEADER`): the route they go through splits them
    evenly among its versions with a positive weight, whatever the step's weight (the judge's evidence; users'
    requests follow the weights). The plan is checked here first; the generator reads the plan's credentials and
    the test principal from this process's environment (``options["environ"]``, default ``os.environ``); the
    data-plane process is sent those variables alone (:func:`_traffic_environ`), never the rest. Names are unique:
    nothing is replaced.

    Returns:
        The generator (data plane thread), or None when the data-plane process runs it.

    Raises:
        InputError: a running generator already has that name, or the arguments are invalid.
    """
    options = {**options, "probe": True}  # a rollout's evidence: split evenly among the route's live versions
    remote = data_plane_process()
    if remote is not None:
        TrafficGenerator(base_url, traffic, rps, **options)  # invalid arguments raise here, in the caller
        options = {**options, "environ": _traffic_environ(traffic, options.get("environ"))}
        await remote.call("traffic.start", name=name, base_url=base_url, traffic=traffic, rps=rps, options=options)
        return None
    current = _REGISTRY.get(name)
    if current is not None and current.running:
        raise InputError(f"synthetic traffic {name!r} is already running", hint="stop it first")
    generator = TrafficGenerator(base_url, traffic, rps, **options).start_on(DATA_PLANE.loop())
    _REGISTRY[name] = generator
    return generator


def _traffic_environ(traffic: Any, environ: Mapping[str, str] | None) -> dict[str, str]:
    """The variables of ``environ`` (default ``os.environ``) a generator of ``traffic`` reads.

    The test principal and the variable the plan's ``credentials`` name
    (:class:`~pilotage.runtime.traffic.TrafficGenerator`).
    """
    source = os.environ if environ is None else environ
    names = {PRINCIPAL_ENV}
    creds = traffic.get("credentials") if isinstance(traffic, Mapping) else None
    if isinstance(creds, Mapping) and creds.get("env"):
        names.add(str(creds["env"]))
    return {name: source[name] for name in sorted(names) if name in source}


def get_traffic(name: str) -> TrafficGenerator | None:
    """Return the generator registered as ``name`` on this process's data plane thread, or None."""
    return _REGISTRY.get(name)


def running_traffic() -> list[str]:
    """Names of the generators registered on this process's data plane thread."""
    return list(_REGISTRY)


async def hold_traffic(names: Iterable[str], held: bool) -> list[str]:
    """Hold (``held`` True) or release the registered generators ``names``; return the names found.

    A held generator launches nothing (requests in flight finish) and keeps its counts and created items; released,
    it starts again at its rate from that moment. The rollout's analysis slot holds a deployment's traffic while
    the step waits for a slot and releases it while the step is analysed (:mod:`pilotage.rollout.analysis_slot`):
    rollouts not being judged put no synthetic load on a shared machine. Names not registered are skipped.
    """
    remote = data_plane_process()
    if remote is not None:
        found: list[str] = await remote.call("traffic.hold", names=list(names), held=held)
        return found
    found = [name for name in names if name in _REGISTRY]
    for name in found:
        _REGISTRY[name].held = held
    return found


async def restart_traffic(
    name: str, traffic: list[str] | Mapping[str, Any], unwritten: Iterable[str] = ()
) -> TrafficGenerator | None:
    """Make the registered generator ``name`` send ``traffic`` from now on; return it.

    ``unwritten``: operations the version it now reaches answered 501 to another generator (blue-green's preview):
    not sent (:meth:`TrafficGenerator.skip_unwritten`), so the watch does not count them again as 5xx.

    The generator is stopped and a new one registered under the same name, at the same address, rate and bounds,
    **held** when the old one was (:func:`hold_traffic` goes on working by name) and counting on from the old
    one's counts: :func:`stop_traffic` returns the sum of both plans' requests. Items the old plan created are not
    carried over. Nothing happens when it already sends ``traffic`` (idempotent); when it is stopped meanwhile
    (:func:`stop_traffic`, e.g. a rollback), nothing is started.

    Returns:
        The generator now registered; None when there is none, or when the data-plane process runs it.

    Raises:
        InputError: ``traffic`` is not a valid plan (the old generator keeps running).
    """
    remote = data_plane_process()
    if remote is not None:
        await remote.call("traffic.restart", name=name, traffic=traffic, unwritten=sorted(set(unwritten)))
        return None
    old = _REGISTRY.get(name)
    if old is None or old.traffic == traffic:
        return old
    new = old.with_traffic(traffic)
    new.skip_unwritten(unwritten)
    new.stats = await DATA_PLANE.run(old.stop())
    if _REGISTRY.get(name) is not old:  # stopped (or replaced) while it stopped: starting one would leak it
        return None
    new.held = old.held  # read after the stop: a hold set meanwhile is kept
    _REGISTRY[name] = new.start_on(DATA_PLANE.loop())
    return new


async def traffic_unwritten(name: str) -> set[str]:
    """The operations generator ``name`` found unwritten (answered 501); empty when there is no such generator."""
    remote = data_plane_process()
    if remote is not None:
        return set(await remote.call("traffic.unwritten", name=name))
    generator = _REGISTRY.get(name)
    return set(generator.unwritten) if generator is not None else set()


async def stop_traffic(name: str) -> TrafficStats | None:
    """Stop and unregister the generator ``name``; return its counts, or None when there is none. Idempotent."""
    remote = data_plane_process()
    if remote is not None:
        counts = await remote.call("traffic.stop", name=name)
        return None if counts is None else TrafficStats.from_dict(counts)
    generator = _REGISTRY.pop(name, None)
    return await DATA_PLANE.run(generator.stop()) if generator is not None else None
