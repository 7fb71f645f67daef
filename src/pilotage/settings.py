"""Settings: backend URLs and options, read only at the application edge (the CLI, the control plane).

Sources, later ones winning: the defaults below, ``pilotage.toml`` in the working directory (a ``[pilotage]``
table, or top-level keys), then environment variables ``PILOTAGE_<FIELD>`` (upper case), e.g.
``PILOTAGE_BUS_URL=nats://127.0.0.1:4222``.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pilotage.errors import ConfigError
from pilotage.secrets import MIN_ENV_SECRET_CHARS, environment_secrets, register_secrets, url_password

__all__ = ["Settings", "load_settings"]

#: Upper bounds of numeric settings (issue #15, finding 8): seconds in an hour and a day, and the largest count.
_HOUR_S = 3600
_DAY_S = 86_400
_MAX_COUNT = 1_000_000


class Settings(BaseModel):
    """Every option Pilotage reads. Units are in the names (``_s`` seconds, ``_usd`` US dollars).

    Defaults and their sources:
        slo_error_rate: 0.05 — a canary may fail at most 5% of requests during a rollout step (a 95%
            availability objective over the short rollout window; the long-run SLO lives in slo.yaml later).
        canary_steps_percent: 10/25/50/100 — Argo Rollouts' documented example canary steps.
        idle_after_s: 7200 — 2 h without a request marks an environment idle (issue #2).
        prices_usd_per_hour: AWS EC2 on-demand Linux, us-east-1, t3.small/medium/large (public price list).
        metrics_source_url: ``scrape:`` — SLIs scraped from each version's /metrics; ``prometheus://host:9090``
            reads them with PromQL instead (``pilotage.observe.prometheus``).
        burn_rate_time_scale: 1/720 — SRE Workbook ch. 5 alert windows scaled for rollouts (1 h → 5 s).
        judge_alpha: 0.01 — false-alarm budget of one rollout step: the chance that the canary judge fails identical
            versions however long the step is watched (sequential tests, Ville's inequality; issue 21's target).
        judge_latency_tolerance: 0.5 — allowed relative increase of the canary's median latency (Kayenta style).
        rollout_poll_s: 0.5 — seconds between two samples of each version during a rollout.
        rollout_on_inconclusive: ``rollback`` — what an Inconclusive step becomes after
            ``rollout_inconclusive_grace_s`` (60 s) more analysis: ``rollback`` (fail closed) or ``pause``. 60 s
            because a Pass needs evidence that rules out a regression of ``slo_error_rate``: about 115 canary
            requests without errors (issue 21), 29 s at 10 % of 40 rps on a quiet machine, longer when the synthetic
            traffic generator shares 2 busy cores.
        rollout_warmup_requests: 20 — requests of the traffic plan sent straight to a freshly started new version
            (canary, blue-green's green) once it is ready and before the first analysed step, so a cold process
            (imports, connection pools, caches) is not judged against a warm baseline; the analysis's start
            sample is taken after them, so they are not judged (Argo Rollouts' analysis ``initialDelay``,
            Flagger's pre-rollout load-test webhook; 20 = the step's ``min_requests_per_step``). 0 turns it off.
        post_promotion_watch_s: 10 — burn-rate alerts keep running this long after 100 % and can roll back.
        standby_s: 300 — the previous version stays warm 5 minutes after promotion (rollback = weight change).
        fleet_port_base: 18100 — managed services get stable addresses on 127.0.0.1 from this port up
            (`pilotage service add`, issue #17), one port per service, kept across deliveries.
        fleet_idle_after_s: 0 — seconds without a request before a managed service's production version is scaled
            to zero behind its stable address (it wakes on the next request); 0 keeps it running.
        consumer_verification_timeout_s: 300 — seconds one consumer's ``test`` command may run against a provider's
            new version (issue #19, :mod:`pilotage.fleet.verification`); past it the command's process group is
            killed and the verification fails, naming the consumer (the default is ``testing_unit_timeout_s``'s).
        flags_port: 0 — TCP port on 127.0.0.1 of the control plane's OFREP flag server (feature-flag releases,
            ``POST /ofrep/v1/evaluate/flags/{key}``); 0 picks a free port.
        incident_repository: None — ``owner/name``: also write a GitHub-issue JSON payload beside each incident.
        api_host / api_port: 127.0.0.1 / 8700 — where ``pilotage serve`` serves the HTTP API (``/api/v1``); another
            interface than loopback needs ``api_token`` (``PILOTAGE_API_TOKEN``), which every write then carries
            as a bearer token (:mod:`pilotage.web.security`); api_port 0 picks a free port.
        approval_key_file: None — the operator's approval key (HMAC-SHA256, 0600); None means
            ``$XDG_CONFIG_HOME/pilotage/approval.key`` or ``~/.config/pilotage/approval.key``
            (:mod:`pilotage.policy.approval_key`). Keep it outside ``.pilotage/`` and every run's folder.
        cnet_bid_window_s: 0.5 — seconds a contract-net manager waits for proposals once workers are known (it
            closes earlier when every live worker answered); no call is made at all when no worker is live.
        cnet_worker_stale_s: 3.0 — a worker whose last heartbeat is older is not live (3 missed heartbeats).
        cnet_heartbeat_s: 1.0 — seconds between two ``worker.heartbeat`` events of a worker process.
        cnet_max_rounds: 3 — calls for proposals per task (the first and two re-announcements) before the
            task runs in-process.
        market_min_share_after: 3 — an agent that lost this many auctions for a resource in a row wins the next
            one at price 0 (minimum share: nothing starves).
        market_auction_window_s: 0.25 — most seconds an auction of the load-test slot waits for a bidder it
            expects (the previous auction's losers) that has not bid; a lone requester never waits (its bid is in
            before the auction opens, so the auction closes at once).
        market_bid_fraction: 0.5 — the performance agent bids ``floor(balance × fraction)`` credits of its
            service's account for the load-test slot (richer services bid more; one auction never empties one).
        max_concurrent_deliveries: 4 — deliveries ``pilotage serve`` runs at once (issue #19, 5); more wait in its
            queue (``flow.queued``), and two deliveries of one service never run at once. 4 on 2 cores: a delivery
            spends most of its time waiting (rollout steps, watches), the load test is one at a time anyway and
            its tests and version start-ups are what load the cores.
        analysis_slots: 3 — rollout steps analysed at once on the whole bus (``analysis-slot``, auctioned like the
            load-test slot): each analysis drives synthetic traffic and polls two versions. 3 on 2 cores: with the
            data plane in its own process, bench_fleet N = 30 promoted all 30 with 3 (102 an hour, the slots 80 %
            busy) where 2 bound the fleet at about 90 an hour; with the data plane in the control plane's process a
            third analysis' traffic paused rollouts (README, *Benchmarks*).
        fleet_start_concurrency: 2 — production versions ``pilotage serve`` prepares and starts at once when it brings
            the fleet up, providers' wave before their consumers' (:func:`pilotage.fleet.deps.start_waves`). 2 on
            2 cores: a start is a prepare (pip) then a process's imports, both CPU-bound (README, *A fleet*).
        data_plane: ``process`` — where route proxies and synthetic traffic run: a child process of the control
            plane (:mod:`pilotage.runtime.dataplane_process`; its log ``<home>/dataplane.log``), so neither delays
            the other; ``thread``: a thread of the control plane's process (one GIL; library use and unit tests).
        loop_stall_warn_s: 1.0 — ``pilotage serve`` logs the stack of its asyncio loop's thread whenever the loop is
            held at least this long, and its longest lag when it stops (:mod:`pilotage.loopwatch`); 0 = off.

    Bounds (issue #15, finding 8): every number must be finite (``inf``/``nan`` are refused) and in range, or
    :func:`load_settings` raises ConfigError naming the setting. Lower bounds are the ones each field declares
    (a duration is > 0 or ≥ 0, a share is in 0..1). Upper bounds keep a typo from hanging a run or exhausting the
    machine: polling and bidding intervals (``rollout_poll_s``, ``cnet_bid_window_s``, ``cnet_heartbeat_s``,
    ``market_auction_window_s``) at most 60 s; per-request, start-up, analysis and load-test durations
    (``testing_request_timeout_s``, ``service_ready_timeout_s``, ``analysis_window_s``, ``load_test_duration_s``,
    ``cnet_worker_stale_s``) at most 1 h; stage budgets and watches (``testing_timeout_s``,
    ``testing_unit_timeout_s``, ``rollout_inconclusive_grace_s``, ``post_promotion_watch_s``, ``standby_s``) at
    most 1 day; ``idle_after_s`` at most 30 days; ``load_test_users``, ``synthetic_traffic_rps`` and
    ``rollout_warmup_requests`` at most 10,000 (one machine); ``testing_flaky_reruns`` and ``cnet_max_rounds`` at
    most 100; ``judge_latency_tolerance`` at most 100 (×); ``max_concurrent_deliveries``, ``analysis_slots`` and
    ``fleet_start_concurrency`` at most 64; prices at most 1,000 USD/h; other counts at most 1,000,000.
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    home: Path = Path(".pilotage")
    bus_url: str = "sqlite:///.pilotage/events.db"
    graph_url: str = "sqlite:///.pilotage/graph.db"
    policy_url: str = "rego:"
    policy_dirs: list[Path] = Field(default_factory=lambda: [Path("policies")])
    runtime_url: str = "local:"
    llm_url: str | None = None
    # --- issue 15: approvals are signed with the operator's key, kept outside every run (policy/approval_key.py)
    approval_key_file: Path | None = None

    slo_error_rate: float = Field(0.05, ge=0.0, le=1.0)
    min_requests_per_step: int = Field(20, ge=1, le=_MAX_COUNT)
    analysis_window_s: float = Field(3.0, gt=0, le=_HOUR_S)
    canary_steps_percent: list[int] = Field(default_factory=lambda: [10, 25, 50, 100])
    synthetic_traffic_rps: float = Field(40.0, ge=0, le=10_000)

    # --- issue 3: SLOs, burn rates, canary judge, rollouts (defaults documented in the class docstring) ---
    metrics_source_url: str = "scrape:"
    burn_rate_time_scale: float = Field(1.0 / 720.0, gt=0, le=1)
    judge_alpha: float = Field(0.01, gt=0, lt=1)
    judge_latency_tolerance: float = Field(0.5, ge=0, le=100)
    rollout_poll_s: float = Field(0.5, gt=0, le=60)
    rollout_on_inconclusive: str = Field("rollback", pattern="^(rollback|pause)$")
    rollout_inconclusive_grace_s: float = Field(60.0, ge=0, le=_DAY_S)
    rollout_warmup_requests: int = Field(20, ge=0, le=10_000)
    post_promotion_watch_s: float = Field(10.0, ge=0, le=_DAY_S)
    standby_s: float = Field(300.0, ge=0, le=_DAY_S)
    flags_port: int = Field(0, ge=0, le=65535)
    fleet_port_base: int = Field(18100, ge=1024, le=64535)
    fleet_idle_after_s: float = Field(0.0, ge=0.0)
    consumer_verification_timeout_s: float = Field(300.0, gt=0, le=_DAY_S)  # issue 19: a consumer's tests
    incident_repository: str | None = None
    # --- issue 20: the control plane's HTTP API (pilotage.web; README "HTTP API")
    api_host: str = "127.0.0.1"
    api_port: int = Field(8700, ge=0, le=65535)
    api_token: str | None = None

    load_test_users: int = Field(10, ge=1, le=10_000)
    load_test_duration_s: float = Field(5.0, gt=0, le=_HOUR_S)
    schemathesis_max_examples: int = Field(10, ge=1, le=_MAX_COUNT)
    # --- issue 5: testing agent (generated tests, flaky detection, authentication, time budgets) ---
    testing_crud_examples: int = Field(5, ge=1, le=_MAX_COUNT)
    testing_flaky_reruns: int = Field(3, ge=0, le=100)
    testing_flaky_policy: str = Field("quarantine", pattern="^(quarantine|fail)$")
    testing_auth_headers: dict[str, str] = Field(default_factory=dict)
    testing_request_timeout_s: float = Field(5.0, gt=0, le=_HOUR_S)
    testing_timeout_s: float = Field(180.0, gt=0, le=_DAY_S)
    testing_unit_timeout_s: float = Field(300.0, gt=0, le=_DAY_S)
    testing_generate: bool = True
    testing_api_tests: bool = True  # issue 17: spec-derived tests (schemathesis, CRUD) of a delivered service
    # issue 18: schemathesis' contract violations deny the deploy ("deny") or are only reported ("warn")
    testing_contract_gate: str = Field("deny", pattern="^(deny|warn)$")
    # issue 18: an undocumented status HTTP forces (a gap of the document: testing/forced_status.py) is reported
    # ("report") or denies the deploy too ("deny")
    testing_document_gap_gate: str = Field("report", pattern="^(report|deny)$")
    # issue 17: environment variables a service's pilotage.yaml may name in traffic.credentials (the operator's
    # allow-list: a delivered commit is untrusted and must not be able to send itself another secret)
    traffic_credential_envs: list[str] = Field(default_factory=list)
    service_ready_timeout_s: float = Field(30.0, gt=0, le=_HOUR_S)

    # --- issue 8: coordination (docs/architecture.md "Coordination" gives the sources of these defaults) ---
    cnet_bid_window_s: float = Field(0.5, gt=0, le=60)
    cnet_worker_stale_s: float = Field(3.0, gt=0, le=_HOUR_S)
    cnet_heartbeat_s: float = Field(1.0, gt=0, le=60)
    cnet_max_rounds: int = Field(3, ge=1, le=100)
    market_min_share_after: int = Field(3, ge=1, le=_MAX_COUNT)
    market_auction_window_s: float = Field(0.25, gt=0, le=60)
    market_bid_fraction: float = Field(0.5, ge=0, le=1)
    # --- issue 19, 5: many deliveries at once under `pilotage serve` ---
    max_concurrent_deliveries: int = Field(4, ge=1, le=64)
    analysis_slots: int = Field(3, ge=1, le=64)
    fleet_start_concurrency: int = Field(2, ge=1, le=64)
    loop_stall_warn_s: float = Field(1.0, ge=0, le=60)
    data_plane: Literal["process", "thread"] = "process"

    idle_after_s: float = Field(7200.0, gt=0, le=30 * _DAY_S)
    instance_size: str = "small"
    prices_usd_per_hour: dict[str, Annotated[float, Field(ge=0, le=1_000)]] = Field(
        default_factory=lambda: {"small": 0.0208, "medium": 0.0416, "large": 0.0832}
    )
    license_allowlist: list[str] = Field(
        default_factory=lambda: [
            "MIT",
            "BSD",
            "BSD-2-Clause",
            "BSD-3-Clause",
            "Apache-2.0",
            "Apache Software License",
            "MIT License",
            "BSD License",
            "ISC",
            "PSF-2.0",
            "Python Software Foundation License",
            "MPL-2.0",
        ]
    )

    @field_validator("incident_repository")
    @classmethod
    def _owner_slash_name(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+", value):
            raise ValueError(f"{value!r} is not a GitHub repository owner/name, e.g. 'acme/shop'")
        return value

    @field_validator("api_token", mode="before")
    @classmethod
    def _token_as_text(cls, value: Any) -> Any:
        """``PILOTAGE_API_TOKEN=123456789`` reads as JSON (a number): a token is text whatever its characters."""
        return str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value

    @field_validator("metrics_source_url")
    @classmethod
    def _known_metric_source(cls, value: str) -> str:
        if not (value in ("", "scrape:") or value.startswith(("scrape:", "prometheus://", "http://"))):
            raise ValueError(f"unknown metrics source {value!r}: use 'scrape:' or 'prometheus://host:9090'")
        return value

    @field_validator("canary_steps_percent")
    @classmethod
    def _steps_rise_to_100(cls, steps: list[int]) -> list[int]:
        if not steps:
            raise ValueError("needs at least one step, e.g. [10, 25, 50, 100]")
        if any(not 0 < s <= 100 for s in steps):
            raise ValueError(f"each step is a canary weight in 1..100, got {steps}")
        if any(b <= a for a, b in zip(steps, steps[1:], strict=False)):
            raise ValueError(f"steps must increase, got {steps}")
        if steps[-1] != 100:
            raise ValueError(f"the last step must be 100 (full promotion), got {steps}")
        return steps

    def secret_values(self) -> list[str]:
        """Return the values that grant access: test header values, the passwords in backend URLs, the API token.

        :func:`load_settings` registers them with :func:`pilotage.secrets.masker`, which masks them wherever
        Pilotage writes (issue #15).
        """
        urls = (self.bus_url, self.graph_url, self.policy_url, self.metrics_source_url, self.llm_url)
        passwords = [p for p in (url_password(u) for u in urls) if p]
        return [*self.testing_auth_headers.values(), *passwords, *([self.api_token] if self.api_token else [])]

    def path_in_home(self, name: str) -> Path:
        """Return ``home / name`` (the state folder, ``.pilotage`` by default)."""
        return self.home / name

    @model_validator(mode="after")
    def _state_in_home(self) -> Settings:
        """Put the embedded event log and graph in ``home`` unless their URLs are set.

        ``sqlite:///<home>/events.db`` and ``sqlite:///<home>/graph.db`` (issue 18: ``--workdir``, ``PILOTAGE_HOME``).
        """
        for name, file in (("bus_url", "events.db"), ("graph_url", "graph.db")):
            if name not in self.model_fields_set:
                self.__dict__[name] = f"sqlite:///{self.home / file}"  # a default: not marked as set
        return self

    def with_home(self, home: Path) -> Settings:
        """Return these settings with ``home`` as the state folder.

        The embedded log and graph move with it unless their URLs were set explicitly.
        """
        values = {name: getattr(self, name) for name in self.model_fields_set}
        return type(self)(**(values | {"home": home}))


def _coerce_env(value: str) -> Any:
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value


def load_settings(config_file: Path | None = None, overrides: dict[str, Any] | None = None) -> Settings:
    """Build :class:`Settings` from defaults, ``pilotage.toml``, ``PILOTAGE_*`` variables and ``overrides``.

    The secrets of the result (:meth:`Settings.secret_values`) and of the environment
    (:func:`pilotage.secrets.environment_secrets`) are registered with the process-wide masker.

    Raises:
        ConfigError: the TOML file does not parse, or a value has the wrong type (names the key and source).
    """
    values: dict[str, Any] = {}
    path = config_file or Path("pilotage.toml")
    if path.exists():
        try:
            doc = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}", hint=f"fix or remove {path}", path=path) from exc
        values.update(doc.get("pilotage", doc))
    for name in Settings.model_fields:
        env = os.environ.get(f"PILOTAGE_{name.upper()}")
        if env is not None:
            values[name] = _coerce_env(env)
    values.update(overrides or {})
    try:
        settings = Settings(**values)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(p) for p in first["loc"])
        raise ConfigError(
            f"setting {key!r}: {first['msg']}",
            hint=f"check {key} in {path} or PILOTAGE_{key.split('.')[0].upper()}",
            key=key,
        ) from exc
    register_secrets(settings.secret_values())
    register_secrets(environment_secrets(), min_chars=MIN_ENV_SECRET_CHARS)
    return settings
