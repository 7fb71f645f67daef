"""Mutation score of (a) schemathesis alone with its defaults and (b) Pilotage's testing suite, side by side.

Usage: ``.venv/bin/python benchmarks/bench_mutation.py [--max-mutants 20 | --all] [--seed 1] [--json]
[--services checkout,petstore,inventory]`` (``--all``: every mutation point on covered lines, no sample;
121 mutants; the 141 of the four services then took about 35 minutes on 2 cores)

Services: two generated ones (``pilotage.codegen`` from the bundled checkout spec and from the Petstore 3 spec in
``tests/fixtures/specs``; mutated files ``app/crud.py`` and ``app/store.py``, the resource logic) and the
hand-written ``examples/inventory-service`` (``app/main.py``, ``app/logic.py``). A fourth, ``heroes`` (FastAPI's SQL
tutorial copied into ``examples/heroes-service``), was removed with the copied code in issue #17.

Mutation tool: mutmut 3 rewrites a package with trampolines and runs its own test runner in-process, which does not
fit a black-box HTTP tester that needs a restarted server per mutant. So a small documented AST operator set is
applied to the service folder, one mutant at a time:

* ``compare`` — flip one comparison (``<``↔``<=``, ``>``↔``>=``, ``==``↔``!=``, ``in``↔``not in``);
* ``status`` — change an HTTP status literal (200↔201, 204→200, 404→400, 409→400, 422→400);
* ``constant`` — an other integer literal ``n`` → ``n + 1``;
* ``no-raise`` — drop a ``raise`` guarded by an ``if`` (removed validation / not-found check);
* ``no-call`` — drop a statement that is a bare call (a write, an update, a commit).

Method. Both tools get the same authentication: headers that satisfy the spec's security schemes
(:func:`auth_headers`, what a user puts in ``settings.testing_auth_headers``). Per service, a *baseline* on the
unmutated code: (a) ``schemathesis run`` with its defaults (all checks, 100 examples, all phases, fixed seed) and
(b) ``run_test_suite`` with the testing agent's settings (schemathesis with Pilotage's settings + the generated
CRUD chains, property and docstring tests + the service's own tests), each against its own fresh instance; the
baseline writes Pilotage's tests once (tests written for the original, run against every mutant: no ghostwriter
per mutant) and records, with coverage.py's subprocess measurement, the lines of ``app/`` that the two runs
execute. Its failures are printed (the baseline check). Mutants are sampled (``--max-mutants`` per service,
``--seed``) from the mutation points on *covered* lines — lines that at least one of the two baseline runs
executes — as in Stryker's "mutation score based on covered code": a point no run reaches sits in code the
service's API never calls (the generated services carry generic handlers, e.g. body-keyed replace, that a spec
without such an operation never routes to), so no test of either tool could kill it; the table prints how many
points there are and how many are covered. A mutant whose AST equals the original's is *equivalent* and excluded;
the others run (a) and (b) concurrently against two fresh instances of the mutant. A mutant that does not start
is killed by both. A mutant is *killed* by a tool when the tool reports a failure signature the baseline does not
(``operation|check`` for schemathesis; for the suite, those of its schemathesis run, the failing tests' node ids —
with the oracle that failed for the generated CRUD tests, ``test_update_pet|update/compare``, as fine as
schemathesis' ``operation|check`` — and finding kinds); flaky reruns are off, the seeds are fixed.
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import contextlib
import json
import os
import random
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import coverage  # noqa: E402
import yaml  # noqa: E402

from pilotage.errors import BackendError  # noqa: E402
from pilotage.runtime.base import scratch_instance  # noqa: E402
from pilotage.runtime.local import LocalRuntime  # noqa: E402
from pilotage.settings import Settings  # noqa: E402
from pilotage.testing.process import run_process  # noqa: E402
from pilotage.testing.schemathesis_results import parse_ndjson  # noqa: E402
from pilotage.testing.schemathesis_runner import load_operations  # noqa: E402
from pilotage.testing.suite import run_test_suite  # noqa: E402

FLIP = {ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt, ast.Eq: ast.NotEq, ast.NotEq: ast.Eq,
        ast.In: ast.NotIn, ast.NotIn: ast.In}  # fmt: skip
STATUS = {200: 201, 201: 200, 204: 200, 404: 400, 409: 400, 422: 400}


def _op(node: ast.AST) -> str | None:
    if isinstance(node, ast.Compare) and type(node.ops[0]) in FLIP:
        return "compare"
    if isinstance(node, ast.Constant) and type(node.value) is int:
        return "status" if node.value in STATUS else "constant"
    if isinstance(node, ast.If) and any(isinstance(s, ast.Raise) for s in node.body):
        return "no-raise"
    if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call) and node.col_offset > 0:
        return "no-call"
    return None


def mutants(source: str) -> list[tuple[str, int, Any]]:
    """Return ``(operator, line, apply)`` for every mutation point of ``source``; ``apply()`` gives mutated code."""
    found = [(op, node.lineno, index) for index, node in enumerate(ast.walk(ast.parse(source))) if (op := _op(node))]

    def make(op: str, index: int) -> Any:
        def apply() -> str:
            copy = ast.parse(source)
            target = list(ast.walk(copy))[index]
            if op == "compare":
                target.ops[0] = FLIP[type(target.ops[0])]()
            elif op == "status":
                target.value = STATUS[target.value]
            elif op == "constant":
                target.value = target.value + 1
            elif op == "no-raise":
                target.body = [ast.Pass() if isinstance(s, ast.Raise) else s for s in target.body]
            elif op == "no-call":
                target.value = ast.Constant(None)
            return ast.unparse(copy)

        return apply

    return [(op, line, make(op, index)) for op, line, index in found]


def auth_headers(spec: Path) -> dict[str, str]:
    """Headers that satisfy the spec's security requirement, as a user sets ``settings.testing_auth_headers``.

    ``apiKey`` in a header → that header; ``http basic`` → a Basic credential; ``http bearer``, ``oauth2`` and
    ``openIdConnect`` → a Bearer token. Empty when the spec declares no security (the generated services accept any
    well-formed credential: they check presence, ``PILOTAGE_ENFORCE_AUTH``).
    """
    doc = yaml.safe_load(spec.read_text(encoding="utf-8"))
    headers: dict[str, str] = {}
    for scheme in ((doc.get("components") or {}).get("securitySchemes") or {}).values():
        kind = scheme.get("type")
        if kind == "apiKey" and scheme.get("in", "header") == "header":
            headers[scheme["name"]] = "pilotage-bench"
        elif kind == "http" and str(scheme.get("scheme", "")).lower() == "basic":
            headers.setdefault("Authorization", "Basic YmVuY2g6YmVuY2g=")
        elif kind in ("http", "oauth2", "openIdConnect"):
            headers.setdefault("Authorization", "Bearer pilotage-bench")
    return headers


async def schemathesis_defaults(spec: Path, url: str, out: Path, seed: int, headers: dict[str, str]) -> set[str]:
    """(a): ``schemathesis run`` with defaults (plus the auth headers); return failure signatures."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "schemathesis.toml").write_text("")
    argv = [sys.executable, "-m", "schemathesis.cli", "--config-file", str(out / "schemathesis.toml"), "run",
            str(spec), "--url", url, "--seed", str(seed), "--generation-database", "none", "--report", "ndjson",
            "--report-ndjson-path", str(out / "st.ndjson")]  # fmt: skip
    for name, value in headers.items():
        argv += ["--header", f"{name}: {value}"]
    await run_process(argv, cwd=out, timeout_s=600, log_path=out / "st.log")
    ops, meta = parse_ndjson(out / "st.ndjson", load_operations(spec))
    sigs = {f"{op.operation}|{check}" for op in ops for check in op.checks_failed}
    return sigs | ({"errors"} if meta["errors"] else set())


