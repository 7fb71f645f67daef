"""Property-based API tests with schemathesis v4, run from an OpenAPI file against a running service.

Why the CLI in a subprocess, and not the Python API:

* **stable interface** — schemathesis' Python API changed shape between v3 and v4 (``from_path`` moved to
  ``schemathesis.openapi``, runners became an engine with events, ``Case.call_and_validate`` replaced
  ``validate_response``) and keeps moving in minor releases; ``schemathesis run`` and its report formats are the
  documented, versioned interface;
* **structured results** — ``--report junit,ndjson`` makes schemathesis write a JUnit XML (kept as the run's
  artefact) and an NDJSON stream of its engine events; every ``ScenarioFinished`` event carries, per test case,
  the request, the response status and each check's outcome, which is exactly what the per-operation summary
  needs (nothing is scraped from the console output);
* **bounded and isolated** — see :mod:`pilotage.testing.process`: a hard global timeout (the process group is
  killed), hypothesis and ``requests`` stay out of the control plane's asyncio loop.

The spec is loaded in-process first with ``schemathesis.openapi.from_path`` (the loader the CLI uses; it does no
network I/O), so an unloadable spec is an :class:`~pilotage.errors.InputError` naming the file instead of an
opaque exit code (the CLI would even retry a YAML syntax error as a GraphQL schema).

Flags and why: ``--max-examples`` from ``settings.schemathesis_max_examples``; ``--request-timeout`` per request;
``--generation-database none`` (no ``.hypothesis`` folder written anywhere); ``--config-file`` pointing to a file
Pilotage writes (a ``schemathesis.toml`` in a parent folder cannot change the run); ``--max-time`` is *not* used as
the global bound because in v4 it is a budget that fuzzing repeats until spent — the subprocess timeout is the
bound. All phases run (examples, coverage, fuzzing, stateful).

What the run found (counting, contract violations, document gaps) is summarised from the NDJSON stream by
:mod:`pilotage.testing.schemathesis_results`.

Secrets (issue #15): the test headers (``settings.testing_auth_headers``) never appear on the command line, which
every local user can read in ``ps``. The config file (:func:`write_config`) names each header with a placeholder,
``"X-Tenant" = "${PILOTAGE_TEST_HEADER_0}"``, that schemathesis resolves from its environment (its documented
``${VAR}`` substitution), and the values are set in the child's environment only; the same file adds the header
names to schemathesis' ``output.sanitization`` keys, so its reports show ``[masked]`` for them. After the run the
JUnit XML, NDJSON and log are masked by value as well (:func:`pilotage.testing.process.run_process`).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

from pilotage.errors import BackendError, InputError
from pilotage.secrets import MASK, write_private_text
from pilotage.spec.openapi import api_url
from pilotage.testing.credentials import PRINCIPAL_ENV, basic_env, schemathesis_auth
from pilotage.testing.forced_status import OperationFacts, operation_facts
from pilotage.testing.process import run_process
from pilotage.testing.schemathesis_results import SchemathesisResult, parse_ndjson

__all__ = [
    "build_command",
    "document_facts",
    "header_env",
    "load_documented_statuses",
    "load_operations",
    "run_schemathesis",
    "write_config",
]

#: Global time budget of one schemathesis run (seconds); the process group is killed after it.
DEFAULT_TIMEOUT_S = 180.0
#: Time budget of each request schemathesis sends (seconds).
DEFAULT_REQUEST_TIMEOUT_S = 5.0
#: Environment variable ``i`` of the child holds the value of the ``i``-th test header.
HEADER_VAR = "PILOTAGE_TEST_HEADER_{}"
#: Keys schemathesis masks in its reports when the config names none (its defaults, if they cannot be imported).
_FALLBACK_KEYS = ("authorization", "cookie", "set-cookie", "proxy-authorization", "x-api-key", "api_key", "token")


def load_operations(spec_path: Path) -> list[str]:
    """Load ``spec_path`` with schemathesis' own loader and return its operations as ``"METHOD /path"``.

    Raises:
        InputError: as :func:`load_documented_statuses`.
    """
    return list(load_documented_statuses(spec_path))


def load_documented_statuses(spec_path: Path) -> dict[str, frozenset[str]]:
    """Load ``spec_path`` with schemathesis' own loader: ``{"METHOD /path": {"200", "404", "4XX", ...}}``.

    The values are the operation's documented response keys (``default`` included), in document order of the
    operations.

    Raises:
        InputError: the file is missing, schemathesis cannot load it, an operation is invalid, or it defines no
            operation (the message names the file).
    """
    import schemathesis  # lazy: importing schemathesis costs ~0.5 s
    from schemathesis.core.errors import SchemathesisError
    from schemathesis.core.result import Ok

    path = Path(spec_path)
    if not path.is_file():
        raise InputError(f"OpenAPI file {path} does not exist", hint="pass the spec_path of spec.validated", path=path)
    try:
        schema = schemathesis.openapi.from_path(str(path))
        results = list(schema.get_all_operations())
    except (SchemathesisError, OSError, ValueError, UnicodeDecodeError) as exc:
        first = " ".join(str(exc).split())[:300]
        raise InputError(
            f"schemathesis cannot load {path}: {first}", hint=f"fix {path} (validate it as OpenAPI 3)", path=path
        ) from exc
    labels: dict[str, frozenset[str]] = {}
    for result in results:
        if isinstance(result, Ok):
            labels[result.ok().label] = frozenset(str(code).upper() for code in result.ok().responses.status_codes)
        else:
            error = result.err()
            raise InputError(
                f"schemathesis cannot load an operation of {path}: {' '.join(str(error).split())[:300]}",
                hint=f"fix {path} (validate it as OpenAPI 3)",
                path=path,
            ) from error
    if not labels:
        raise InputError(f"{path} defines no API operation to test", hint=f"add paths to {path}", path=path)
    return labels


def build_command(
    spec_path: Path,
    base_url: str,
    report_dir: Path,
    *,
    max_examples: int,
    request_timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S,
    seed: int | None = None,
    workers: int = 1,
) -> list[str]:
    """Return the ``schemathesis run`` command line (no shell) that writes ``report_dir/schemathesis.*``.

    It carries no header and no secret: the headers are in ``report_dir/schemathesis.toml`` as placeholders
    (:func:`write_config`) and their values in the child's environment (:func:`header_env`).
    """
    config = report_dir / "schemathesis.toml"
    argv = [
        sys.executable, "-m", "schemathesis.cli", "--config-file", str(config), "--no-color",
        "run", str(spec_path),
        "--url", base_url,
        "--max-examples", str(max_examples),
        "--request-timeout", str(request_timeout_s),
        "--workers", str(workers),
        "--generation-database", "none",
        "--report", "junit,ndjson",
        "--report-dir", str(report_dir),
        "--report-junit-path", str(report_dir / "schemathesis.junit.xml"),
        "--report-ndjson-path", str(report_dir / "schemathesis.ndjson"),
    ]  # fmt: skip
    if seed is not None:
        argv += ["--seed", str(seed)]
    return argv


def _toml_string(text: str) -> str:
    """Return ``text`` as a TOML basic string (JSON escapes are valid TOML escapes)."""
    return json.dumps(text, ensure_ascii=True)


def _default_sanitized_keys() -> tuple[str, ...]:
    try:
        from schemathesis.config._output import DEFAULT_KEYS_TO_SANITIZE
    except ImportError:  # pragma: no cover - a schemathesis that moved them: keep the usual credentials
        return _FALLBACK_KEYS
    return tuple(DEFAULT_KEYS_TO_SANITIZE)


def header_env(headers: dict[str, str] | None) -> dict[str, str]:
    """Return ``{PILOTAGE_TEST_HEADER_i: value}``: the header values for the child's environment (never argv)."""
    return {HEADER_VAR.format(i): value for i, value in enumerate((headers or {}).values())}


