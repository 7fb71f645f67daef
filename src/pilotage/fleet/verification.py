"""Consumer verification (issue #19): each consumer's own tests run against a provider's new version before it ships.

Consumer-driven contracts without a broker: the consumer's contract is its own test suite, run as its production
descriptor's ``test`` command (:func:`pilotage.testing.own_tests.run_own_tests`) from its prepared production
checkout (:func:`pilotage.fleet.checkout.prepare`), with the provider's variable (``consumes[i].env``) set to the
address of the provider's **new** version; every other variable is the one the testing stage gives a test run
(:func:`pilotage.fleet.workload.instance_env` with ``scratch_env``, the other providers' stable addresses).

Where the new version runs: a scratch instance of the delivered commit started for the verification
(:func:`verify_consumers`: version ``verify-<sha12>``, ``scratch_env``, a fresh data folder), as the testing stage
starts one for the provider's own tests. Not the blue-green preview: a preview exists only for a blue-green
rollout, after the deploy gate, and it runs on production's data folder (a consumer's tests would write into
production); a failed verification there would also have to stop a rollout that had started. Not the testing
stage's own instance either: by then schemathesis and the spec-derived tests have written into it.

A consumer whose tests fail (or error, or run past ``settings.consumer_verification_timeout_s``: the process group
is killed) fails the verification, named with its failing tests (pytest's ``FAILED``/``ERROR`` lines of the
command's output, else the command itself); a consumer whose descriptor has no ``test`` is recorded as not verified
(``passed`` None) and does not block. :func:`summary_line` gives the one line the testing verdict quotes.

The graph records each run (:func:`record_verifications`): ``Commit:<consumer sha> -VERIFIED-> Commit:<provider
sha>`` with ``{consumer, provider, passed, failed_tests, timed_out, time}`` — what Pact's ``can-i-deploy``
answers — and ``Service -HAS_COMMIT-> Commit`` for both commits, through which :func:`verifications_of` finds them
for ``pilotage service show`` (a provider commit that never shipped included).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pilotage.fleet.checkout import prepare
from pilotage.fleet.deps import consumers_of
from pilotage.fleet.descriptor import ServiceDescriptor, render_env
from pilotage.fleet.registry import ManagedService, live_descriptors
from pilotage.fleet.workload import instance_env, provider_addresses
from pilotage.graph.base import Graph, node_id
from pilotage.runtime.base import InstanceRuntime, Workload, scratch_workload
from pilotage.settings import Settings
from pilotage.testing.own_tests import OWN_TESTS_NODE, run_own_tests

__all__ = [
    "VERIFIED",
    "Verification",
    "failed_tests_in",
    "record_verifications",
    "summary_line",
    "verifications_of",
    "verify_consumer",
    "verify_consumers",
]

#: The graph edge ``Commit:<consumer sha> -VERIFIED-> Commit:<provider sha>``.
VERIFIED = "VERIFIED"
#: pytest's short summary lines naming a failing test (``FAILED tests/t.py::test_x - AssertionError``).
_FAILED_LINE = re.compile(r"^(?:FAILED|ERROR) (?P<id>\S+)")
#: Bytes of a test command's log read for its failing tests (its end: pytest prints the summary last).
_LOG_BYTES = 256 * 1024
#: Failing tests named per consumer in a summary line.
_NAMED = 5
#: Verifications listed per service by :func:`verifications_of` (newest first).
_SHOWN = 20


@dataclass(frozen=True)
class Verification:
    """One consumer's tests against one provider commit.

    Attributes:
        consumer, consumer_commit: the consumer and its production commit (whose tests ran).
        provider, provider_commit: the provider and the delivered commit they ran against.
        env: the consumer's variable that carried the provider's address.
        passed: True/False; None when the consumer has no ``test`` command (not verified, not blocking).
        failed_tests: pytest ids of the failing tests, or the command when it names none (a timeout, a crash).
        timed_out: the command ran past its budget and was killed.
        duration_s: the command's wall time, seconds.
        message: why it failed ("" when it passed), e.g. ``killed after 5.0 s``.
        log_path: the command's output.
    """

    consumer: str
    consumer_commit: str
    provider: str
    provider_commit: str
    env: str
    passed: bool | None
    failed_tests: list[str] = field(default_factory=list)
    timed_out: bool = False
    duration_s: float = 0.0
    message: str = ""
    log_path: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON view (the ``contract.verified`` event's data)."""
        return asdict(self)

    def line(self) -> str:
        """``digest@1a2b3c4d5e6f (NOTES_URL): tests/t.py::test_x, …`` or ``… killed after 5.0 s``."""
        where = f"{self.consumer}@{self.consumer_commit[:12]} ({self.env})"
        if self.timed_out:
            return f"{where}: its test command hung: {self.message}"
        named = ", ".join(self.failed_tests[:_NAMED]) + (
            f" and {len(self.failed_tests) - _NAMED} more" if len(self.failed_tests) > _NAMED else ""
        )
        return f"{where}: {named}"