async def pilotage_suite(
    service: Path, spec: Path, url: str, out: Path, seed: int, headers: dict[str, str], generate: bool
) -> tuple[set[str], dict[str, Any]]:
    """(b): Pilotage's suite against a running instance; return its failure signatures and the raw result."""
    settings = Settings()  # the testing agent's request (agents/testing.py), without the flaky reruns
    result = await run_test_suite(
        {"service_dir": str(service), "spec_path": str(spec), "out_dir": str(out), "base_url": url, "seed": seed,
         "max_examples": settings.schemathesis_max_examples, "crud_examples": settings.testing_crud_examples,
         "request_timeout_s": settings.testing_request_timeout_s, "timeout_s": settings.testing_timeout_s,
         "unit_timeout_s": settings.testing_unit_timeout_s, "flaky_reruns": 0, "headers": headers,
         "generate": generate}
    )  # fmt: skip
    sigs = {f"test|{f['nodeid']}{_oracle(f.get('message'))}" for f in result["failures"]}
    sigs |= {f"finding|{f['kind']}" for f in result["findings"]}
    st = result["schemathesis"] or {}
    sigs |= {f"{op['operation']}|{c}" for op in st.get("operations", []) for c in op["checks_failed"]}
    return sigs, result


def _oracle(message: str | None) -> str:
    """``|STEP/CHECK`` of a generated CRUD test's failure (``[oracle update/compare] ...``), else ``""``."""
    found = re.search(r"\[oracle ([^\]]+)\]", message or "")
    return f"|{found.group(1)}" if found else ""


