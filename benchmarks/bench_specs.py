"""Real-world OpenAPI documents through ``pilotage run`` (issue #18): every document of ``../shared/specs/``.

    python benchmarks/bench_specs.py [--specs DIR] [--only NAME ...] [--timeout-s 900] [--json]
                                      [--keep DIR [--keep-all]]

Each document runs as a user runs it: ``pilotage run --spec DOC --request REQUEST --workdir TMP/<doc> --json`` in a
fresh state folder, with a request in the grammar (``REQUESTS``: a new resource whose name the document does not
use). Measured per document, from the command's exit and the run's event log:

- ``outcome`` (promoted / rolled_back / failed / refused) and the run's wall time in seconds;
- ``operations``: the change's operations answered from state vs answered 501 (not implemented: the behaviour
  cannot be inferred, the operation waits in ``app/handlers.py``), from ``tests.completed``;
- ``change``: schemathesis' requests, server errors (5xx other than a declared 501) and the other failed checks
  (contract findings) of the change, from ``tests.completed``; ``document_gaps``: undocumented statuses HTTP forces
  (an unknown id's 404 …: ``pilotage.testing.forced_status``), by operation and status — the document's to fix, not
  a contract break;
- ``baseline``: the same figures for the baseline (the service generated from the unmodified document, the run's
  production, ``code.generated`` ``base_dir``). ``pilotage run`` tests only the change, so after the run the bench
  starts a scratch instance of the baseline as the testing agent does and runs the testing agent's schemathesis run
  (its settings and seed, all checks) against it with the original document (``spec.validated``
  ``base_spec_path``): :func:`pilotage.testing.baseline.schemathesis_on_baseline`. A baseline that cannot be
  started or tested gives ``{"error": "..."}``.

``--keep DIR`` keeps the run folder (``pilotage run``'s ``--workdir`` with its event log, generated services and
schemathesis reports, and the baseline's) of each document that missed a target under a new ``DIR/bench-specs-*/``,
and every document's with ``--keep-all``; the row's ``kept`` names the folder (None when it was removed). Without
``--keep`` the runs go to a temporary folder removed at the end.

Targets (issue 18): every document promoted; 0 server errors; 0 contract violations; no canned answers where the
document implies state (501 only where the behaviour cannot be inferred). Exit 0 when every target is met.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from pilotage.agents.testing import suite_options  # noqa: E402
from pilotage.bus.sqlite import SQLiteBus  # noqa: E402
from pilotage.errors import PilotageError  # noqa: E402
from pilotage.events import CloudEvent  # noqa: E402
from pilotage.runtime.local import LocalRuntime  # noqa: E402
from pilotage.settings import Settings  # noqa: E402
from pilotage.testing.baseline import schemathesis_on_baseline  # noqa: E402
from pilotage.testing.credentials import ensure_principal  # noqa: E402

SPECS = ROOT.parent / "shared" / "specs"
#: The request per document; a document not listed gets ``DEFAULT_REQUEST`` (a resource none of them has).
DEFAULT_REQUEST = "Add bench note support with fields title:string, pages:integer?"
REQUESTS = {"petstore3": "Add coupon support with fields code:string, percent:integer"}


def cli(work: Path, *args: str, timeout_s: float) -> tuple[int, str, str, float]:
    """Run ``pilotage ARGS`` in ``work``; return exit code, stdout, stderr and seconds (124 on a timeout)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PILOTAGE_")}
    env["PYTHONPATH"] = str(ROOT / "src")
    started = time.monotonic()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "pilotage", *args], cwd=work, env=env, capture_output=True, text=True,
            timeout=timeout_s, check=False,
        )  # fmt: skip
    except subprocess.TimeoutExpired as exc:
        return 124, str(exc.stdout or ""), f"timed out after {timeout_s:.0f} s", time.monotonic() - started
    return done.returncode, done.stdout, done.stderr, time.monotonic() - started


def run_events(state: Path) -> list[CloudEvent]:
    """Every event of the state folder's log (empty when the run never opened it)."""
    path = state / "events.db"
    if not path.exists():
        return []

    async def read() -> list[CloudEvent]:
        async with SQLiteBus(f"sqlite:///{path}") as bus:
            return [r.event for r in await bus.read(1, 1_000_000)]

    return asyncio.run(read())


def _last(events: list[CloudEvent], kind: str) -> dict[str, Any]:
    found = [e.data for e in events if e.type == f"dev.pilotage.{kind}"]
    return found[-1] if found else {}


