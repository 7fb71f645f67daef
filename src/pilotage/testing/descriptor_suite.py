"""The test run of a service with a descriptor (``pilotage.yaml``, issue #17), against its running head instance.

A hand-written service is tested with what it brings and what Pilotage derives from its API document; nothing is
written into its repository (:mod:`pilotage.testing.commit_tests` commits the generated tests on a branch of their
own when a run asks for it). :func:`run_descriptor_suite` returns the shape of
:func:`pilotage.testing.suite.run_test_suite`, so the testing agent's verdict and event are the same. In turn:

1. **its own tests**: the descriptor's ``test`` command (:func:`pilotage.testing.own_tests.run_own_tests`), with
   ``PILOTAGE_BASE_URL`` of the head instance; no ``test`` → the ``unit`` result is marked not run (not a failure);
2. when there is an OpenAPI document (:func:`resolve_openapi`: the repository file ``openapi`` names, or the path
   the running instance serves, fetched and saved among the artefacts; both validated with
   :func:`pilotage.spec.load.load_spec`), **Pilotage's spec-derived tests**: the pytest files of
   :mod:`pilotage.testing.spec_tests` (CRUD chains) written into ``<out_dir>/generated/tests/`` — outside the
   user's tree — and run by Pilotage's own interpreter (they need schemathesis and hypothesis, which the service's
   environment need not have) against the instance, with flaky reruns and quarantine as for generated services;
   then the **schemathesis CLI**. Hypothesis' ghostwriter imports the service's modules into Pilotage's
   interpreter, so it runs for generated services only: ``generated.code`` says it was skipped;
3. no OpenAPI document → only the own tests; ``schemathesis`` keeps its keys with zeros, ``ran: false`` and a
   reason, and the verdict (:func:`pilotage.agents.testing.verdict_reasoning`) does not gate on it.

The metrics contract test (``test_metrics_contract``) is deselected when the descriptor's ``metrics`` is ``proxy``:
the service's SLIs come from the proxy, so whatever its ``/metrics`` serves is not Pilotage's business.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

from pilotage.errors import ConfigError, InputError
from pilotage.fleet.descriptor import ServiceDescriptor, render_env
from pilotage.fleet.workload import instance_env
from pilotage.httpclient import async_client
from pilotage.runtime.base import InstanceRuntime, Workload, scratch_workload
from pilotage.spec.load import MAX_DOCUMENT_BYTES, load_spec
from pilotage.testing.own_tests import not_run_schemathesis, not_run_unit, own_failure, run_own_tests
from pilotage.testing.pytest_runner import UnitResult, run_pytest
from pilotage.testing.schemathesis_runner import run_schemathesis
from pilotage.testing.spec_tests import CRUD_FILE, SCHEMATHESIS_FILE, write_spec_tests
from pilotage.testing.suite import (
    DEFAULTS,
    MAX_RERUN_TESTS,
    _counts,
    _findings,
    _rerun,
    classify_flaky,
    parse_cases,
    skipped_tests,
)

__all__ = [
    "DESCRIPTOR_DEFAULTS",
    "GHOSTWRITER_SKIPPED",
    "SERVED_SPEC",
    "resolve_openapi",
    "run_descriptor_head",
    "run_descriptor_suite",
]

#: Why the ghostwriter step does not run for a descriptor service (``generated.code.reason``).
GHOSTWRITER_SKIPPED = (
    "hypothesis' ghostwriter imports the service's modules into Pilotage's interpreter: generated services only"
)
#: File name (without suffix) of a served OpenAPI document saved among the artefacts.
SERVED_SPEC = "openapi.served"
#: Request keys of :func:`run_descriptor_suite` besides :data:`pilotage.testing.suite.DEFAULTS`, and their defaults.
DESCRIPTOR_DEFAULTS: dict[str, Any] = {
    "test": None,
    "api_tests": True,
    "test_reason": "pilotage.yaml has no `test` command",
    "prepared": "",
    "port": None,
    "descriptor_env": {},
    "spec_path": "",
    "metrics_contract": True,
}
#: The metrics contract test of the generated CRUD file (deselected for ``metrics: proxy``).
METRICS_TEST = f"tests/{CRUD_FILE}::test_metrics_contract"


def _checked(path: Path, where: str) -> Path:
    """``path`` after :func:`load_spec` accepted it; a refusal is the descriptor's ``openapi`` problem."""
    try:
        load_spec(path)
    except InputError as exc:
        raise ConfigError(
            f"pilotage.yaml openapi: {where} is not a valid OpenAPI 3 document: {exc.message}",
            hint=exc.hint or "fix the document or the `openapi` field",
            path=str(path),
            field="openapi",
        ) from exc
    return path