def failed_tests_in(log_path: Path) -> list[str]:
    """Test ids of pytest's ``FAILED``/``ERROR`` summary lines at the end of ``log_path`` (``[]``: none)."""
    try:
        with log_path.open("rb") as handle:
            handle.seek(0, 2)
            handle.seek(max(0, handle.tell() - _LOG_BYTES))
            text = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return []
    found = [m["id"] for m in map(_FAILED_LINE.match, text.splitlines()) if m]
    return list(dict.fromkeys(found))


def summary_line(verifications: list[Verification]) -> str:
    """One line for the verdict: ``consumer verification failed: A (...): t1, t2; B (...): …``; "" when none failed."""
    failed = [v for v in verifications if v.passed is False]
    if not failed:
        return ""
    provider = failed[0].provider
    return f"consumer verification of {provider} failed: " + "; ".join(v.line() for v in failed)


async def verify_consumer(
    settings: Settings,
    consumer: ManagedService,
    *,
    provider: str,
    provider_commit: str,
    provider_url: str,
    addresses: Mapping[str, str],
    out_dir: Path,
    timeout_s: float,
) -> Verification:
    """Run ``consumer``'s production ``test`` command with its ``provider`` variable set to ``provider_url``.

    Args:
        settings: for the consumer's prepared folders (``<home>/services/<consumer>``).
        consumer: the consuming service (its production commit and descriptor).
        provider: the provider's name.
        provider_commit: its new commit.
        provider_url: the address serving that commit.
        addresses: every managed service's stable address (the consumer's other providers).
        out_dir: this consumer's artefacts (``own-tests.log``, its ``{data}`` folder).
        timeout_s: the command's budget (``settings.consumer_verification_timeout_s``).

    Raises:
        ConfigError: the consumer's prepare step fails, or its descriptor no longer validates.
        BackendError: git or ``/bin/sh`` could not run.
    """
    descriptor = consumer.production_descriptor()
    sha = consumer.production_commit
    env_name = next(c.env for c in descriptor.consumes if c.service == provider)
    base = Verification(consumer.name, sha, provider, provider_commit, env_name, passed=None)
    if not descriptor.test:
        return replace(base, message="its pilotage.yaml has no `test` command")
    root = settings.path_in_home("services").resolve() / consumer.name
    ready = await asyncio.to_thread(prepare, consumer.repo_path, sha, descriptor, root)
    env = instance_env(descriptor, {**addresses, provider: provider_url}, scratch=True)
    rendered = render_env(env, prepared=ready.prepared, data=out_dir / "data")
    unit = await run_own_tests(
        descriptor.test, ready.checkout, out_dir, prepared=ready.prepared, env=rendered, timeout_s=timeout_s
    )
    if not (unit["failed"] or unit["errors"]):
        return replace(base, passed=True, duration_s=unit["duration_s"], log_path=unit["log_path"])
    named = failed_tests_in(Path(unit["log_path"])) or [f"{OWN_TESTS_NODE} `{unit['command']}`"]
    why = f"killed after {timeout_s:g} s" if unit["timed_out"] else f"exited with {unit['exit_code']}"
    return replace(
        base, passed=False, failed_tests=named, timed_out=bool(unit["timed_out"]), duration_s=unit["duration_s"],
        message=f"`{unit['command']}` {why}", log_path=unit["log_path"],
    )  # fmt: skip