def operation_counts(tests: dict[str, Any]) -> dict[str, int | None]:
    """``{"state": n, "not_implemented": n}``: the change's operations that answered schemathesis from state vs 501.

    From ``tests.completed``: every operation schemathesis exercised, less those that answered 501 (not
    implemented: waiting in ``app/handlers.py``). None where the run never tested.
    """
    found = tests.get("schemathesis") or {}
    operations = [op for op in found.get("operations") or [] if op.get("requests")]
    missing = found.get("not_implemented") or []
    if not operations:
        return {"state": None, "not_implemented": None}
    return {"state": len(operations) - len(missing), "not_implemented": len(missing)}


def schemathesis_counts(tests: dict[str, Any]) -> dict[str, Any]:
    """Requests, server errors and failed checks of one ``tests.completed`` (zeros for a run that had none)."""
    found = tests.get("schemathesis") or {}
    contract = found.get("contract") or {}
    return {
        "requests": int(found.get("requests") or 0),
        "server_errors": int(found.get("server_errors") or 0),
        "contract_findings": sum(len(c.get("operations") or []) for c in contract.values()),
        "checks": sorted(contract),  # the contract gate's checks that failed (deploy_contract.rego)
        "other_checks": sorted(set(found.get("checks_failed") or []) - set(contract)),
        "document_gaps": [f"{g.get('status')} {g.get('operation')}" for g in found.get("document_gaps") or []],
    }


def baseline_counts(events: list[CloudEvent], out_dir: Path, settings: Settings | None = None) -> dict[str, Any]:
    """The baseline's :func:`schemathesis_counts`: the testing agent's schemathesis run against a scratch baseline.

    Reads the run's ``flow.started`` (service), ``code.generated`` (``base_dir``, the change's ``commit``: the seed)
    and ``spec.validated`` (``base_spec_path``, the original document as the run read it); ``settings`` are the
    run's, by default the defaults (``cli`` drops ``PILOTAGE_*`` and the run's folder has no ``pilotage.toml``). The
    instance, its data and schemathesis' reports go under ``out_dir``.

    Returns:
        :func:`schemathesis_counts`' shape, or ``{"error": "..."}`` (one line) when the run left no baseline or it
        could not be started or tested.
    """
    code, spec = _last(events, "code.generated"), _last(events, "spec.validated")
    if not code.get("base_dir") or not code.get("commit") or not spec.get("base_spec_path"):
        return {"error": "the run left no baseline (code.generated base_dir, spec.validated base_spec_path)"}
    settings = settings or Settings()
    ensure_principal()  # as `pilotage run` does: the instance and schemathesis share the run's test principal
    request = {
        **suite_options(settings, str(code["commit"])),
        "service": _last(events, "flow.started").get("service") or "service",
        "commit": str(code["commit"]),
        "base_dir": str(code["base_dir"]),
        "spec_path": str(spec["base_spec_path"]),
        "out_dir": str(out_dir),
        "ready_timeout_s": settings.service_ready_timeout_s,
    }

    async def run() -> dict[str, Any]:
        runtime = LocalRuntime(log_dir=out_dir / "runtime")
        try:
            return await schemathesis_on_baseline(runtime, request)
        finally:
            await runtime.close()

    try:
        found = asyncio.run(run())
    except (PilotageError, OSError) as exc:  # the runtime's own failures: a row, never a traceback
        return {"error": f"the baseline could not be tested: {str(exc).splitlines()[0][:300] if str(exc) else exc!r}"}
    if "error" in found:
        return {"error": str(found["error"])}
    return schemathesis_counts(found)


def measure(spec: Path, root: Path, timeout_s: float) -> dict[str, Any]:
    """Run one document and return its row (see the module docstring)."""
    name = spec.stem
    work = root / name
    work.mkdir(parents=True)
    request = REQUESTS.get(name, DEFAULT_REQUEST)
    code, stdout, stderr, seconds = cli(
        work, "run", "--spec", str(spec), "--request", request, "--workdir", str(work / "state"), "--json",
        timeout_s=timeout_s,
    )  # fmt: skip
    try:
        summary = json.loads(stdout)
    except json.JSONDecodeError:
        summary = {}
    events = run_events(work / "state")
    tests = [e.data for e in events if e.type == "dev.pilotage.tests.completed"]
    outcome = summary.get("outcome") if code == 0 else ("refused" if code == 2 else "failed")
    if code == 1 and summary.get("outcome") not in (None, "none"):
        outcome = summary["outcome"]  # rolled back (or paused): the rollout decided
    return {
        "document": spec.name,
        "request": request,
        "exit": code,
        "outcome": outcome or "failed",
        "seconds": round(seconds, 1),
        "error": summary.get("error") or (stderr.strip().splitlines() or [""])[-1][:300],
        "operations": operation_counts(tests[-1] if tests else {}),
        "baseline": baseline_counts(events, work / "baseline-tests") if events else {"error": "the run left no log"},
        "change": schemathesis_counts(tests[-1]) if tests else None,
    }