async def _fetch(url: str, out_dir: Path, headers: dict[str, str], timeout_s: float) -> Path:
    """GET ``url`` (at most :data:`MAX_DOCUMENT_BYTES`) and save the body as ``<out_dir>/openapi.served.json|yaml``.

    Raises:
        ConfigError: no answer, a status other than 200, a body over the limit, or the whole answer not received
            within :data:`FETCH_TOTAL_FACTOR` × ``timeout_s`` (a document dripped byte by byte); names the
            ``openapi`` field.
    """
    total_s = FETCH_TOTAL_FACTOR * timeout_s
    try:
        return await asyncio.wait_for(_fetch_body(url, out_dir, headers, timeout_s), total_s)
    except TimeoutError as exc:
        raise ConfigError(
            f"pilotage.yaml openapi: GET {url} did not finish within {total_s:g} s",
            hint="serve the document faster, or name a repository file in `openapi`",
            field="openapi",
        ) from exc


#: The whole served document must arrive within this many per-request timeouts.
FETCH_TOTAL_FACTOR = 3


async def _fetch_body(url: str, out_dir: Path, headers: dict[str, str], timeout_s: float) -> Path:
    body = bytearray()
    try:
        async with async_client(timeout=timeout_s, headers=headers) as client:
            async with client.stream("GET", url) as response:
                if response.status_code != 200:
                    raise ConfigError(
                        f"pilotage.yaml openapi: GET {url} answered {response.status_code}, not 200",
                        hint="serve the document there, or name a repository file in `openapi`",
                        field="openapi",
                    )
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > MAX_DOCUMENT_BYTES:
                        raise ConfigError(
                            f"pilotage.yaml openapi: GET {url} sent more than {MAX_DOCUMENT_BYTES:,} bytes",
                            hint="serve a smaller document",
                            field="openapi",
                        )
    except httpx.HTTPError as exc:
        raise ConfigError(
            f"pilotage.yaml openapi: GET {url} failed: {type(exc).__name__}: {exc}",
            hint="check the `openapi` path",
            field="openapi",
        ) from exc
    suffix = ".json" if bytes(body).lstrip().startswith(b"{") else ".yaml"
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{SERVED_SPEC}{suffix}"
    target.write_bytes(bytes(body))
    return target


async def resolve_openapi(
    openapi: str | None,
    service_dir: Path,
    out_dir: Path,
    *,
    base_url: str = "",
    headers: dict[str, str] | None = None,
    timeout_s: float = 5.0,
) -> Path | None:
    """Return the OpenAPI document of a descriptor service as a validated file, or None when it has none.

    Args:
        openapi: the descriptor's ``openapi``: a file relative to ``service_dir``, a served path (``/openapi.json``)
            or None.
        service_dir: the checkout of the commit under test.
        out_dir: where a served document is saved (``openapi.served.json``, or ``.yaml``).
        base_url: the running instance (needed for a served path).
        headers: request headers for the fetch (``settings.testing_auth_headers``).
        timeout_s: the fetch's time budget (``settings.testing_request_timeout_s``).

    Raises:
        ConfigError: the file is missing or outside the checkout, the path does not answer 200, or the document is
            not valid OpenAPI 3 (:func:`pilotage.spec.load.load_spec`); the message names the ``openapi`` field.
    """
    if not openapi:
        return None
    if openapi.startswith("/"):
        url = base_url.rstrip("/") + openapi
        saved = await _fetch(url, out_dir, headers or {}, timeout_s)
        return await asyncio.to_thread(_checked, saved, f"the document served at {openapi}")
    root = Path(service_dir).resolve()
    file = (root / openapi).resolve()
    if not file.is_relative_to(root) or not file.is_file():
        raise ConfigError(
            f"pilotage.yaml openapi: {openapi} is not a file of the repository ({root})",
            hint="name a file inside the repository, or a served path such as /openapi.json",
            field="openapi",
        )
    return await asyncio.to_thread(_checked, file, openapi)


async def _generated_tests(req: dict[str, Any], spec: Path, out_dir: Path) -> dict[str, Any]:
    """Write the spec-derived tests under ``out_dir/generated``, run them on ``base_url`` with Pilotage's pytest."""
    gen_dir = out_dir / "generated"
    files = write_spec_tests(
        spec, gen_dir, max_examples=req["max_examples"], crud_examples=req["crud_examples"],
        request_timeout_s=req["request_timeout_s"],
    )  # fmt: skip
    out: dict[str, Any] = {"dir": str(gen_dir), "files": files, "cases": [], "histories": {}, "unit": None}
    if not files["crud_file"]:
        return out  # only the schemathesis file: the CLI run covers it
    env = {"PILOTAGE_BASE_URL": req["base_url"], "PILOTAGE_TEST_HEADERS": json.dumps(req["headers"])}
    env["PILOTAGE_REQUEST_TIMEOUT_S"] = str(req["request_timeout_s"])
    args = [f"--ignore=tests/{SCHEMATHESIS_FILE}", *[f"--deselect={n}" for n in req["quarantine"]]]
    if not req["metrics_contract"]:
        args.append(f"--deselect={METRICS_TEST}")
    unit = await run_pytest(gen_dir, out_dir / "generated.junit.xml", timeout_s=req["unit_timeout_s"], env=env,
                            extra_args=args)  # fmt: skip
    cases = parse_cases(unit.junit_path, gen_dir)
    if req["flaky_reruns"] and not unit.timed_out:
        failing = [c["nodeid"] for c in cases if c["outcome"] in ("failed", "error")][:MAX_RERUN_TESTS]
        if failing:
            out["histories"] = await _rerun(gen_dir, out_dir, failing, int(req["flaky_reruns"]), env)
    return out | {"cases": cases, "unit": unit}