async def _one(service: Path, work: Path, tag: str, run: Any) -> Any:
    runtime = LocalRuntime(log_dir=work / "logs" / tag)
    try:
        async with scratch_instance(
            runtime, service="bench", version=tag, path=service, data_dir=work / tag, ready_timeout_s=20
        ) as instance:
            return await run(instance.url)
    except BackendError:  # a mutant that does not start
        return None
    finally:
        await runtime.close()


async def measure(
    service: Path, spec: Path, work: Path, seed: int, tag: str, headers: dict[str, str], generate: bool = False
) -> tuple[set[str], set[str], dict[str, Any]] | None:
    """Run (a) and (b) concurrently, each against its own fresh instance; None when the service does not start."""

    async def run_a(url: str) -> set[str]:
        started = time.monotonic()
        try:
            return await schemathesis_defaults(spec, url, work / tag / "a", seed, headers)
        finally:
            TIMES[tag + "-a"] = time.monotonic() - started

    async def run_b(url: str) -> tuple[set[str], dict[str, Any]]:
        started = time.monotonic()
        try:
            return await pilotage_suite(service, spec, url, work / tag / "b", seed, headers, generate)
        finally:
            TIMES[tag + "-b"] = time.monotonic() - started

    a, b = await asyncio.gather(_one(service, work, tag + "-a", run_a), _one(service, work, tag + "-b", run_b))
    if a is None or b is None:
        return None
    return a, b[0], b[1]


#: Seconds of each tool run, by tag (printed with the progress lines).
TIMES: dict[str, float] = {}
SERVICES = {
    "checkout": ("checkout (generated)", "src/pilotage/examples/checkout-service/openapi.yaml"),
    "petstore": ("petstore (generated)", "tests/fixtures/specs/petstore3.yaml"),
    "inventory": ("inventory (hand-written)", "examples/inventory-service"),
}
#: Hand-written services: their spec and the files mutated.
HAND_WRITTEN = {
    "inventory": ("openapi.yaml", ["app/main.py", "app/logic.py"]),
}


def prepare(work: Path, names: list[str]) -> list[tuple[str, Path, Path, list[str]]]:
    """Copy or generate each service into ``work``: ``(label, folder, spec, mutated files)``."""
    from pilotage.codegen.generator import generate_service

    out = []
    for name in names:
        label, source = SERVICES[name]
        folder = work / name
        if name in HAND_WRITTEN:
            spec, files = HAND_WRITTEN[name]
            shutil.copytree(ROOT / source, folder)
            out.append((label, folder, folder / spec, files))
        else:
            generate_service(ROOT / source, folder)
            out.append((label, folder, folder / "app" / "openapi.json", ["app/crud.py", "app/store.py"]))
    return out