def met(row: dict[str, Any]) -> bool:
    """The targets for one row: promoted, 0 server errors and 0 contract findings on the change."""
    change = row["change"] or {}
    return row["outcome"] == "promoted" and not change.get("server_errors") and not change.get("contract_findings")


def keep_root(keep: Path) -> Path:
    """A new folder ``KEEP/bench-specs-XXXXXXXX`` for this invocation's run folders (``KEEP`` created if missing).

    Raises:
        OSError: ``KEEP`` cannot be created (a file of that name, no permission).
    """
    keep.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix="bench-specs-", dir=keep)).resolve()


def settle(row: dict[str, Any], work: Path, keep_all: bool) -> dict[str, Any]:
    """Keep ``work`` (one document's run folder) when ``keep_all`` or the row missed a target, else remove it.

    Returns:
        The row with ``kept``: the folder's path as a string, or None when it was removed.
    """
    if keep_all or not met(row):
        return {**row, "kept": str(work)}
    shutil.rmtree(work, ignore_errors=True)
    return {**row, "kept": None}


def _figures(counts: dict[str, Any] | None) -> tuple[str, str, str, str]:
    """``(requests, 5xx, contract findings with their checks, document gaps)`` of one side, ``-`` when absent."""
    if not counts or "error" in counts:
        mark = "error" if counts else "-"
        return mark, mark, mark, mark
    findings = f"{counts['contract_findings']} {','.join(counts['checks'])}".strip()
    return str(counts["requests"]), str(counts["server_errors"]), findings, str(len(counts["document_gaps"]))


def table(rows: list[dict[str, Any]]) -> str:
    """A Markdown table of the rows (the README's): schemathesis' figures as baseline / change."""
    head = (
        "| document | outcome | s | ops state / 501 | schemathesis requests base / change | 5xx base / change "
        "| contract findings base / change | document gaps base / change |"
    )
    lines = [head, "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ops = r["operations"]
        served = f"{ops['state'] if ops['state'] is not None else '?'} / {ops['not_implemented'] or 0}"
        pairs = " | ".join(f"{b} / {c}" for b, c in zip(_figures(r["baseline"]), _figures(r["change"]), strict=True))
        lines.append(f"| {r['document']} | {r['outcome']} | {r['seconds']} | {served} | {pairs} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--specs", type=Path, default=SPECS, help="folder of OpenAPI documents (default %(default)s)")
    parser.add_argument("--only", nargs="*", default=[], help="document stems to run (default: all)")
    parser.add_argument("--timeout-s", type=float, default=900.0, help="per document (default %(default)s)")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    parser.add_argument("--keep", type=Path, metavar="DIR", help="keep the run folders that missed a target here")
    parser.add_argument("--keep-all", action="store_true", help="with --keep: keep every document's run folder")
    args = parser.parse_args(argv)
    if args.keep_all and args.keep is None:
        parser.error("--keep-all needs --keep DIR")
    specs = sorted(p for p in args.specs.glob("*.y*ml") if not args.only or p.stem in args.only)
    if not specs:
        print(f"error: no OpenAPI document in {args.specs} (fix: --specs DIR)", file=sys.stderr)
        return 2
    try:
        kept = keep_root(args.keep) if args.keep is not None else None
    except OSError as exc:
        print(f"error: --keep {args.keep}: {exc.strerror or exc} (fix: name a folder you can write)", file=sys.stderr)
        return 2
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-specs-") as tmp:
        for spec in specs:
            print(f"… {spec.name}", file=sys.stderr, flush=True)
            row = measure(spec, kept or Path(tmp), args.timeout_s)
            rows.append(settle(row, kept / spec.stem, args.keep_all) if kept else {**row, "kept": None})
            print(f"  {rows[-1]['outcome']} in {rows[-1]['seconds']} s {rows[-1]['error'] or ''}", file=sys.stderr)
            if "error" in (rows[-1]["baseline"] or {}):
                print(f"  baseline: {rows[-1]['baseline']['error']}", file=sys.stderr)
            if rows[-1]["kept"]:
                print(f"  kept: {rows[-1]['kept']}", file=sys.stderr)
    if kept and not any(kept.iterdir()):
        kept.rmdir()  # every run met the targets and none was to be kept: no empty folder left behind
    print(json.dumps(rows, indent=2) if args.json else table(rows))
    if not args.json:
        print("".join(f"\nkept {r['document']}: {r['kept']}" for r in rows if r["kept"]))
    ok = sum(met(r) for r in rows)
    print(f"targets met: {ok}/{len(rows)} documents", file=sys.stderr)
    return 0 if ok == len(rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