async def verify_consumers(
    runtime: InstanceRuntime,
    settings: Settings,
    fleet: dict[str, ManagedService],
    *,
    provider: str,
    commit: str,
    head_dir: Path,
    descriptor: ServiceDescriptor,
    prepared: str,
    out_dir: Path,
) -> list[Verification]:
    """Verify every live consumer of ``provider`` against commit ``commit`` (see the module docstring).

    Nothing is started when the provider has no consumer (``[]``). The new version runs once, as
    ``Workload(provider, "verify-<sha12>", head_dir, env=instance_env(descriptor, addresses, scratch=True), …)``
    with a fresh data folder ``<out_dir>/provider-data``, and is stopped whatever happens; the consumers run one
    after the other (sorted by name), each in ``<out_dir>/<consumer>/``.

    Args:
        runtime: starts the provider's new version.
        settings: ``consumer_verification_timeout_s``, ``service_ready_timeout_s``, the state folder.
        fleet: the managed services (their production descriptors say who consumes ``provider``).
        provider: the delivered service.
        commit: its new commit (full sha).
        head_dir: that commit's checkout.
        descriptor: that commit's ``pilotage.yaml``.
        prepared: its prepared folder ("" without a prepare step).
        out_dir: the verification's artefacts (``<artifacts>/tests/<sha12>/consumers``).

    Raises:
        ConfigError: the new version does not start, or a consumer cannot be prepared.
        BackendError: a tool could not run.
    """
    names = list(dict.fromkeys(c.service for c in consumers_of(provider, live_descriptors(fleet), None)))
    if not names:
        return []
    addresses = provider_addresses(fleet)
    workload = Workload(
        provider, f"verify-{commit[:12]}", Path(head_dir), env=instance_env(descriptor, addresses, scratch=True),
        command=descriptor.start, prepared=prepared, health_path=descriptor.health,
        data_dir=str(out_dir / "provider-data"),
    )  # fmt: skip
    ready_s = descriptor.ready_timeout_s or settings.service_ready_timeout_s
    out = []
    async with scratch_workload(runtime, workload, ready_timeout_s=ready_s) as instance:
        for name in names:
            out.append(
                await verify_consumer(
                    settings,
                    fleet[name],
                    provider=provider,
                    provider_commit=commit,
                    provider_url=instance.url,
                    addresses=addresses,
                    out_dir=out_dir / name,
                    timeout_s=settings.consumer_verification_timeout_s,
                )  # fmt: skip
            )
    return out


def record_verifications(graph: Graph, verifications: list[Verification], at: datetime | None = None) -> None:
    """Write ``Commit:<consumer sha> -VERIFIED-> Commit:<provider sha>`` per run (not-run ones are skipped).

    Edge props: ``{consumer, provider, passed, failed_tests, timed_out, time}`` (``time``: ISO 8601 UTC); a later
    verification of the same pair of commits replaces them.
    """
    when = (at or datetime.now(UTC)).isoformat(timespec="seconds")
    for v in verifications:
        if v.passed is None:
            continue
        src = _commit_of(graph, v.consumer, v.consumer_commit)
        dst = _commit_of(graph, v.provider, v.provider_commit)
        props = {"consumer": v.consumer, "provider": v.provider, "passed": v.passed,
                 "failed_tests": v.failed_tests, "timed_out": v.timed_out, "time": when}  # fmt: skip
        graph.upsert_edge(src.id, VERIFIED, dst.id, props)


def _commit_of(graph: Graph, service: str, sha: str) -> Any:
    """``Commit:<sha>`` (props ``sha``, ``service``) and ``Service:<service> -HAS_COMMIT-> Commit:<sha>``."""
    graph.upsert_node("Service", service, {"name": service})
    commit = graph.upsert_node("Commit", sha, {"sha": sha, "service": service})
    graph.upsert_edge(node_id("Service", service), "HAS_COMMIT", commit.id)
    return commit


def verifications_of(graph: Graph, service: str) -> dict[str, list[dict[str, Any]]]:
    """The VERIFIED edges of ``service``'s commits (``HAS_COMMIT``), newest first, then by name (20 each way).

    Args:
        graph: the knowledge graph.
        service: the service shown.

    Returns:
        ``{"as_provider": [{consumer, consumer_commit, provider_commit, passed, failed_tests, timed_out, time}],
        "as_consumer": [{provider, provider_commit, consumer_commit, …}]}``.
    """
    found: dict[str, list[dict[str, Any]]] = {"as_provider": [], "as_consumer": []}
    if graph.get_node(node_id("Service", service)) is None:
        return found
    for _edge, commit in graph.neighbours(node_id("Service", service), "HAS_COMMIT", "out"):
        sha = str(commit.props.get("sha") or commit.id.removeprefix("Commit:"))
        for edge, other in graph.neighbours(node_id("Commit", sha), VERIFIED, "in"):
            if edge.props.get("provider") == service:
                found["as_provider"].append(_row(edge.props, str(other.props.get("sha")), sha))
        for edge, other in graph.neighbours(node_id("Commit", sha), VERIFIED, "out"):
            if edge.props.get("consumer") == service:
                found["as_consumer"].append(_row(edge.props, sha, str(other.props.get("sha"))))
    for rows in found.values():
        rows.sort(key=lambda r: (str(r["consumer"]), str(r["provider"])))
        rows.sort(key=lambda r: str(r["time"]), reverse=True)  # stable: one time's rows stay in name order
        del rows[_SHOWN:]
    return found


def _row(props: dict[str, Any], consumer_commit: str, provider_commit: str) -> dict[str, Any]:
    keys = ("consumer", "provider", "passed", "failed_tests", "timed_out", "time")
    return {k: props.get(k) for k in keys} | {"consumer_commit": consumer_commit, "provider_commit": provider_commit}