def _own_env(req: dict[str, Any]) -> dict[str, str]:
    env = {str(k): str(v) for k, v in (req["descriptor_env"] or {}).items()}
    return env | {"PILOTAGE_BASE_URL": req["base_url"]}


async def run_descriptor_suite(request: dict[str, Any]) -> dict[str, Any]:
    """Test a descriptor service's running head instance and return :func:`run_test_suite`'s result shape.

    Args:
        request: ``service_dir`` (the checkout), ``out_dir`` and ``base_url`` (the running instance) required;
            ``test`` (the descriptor's command, None: not run), ``prepared``, ``port``, ``descriptor_env``,
            ``spec_path`` (a validated document, "": none — :func:`resolve_openapi`), ``metrics_contract`` (False
            deselects ``test_metrics_contract``), ``api_tests`` (False: no spec-derived test, the setting
            ``testing_api_tests``), ``test_reason`` (why own tests do not run) and the keys of
            :data:`pilotage.testing.suite.DEFAULTS` (``unit_timeout_s`` bounds each pytest/test run, ``timeout_s``
            schemathesis).

    Returns:
        ``{"ok": True, "schemathesis", "unit" (own tests), "generated" {crud, properties, docstrings counts, spec,
        code (ghostwriter skipped), dir}, "failures", "flaky", "quarantined", "findings", "unit_junit_path"}``;
        ``unit_junit_path`` is the generated tests' JUnit XML ("" when none ran; the own tests have none).

    Raises:
        InputError: a required key is missing.
        ConfigError: the ``test`` command names an unknown placeholder.
        BackendError: a tool could not be started.
    """
    missing = [k for k in ("service_dir", "out_dir", "base_url") if not request.get(k)]
    if missing:
        raise InputError(
            f"descriptor test request lacks {', '.join(missing)}", hint="pass service_dir, out_dir, base_url"
        )
    req: dict[str, Any] = {**DESCRIPTOR_DEFAULTS, **DEFAULTS, **request}
    service_dir, out_dir = Path(req["service_dir"]).resolve(), Path(req["out_dir"]).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    if req["test"]:
        unit = await run_own_tests(
            req["test"], service_dir, out_dir, prepared=req["prepared"], port=req["port"], env=_own_env(req),
            timeout_s=req["unit_timeout_s"],
        )  # fmt: skip
    else:
        unit = not_run_unit(str(req["test_reason"]))
    result: dict[str, Any] = {"ok": True, "unit": unit, "flaky": [], "quarantined": list(req["quarantine"])}
    result["failures"] = [own_failure(unit, service_dir)] if unit["failed"] or unit["errors"] else []
    result["findings"] = []
    if unit["timed_out"]:
        message = f"the test command ran past its {req['unit_timeout_s']} s budget and was killed"
        result["findings"].append({"kind": "suite_timeout", "message": message})
    code = {"written": [], "dropped": [], "import_errors": [], "skipped": True, "reason": GHOSTWRITER_SKIPPED}
    zero = {"passed": 0, "failed": 0, "errors": 0, "skipped": 0}
    result["generated"] = {"crud": zero, "properties": zero, "docstrings": zero, "spec": {}, "code": code}
    result["unit_junit_path"] = ""
    if not req["spec_path"]:
        result["schemathesis"] = not_run_schemathesis("pilotage.yaml names no OpenAPI document (`openapi`)")
        return result
    if not req["api_tests"]:
        result["schemathesis"] = not_run_schemathesis("spec-derived tests are off (setting testing_api_tests)")
        return result
    await _spec_derived(req, Path(req["spec_path"]), out_dir, result)
    return result