def document_facts(spec_path: Path) -> tuple[dict[str, Any], set[str], dict[str, OperationFacts]]:
    """Read the document at ``spec_path`` once: security schemes, form bodies nesting objects, operation facts.

    The operation facts decide whether an undocumented status is one HTTP forces (document gap, not a break).

    Returns:
        ``(components.securitySchemes ({} when none), labels from spec.openapi.form_bodies_nesting_objects,
        {label: forced_status.OperationFacts})``.

    Raises:
        InputError: the file does not parse (names it).
    """
    from pilotage.spec.load import load_document
    from pilotage.spec.openapi import form_bodies_nesting_objects, security_schemes

    doc = load_document(spec_path)
    schemes, nesting = security_schemes(doc), form_bodies_nesting_objects(doc)
    return schemes, nesting, operation_facts(doc, schemes, nesting)


def _auth_lines(schemes: dict[str, Any] | None) -> list[str]:
    """``[auth.openapi."<scheme>"]`` tables: the run's test principal for each scheme (issue 18), placeholders only."""
    lines = []
    for name, entry in schemathesis_auth(schemes or {}).items():
        lines += ["", f"[auth.openapi.{_toml_string(name.replace('${', '$${'))}]"]
        lines += [f"{key} = {_toml_string(value)}" for key, value in entry.items()]
    return lines