@contextlib.contextmanager
def line_coverage(service: Path, work: Path) -> Iterator[dict[str, set[int]]]:
    """Record the lines of ``service/app`` that every Python process started inside the block executes.

    coverage.py's subprocess measurement (``COVERAGE_PROCESS_START`` and a ``sitecustomize`` that calls
    ``coverage.process_startup()``): the instances (uvicorn), the generated and own tests, the ghostwriter. The
    yielded dict, ``{relative path: line numbers}``, is filled when the block ends.
    """
    folder = work / "coverage"
    folder.mkdir(parents=True, exist_ok=True)
    rc = folder / "coveragerc"
    rc.write_text(f"[run]\nsource = {service / 'app'}\nparallel = true\nsigterm = true\ndata_file = {folder}/cov\n"
                  "disable_warnings = no-data-collected, module-not-measured, module-not-imported\n")  # fmt: skip
    # The rc path is set here too: the sandbox environment of run processes (pilotage.runtime.sandbox, issue #15)
    # passes PYTHONPATH, which finds this file, but not COVERAGE_PROCESS_START.
    startup = f"import os\n\nos.environ.setdefault('COVERAGE_PROCESS_START', {str(rc)!r})\n"
    (folder / "sitecustomize.py").write_text(startup + "import coverage\n\ncoverage.process_startup()\n")
    saved = {k: os.environ.get(k) for k in ("COVERAGE_PROCESS_START", "PYTHONPATH")}
    os.environ["COVERAGE_PROCESS_START"] = str(rc)
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(folder), saved["PYTHONPATH"]]))
    lines: dict[str, set[int]] = {}
    try:
        yield lines
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        cov = coverage.Coverage(data_file=str(folder / "cov"), config_file=str(rc))
        cov.combine([str(folder)])
        data = cov.get_data()
        for name in data.measured_files():
            lines[Path(name).resolve().relative_to(service.resolve()).as_posix()] = set(data.lines(name) or ())


def _equivalent(original: str, mutated: str) -> bool:
    """The documented equivalence rule: the mutant's AST equals the original's (e.g. ``-0`` → ``-1`` folded)."""
    return ast.dump(ast.parse(original)) == ast.dump(ast.parse(mutated))