async def _spec_derived(req: dict[str, Any], spec: Path, out_dir: Path, result: dict[str, Any]) -> None:
    """Run the generated tests (when ``generate``) and schemathesis; fill their parts of ``result``."""
    gen: dict[str, Any] = {"cases": [], "histories": {}, "unit": None, "files": {}, "dir": ""}
    if req["generate"]:
        gen = await _generated_tests(req, spec, out_dir)
    st = await run_schemathesis(
        spec, req["base_url"], out_dir, max_examples=req["max_examples"], timeout_s=req["timeout_s"],
        request_timeout_s=req["request_timeout_s"], seed=req["seed"], headers=req["headers"],
    )  # fmt: skip
    flaky, _ = classify_flaky(gen["histories"])
    excluded = set(flaky) if req["flaky_policy"] == "quarantine" else set()
    result["quarantined"] = sorted(set(result["quarantined"]) | excluded)
    result["flaky"] = [{"nodeid": n, "history": gen["histories"][n]} for n in flaky]
    kept = [c for c in gen["cases"] if c["nodeid"] not in excluded]
    result["failures"] += [c for c in kept if c["outcome"] in ("failed", "error")]
    result["skipped"] = skipped_tests(kept)  # issue 18
    generated = result["generated"]
    generated["crud"] = _counts([c for c in kept if c["kind"] == "crud"])
    generated |= {"spec": gen["files"], "dir": gen["dir"]}
    if gen["unit"] is not None:
        result["unit_junit_path"] = str(gen["unit"].junit_path)
        if gen["unit"].errors and not kept:  # a broken or killed run of the generated tests never looks clean
            result["failures"].append(
                {"nodeid": f"tests/{CRUD_FILE}", "kind": "crud", "outcome": "error", "reproduce": "",
                 "message": f"the generated tests did not run (exit {gen['unit'].exit_code}): {gen['unit'].log_path}"}
            )  # fmt: skip
    result["schemathesis"] = st.to_dict()
    ran = gen["unit"] or UnitResult(0, 0, 0, 0, 0, False, 0.0, Path(), Path())  # no generated pytest run
    result["findings"] += _findings(st, ran, gen["cases"], req)


async def run_descriptor_head(
    runtime: InstanceRuntime,
    descriptor: ServiceDescriptor,
    *,
    service: str,
    commit: str,
    head_dir: Path,
    prepared: str,
    out_dir: Path,
    ready_timeout_s: float,
    options: dict[str, Any],
    addresses: Mapping[str, str],
) -> tuple[dict[str, Any], Path | None]:
    """Start the head commit from its descriptor, test it (:func:`run_descriptor_suite`), always stop it.

    The scratch instance is ``Workload(service, "test-<sha12>", head_dir, env=instance_env(descriptor, addresses,
    scratch=True), command=descriptor.start, prepared=prepared, health_path=descriptor.health)``
    (:func:`pilotage.runtime.base.scratch_workload`, :func:`pilotage.fleet.workload.instance_env`); the test
    command gets the same environment.

    Args:
        runtime: the runtime that starts the instance.
        descriptor: the head commit's ``pilotage.yaml``.
        service: the run's service.
        commit: the commit under test (the instance's version is ``test-<sha12>``).
        head_dir: the checkout of the commit.
        prepared: its prepared folder (``code.generated`` ``head_prepared``; "" when none).
        out_dir: the run's test artefacts (``<artifacts>/tests/<sha12>``).
        ready_timeout_s: the descriptor's ``ready_timeout_s``, else ``settings.service_ready_timeout_s``.
        options: the :data:`pilotage.testing.suite.DEFAULTS` keys (``headers`` included).
        addresses: the managed services' stable addresses (the ``consumes`` variables, issue 19).

    Returns:
        The suite's result and the validated OpenAPI document (None when the service has none).

    Raises:
        ConfigError: the service does not start or answer its health path, its ``openapi`` is missing or invalid,
            or its ``test`` names an unknown placeholder (each names the descriptor's field).
        BackendError: a tool could not run.
    """
    env = instance_env(descriptor, addresses, scratch=True)  # issue 17: tests never write production data
    workload = Workload(
        service, f"test-{commit[:12]}", Path(head_dir), env=env, command=descriptor.start,
        prepared=prepared, health_path=descriptor.health, data_dir=str(Path(out_dir) / "data"),
    )  # fmt: skip
    async with scratch_workload(runtime, workload, ready_timeout_s=ready_timeout_s) as instance:
        spec = await resolve_openapi(
            descriptor.openapi, Path(head_dir), out_dir, base_url=instance.url, headers=options.get("headers") or {},
            timeout_s=float(options.get("request_timeout_s", DEFAULTS["request_timeout_s"])),
        )  # fmt: skip
        request = {
            **options, "service_dir": str(head_dir), "out_dir": str(out_dir), "base_url": instance.url,
            "port": instance.port, "test": descriptor.test, "prepared": prepared,
            "descriptor_env": render_env(env, prepared=prepared, data=Path(out_dir) / "data"),
            "spec_path": str(spec or ""),
            "metrics_contract": not descriptor.proxy_metrics,
        }  # fmt: skip
        return await run_descriptor_suite(request), spec