def write_config(path: Path, headers: dict[str, str] | None = None, schemes: dict[str, Any] | None = None) -> Path:
    """Write the schemathesis config of a run to ``path`` (0600) and return it.

    The file isolates the run from any ``schemathesis.toml`` around it, sends each of ``headers`` with its value
    read from the environment (``${PILOTAGE_TEST_HEADER_i}``, see :func:`header_env`; the value is not in the
    file) and makes schemathesis mask those header names in its reports, besides its default keys. With the
    document's security ``schemes`` it authenticates every operation as the run's test principal the way its
    security asks (:func:`pilotage.testing.credentials.schemathesis_auth`: ``${PILOTAGE_TEST_PRINCIPAL}``), so
    schemathesis also checks that requests without them are refused (its ``ignored_auth`` check).
    """
    names = list(headers or {})
    lines = ["# written by Pilotage: isolates the run; header values come from the environment, never from here"]
    if names:
        lines.append("[headers]")
        for i, name in enumerate(names):
            # schemathesis resolves ${...} in keys too: a literal "${" in a name is written "$${"
            lines.append(
                f"{_toml_string(name.replace('${', '$${'))} = {_toml_string('${' + HEADER_VAR.format(i) + '}')}"
            )
        keys = sorted({*_default_sanitized_keys(), *(n.lower() for n in names)})
        lines += ["", "[output.sanitization]", f"keys-to-sanitize = [{', '.join(_toml_string(k) for k in keys)}]"]
        lines.append(f"replacement = {_toml_string(MASK)}")
    if os.environ.get(PRINCIPAL_ENV):
        lines += _auth_lines(schemes)
    return write_private_text(path, "\n".join(lines) + "\n")


async def run_schemathesis(
    spec_path: Path,
    base_url: str,
    report_dir: Path,
    *,
    max_examples: int = 10,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    request_timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S,
    seed: int | None = None,
    workers: int = 1,
    headers: dict[str, str] | None = None,
) -> SchemathesisResult:
    """Run schemathesis' property tests of ``spec_path`` against the service at ``base_url``.

    Args:
        spec_path: the OpenAPI 3 document (YAML or JSON).
        base_url: ``http://127.0.0.1:PORT`` of the running service; requests go under the path of the spec's
            ``servers[0]`` (:func:`pilotage.spec.openapi.api_url`), where the service serves the API.
        report_dir: folder for ``schemathesis.junit.xml``, ``schemathesis.ndjson`` and ``schemathesis.log``.
        max_examples: test cases per operation and phase (``settings.schemathesis_max_examples``).
        timeout_s: global time budget in seconds; on expiry the run is killed and the result is partial.
        request_timeout_s: time budget of each request in seconds.
        seed: hypothesis seed for a reproducible run (None: random, reported in the result).
        workers: concurrent schemathesis workers.
        headers: extra headers on every request (authentication, ``settings.testing_auth_headers``).

    Returns:
        The :class:`SchemathesisResult`.

    Raises:
        InputError: schemathesis cannot load ``spec_path`` (the message names the file).
        BackendError: schemathesis could not run (no report written, or a fatal engine error).
    """
    documented = await asyncio.to_thread(load_documented_statuses, spec_path)  # imports + parsing: off the loop
    operations = list(documented)
    url = await asyncio.to_thread(api_url, base_url, spec_path)
    report_dir = Path(report_dir).resolve()
    report_dir.mkdir(parents=True, exist_ok=True)
    schemes, nesting, facts = await asyncio.to_thread(document_facts, Path(spec_path))
    write_config(report_dir / "schemathesis.toml", headers, schemes)
    junit_path = report_dir / "schemathesis.junit.xml"
    ndjson_path = report_dir / "schemathesis.ndjson"
    for stale in (junit_path, ndjson_path):
        stale.unlink(missing_ok=True)
    argv = build_command(
        Path(spec_path).resolve(),
        url,
        report_dir,
        max_examples=max_examples,
        request_timeout_s=request_timeout_s,
        seed=seed,
        workers=workers,
    )
    outcome = await run_process(  # the allow-list environment: no SCHEMATHESIS_HOOKS or other user setting
        argv,
        cwd=report_dir,
        timeout_s=timeout_s,
        log_path=report_dir / "schemathesis.log",
        env=header_env(headers) | basic_env(os.environ.get(PRINCIPAL_ENV, "")),
        mask_files=[junit_path, ndjson_path],
    )
    results, meta = parse_ndjson(ndjson_path, operations, documented, nesting, facts)
    if meta["fatal"] is not None:
        if "LoaderError" in meta["fatal"]:
            raise InputError(f"schemathesis cannot load {spec_path}: {meta['fatal']}", path=spec_path)
        raise BackendError(f"schemathesis failed against {base_url}: {meta['fatal']}", hint=f"read {outcome.log_path}")
    if not ndjson_path.is_file() and not outcome.timed_out:
        last = outcome.output_tail[-1] if outcome.output_tail else "(no output)"
        raise BackendError(
            f"schemathesis exited with {outcome.exit_code} and wrote no report: {last}",
            hint=f"read {outcome.log_path}",
            log_path=outcome.log_path,
        )
    return SchemathesisResult(
        operations=results,
        errors=int(meta["errors"]),
        exit_code=outcome.exit_code,
        timed_out=outcome.timed_out,
        complete=bool(meta["complete"]) and not outcome.timed_out,
        seed=str(meta["seed"]),
        duration_s=outcome.duration_s,
        junit_path=junit_path,
        ndjson_path=ndjson_path,
        log_path=outcome.log_path,
    )