async def bench(max_mutants: int, seed: int, names: list[str], progress: bool) -> list[dict[str, Any]]:
    """Measure every service: baseline (tests generated once from the unmutated code), then each sampled mutant."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-mutation-") as tmp:
        work = Path(tmp)
        for name, service, spec, files in prepare(work, names):
            headers = auth_headers(spec)
            started = time.monotonic()
            with line_coverage(service, work / service.name) as reached:
                baseline = await measure(service, spec, work, seed, f"{service.name}-base", headers, generate=True)
            if baseline is None:
                raise SystemExit(f"{name}: the unmutated service does not start")
            base_a, base_b, raw = baseline
            generated = {k: raw["generated"].get(k) for k in ("crud", "properties", "docstrings")}
            check = {"a_failures": sorted(base_a), "b_failures": sorted(base_b), "generated": generated,
                     "auth_headers": sorted(headers), "seconds": round(time.monotonic() - started)}  # fmt: skip
            if progress:
                print(f"{name}: baseline (unmutated) schemathesis failures {sorted(base_a) or 'none'}; Pilotage "
                      f"failures {sorted(base_b) or 'none'}; generated {generated}; auth {sorted(headers) or 'none'}"
                      f" ({check['seconds']} s)", file=sys.stderr, flush=True)  # fmt: skip
            points = []
            for rel in files:
                original = (service / rel).read_text()
                points += [(rel, op, line, apply) for op, line, apply in mutants(original)]
            covered = [p for p in points if p[2] in reached.get(p[0], set())]  # covered code (module docstring)
            chosen = random.Random(seed).sample(covered, min(max_mutants, len(covered)))
            row: dict[str, Any] = {"service": name, "mutants": 0, "points": len(points), "covered": len(covered),
                                   "a": 0, "b": 0, "equivalent": 0, "baseline": check, "detail": []}  # fmt: skip
            if progress:
                print(f"{name}: {len(covered)} of {len(points)} mutation points on lines a baseline run executes; "
                      f"sampling {len(chosen)}", file=sys.stderr, flush=True)  # fmt: skip
            for n, (rel, op, line, apply) in enumerate(chosen):
                original = (service / rel).read_text()
                mutated = apply()
                if _equivalent(original, mutated):
                    row["equivalent"] += 1
                    continue
                started = time.monotonic()
                try:
                    (service / rel).write_text(mutated)
                    got = await measure(service, spec, work, seed, f"{service.name}-m{n}", headers)
                finally:
                    (service / rel).write_text(original)
                killed_a = got is None or bool(got[0] - base_a)
                killed_b = got is None or bool(got[1] - base_b)
                row["mutants"] += 1
                row["a"] += killed_a
                row["b"] += killed_b
                new_b = sorted(got[1] - base_b)[:3] if got else ["does not start"]
                row["detail"].append({"file": rel, "line": line, "op": op, "a": killed_a, "b": killed_b,
                                      "b_new": new_b})  # fmt: skip
                if progress:
                    print(f"  {name} {rel}:{line} {op}: schemathesis {'killed' if killed_a else 'survived'}, "
                          f"pilotage {'killed' if killed_b else 'survived'} {new_b} "
                          f"({time.monotonic() - started:.0f} s)", file=sys.stderr, flush=True)  # fmt: skip
            rows.append(row)
    return rows


def _pct(killed: int, of: int) -> str:
    return f"{killed}/{of} = {100 * killed / max(of, 1):.0f}%"


def _table_row(label: str, c: dict[str, int]) -> str:
    return f"| {label} | {c['p']} | {c['c']} | {c['m']} | {c['e']} | {_pct(c['a'], c['m'])} | {_pct(c['b'], c['m'])} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-mutants", type=int, default=20, help="mutants sampled per service (default 20)")
    parser.add_argument("--all", action="store_true", help="run every mutation point on covered lines (no sample)")
    parser.add_argument("--services", default="checkout,petstore,inventory", help="comma-separated, of: "
                        + ", ".join(SERVICES))  # fmt: skip
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    started = time.monotonic()
    names = [n.strip() for n in args.services.split(",") if n.strip()]
    unknown = sorted(set(names) - set(SERVICES))
    if unknown:
        parser.error(f"unknown service(s) {unknown}: choose from {sorted(SERVICES)}")
    if not names or len(set(names)) != len(names):
        parser.error(f"--services needs each service once, at least one: got {args.services!r}")
    if args.max_mutants < 0:
        parser.error(f"--max-mutants must be >= 0, got {args.max_mutants}")
    limit = sys.maxsize if args.all else args.max_mutants
    rows = asyncio.run(bench(limit, args.seed, names, not args.json))
    if args.json:
        print(json.dumps(rows, indent=1))
        return
    print("| service | mutation points | on covered lines | mutants run | equivalent, excluded | "
          "(a) schemathesis defaults | (b) Pilotage testing agent |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    total = {"m": 0, "a": 0, "b": 0, "c": 0, "e": 0, "p": 0}
    for row in rows:
        counts = {"m": row["mutants"], "a": row["a"], "b": row["b"], "c": row["covered"], "e": row["equivalent"],
                  "p": row["points"]}  # fmt: skip
        total = {key: total[key] + counts[key] for key in total}
        print(_table_row(row["service"], counts))
    print(_table_row("**all**", total))
    print(f"\n(b) - (a) = {100 * (total['b'] - total['a']) / max(total['m'], 1):+.0f} points (target: +20)")
    for row in rows:
        print(f"{row['service']}: " + "; ".join(
            f"{d['file']}:{d['line']} {d['op']} a={'K' if d['a'] else '-'} b={'K' if d['b'] else '-'}"
            for d in row["detail"]))  # fmt: skip
    for row in rows:
        base = row["baseline"]
        print(
            f"baseline {row['service']}: schemathesis failures {base['a_failures'] or 'none'}; Pilotage failures "
            f"{base['b_failures'] or 'none'}; auth headers {base['auth_headers'] or 'none'}"
        )
    print(f"\n{time.monotonic() - started:.0f} s, seed {args.seed}")


if __name__ == "__main__":
    main()
