"""Mutation score of (a) schemathesis alone with its defaults and (b) Pilotage's testing suite, side by side.

Usage: ``.venv/bin/python benchmarks/bench_mutation.py [--max-mutants 6] [--seed 1] [--json]``

Services: the generated checkout service (``pilotage.codegen`` from the bundled checkout spec; mutated files
``app/crud.py`` and ``app/store.py``, the resource logic) and the hand-written ``examples/inventory-service``
(``app/main.py``, ``app/logic.py``).

Mutation tool: mutmut 3 rewrites a package with trampolines and runs its own test runner in-process, which does not
fit a black-box HTTP tester that needs a restarted server per mutant. So a small documented AST operator set is
applied to a temporary copy, one mutant at a time:

* ``compare`` — flip one comparison (``<``↔``<=``, ``>``↔``>=``, ``==``↔``!=``, ``in``↔``not in``);
* ``status`` — change an HTTP status literal (200↔201, 204→200, 404→400, 409→400, 422→400);
* ``constant`` — an other integer literal ``n`` → ``n + 1``;
* ``no-raise`` — drop a ``raise`` guarded by an ``if`` (removed validation / not-found check);
* ``no-call`` — drop a statement that is a bare call (a write, an update, a commit).

Mutants are enumerated in source order, sampled with ``--seed``, ``--max-mutants`` per service. For each mutant an
instance is started (a mutant that does not start is killed for both tools), then (a) ``schemathesis run`` with
its defaults (all checks, 100 examples, all phases, fixed seed) and (b) ``run_test_suite`` (schemathesis with
Pilotage's settings + generated CRUD/property/docstring tests + the service's own tests). A mutant is *killed* by a
tool when the tool reports a failure that the unmutated service does not produce (failure signatures:
``(operation, check)`` for schemathesis, failing test node ids and finding kinds for the suite).
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import json
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from pilotage.runtime.base import scratch_instance  # noqa: E402
from pilotage.runtime.local import LocalRuntime  # noqa: E402
from pilotage.testing.process import child_env, run_process  # noqa: E402
from pilotage.testing.schemathesis_runner import load_operations, parse_ndjson  # noqa: E402
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


async def schemathesis_defaults(spec: Path, url: str, out: Path, seed: int) -> set[str]:
    """(a): ``schemathesis run`` with defaults; return its failure signatures (``operation|check``)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "schemathesis.toml").write_text("")
    argv = [sys.executable, "-m", "schemathesis.cli", "--config-file", str(out / "schemathesis.toml"), "run",
            str(spec), "--url", url, "--seed", str(seed), "--generation-database", "none", "--report", "ndjson",
            "--report-ndjson-path", str(out / "st.ndjson")]  # fmt: skip
    await run_process(argv, cwd=out, timeout_s=600, log_path=out / "st.log", env=child_env())
    ops, meta = parse_ndjson(out / "st.ndjson", load_operations(spec))
    sigs = {f"{op.operation}|{check}" for op in ops for check in op.checks_failed}
    return sigs | ({"errors"} if meta["errors"] else set())


async def pilotage_suite(service: Path, spec: Path, url: str, out: Path, seed: int) -> set[str]:
    """(b): Pilotage's suite against the same instance; return its failure signatures."""
    result = await run_test_suite(
        {"service_dir": str(service), "spec_path": str(spec), "out_dir": str(out), "base_url": url, "seed": seed,
         "flaky_reruns": 0, "unit_timeout_s": 300}
    )  # fmt: skip
    sigs = {f"test|{f['nodeid']}" for f in result["failures"]} | {f"finding|{f['kind']}" for f in result["findings"]}
    st = result["schemathesis"] or {}
    sigs |= {f"{op['operation']}|{c}" for op in st.get("operations", []) for c in op["checks_failed"]}
    return sigs


async def measure(service: Path, spec: Path, work: Path, seed: int, tag: str) -> tuple[set[str], set[str]] | None:
    """Start ``service`` and run both tools; None when the service does not start."""
    runtime = LocalRuntime(log_dir=work / "logs")
    try:
        async with scratch_instance(
            runtime, service="bench", version=tag, path=service, data_dir=work / tag, ready_timeout_s=20
        ) as instance:
            a = await schemathesis_defaults(spec, instance.url, work / tag / "a", seed)
            b = await pilotage_suite(service, spec, instance.url, work / tag / "b", seed)
            return a, b
    except Exception:  # noqa: BLE001 - a mutant that does not start
        return None
    finally:
        await runtime.close()


def prepare(work: Path) -> list[tuple[str, Path, Path, list[str]]]:
    from pilotage.codegen.generator import generate_service

    gen = work / "checkout-generated"
    spec = ROOT / "src/pilotage/examples/checkout-service/openapi.yaml"
    generate_service(spec, gen)
    inv = work / "inventory-handwritten"
    shutil.copytree(ROOT / "examples/inventory-service", inv)
    return [
        ("checkout (generated)", gen, gen / "app" / "openapi.json", ["app/crud.py", "app/store.py"]),
        ("inventory (hand-written)", inv, inv / "openapi.yaml", ["app/main.py", "app/logic.py"]),
    ]


async def bench(max_mutants: int, seed: int, progress: bool) -> list[dict[str, Any]]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-mutation-") as tmp:
        work = Path(tmp)
        for name, service, spec, files in prepare(work):
            baseline = await measure(service, spec, work, seed, "baseline")
            assert baseline is not None, f"{name}: the unmutated service does not start"
            points = [
                (rel, op, line, apply) for rel in files for op, line, apply in mutants((service / rel).read_text())
            ]
            chosen = random.Random(seed).sample(points, min(max_mutants, len(points)))
            row = {"service": name, "mutants": len(chosen), "points": len(points), "a": 0, "b": 0, "detail": []}
            for n, (rel, op, line, apply) in enumerate(chosen):
                original = (service / rel).read_text()
                started = time.monotonic()
                try:
                    (service / rel).write_text(apply())
                    got = await measure(service, spec, work, seed, f"m{n}")
                finally:
                    (service / rel).write_text(original)
                killed_a = got is None or bool(got[0] - baseline[0])
                killed_b = got is None or bool(got[1] - baseline[1])
                row["a"] += killed_a
                row["b"] += killed_b
                row["detail"].append({"file": rel, "line": line, "op": op, "a": killed_a, "b": killed_b})
                if progress:
                    print(f"  {name} {rel}:{line} {op}: schemathesis {'killed' if killed_a else 'survived'}, "
                          f"pilotage {'killed' if killed_b else 'survived'} ({time.monotonic() - started:.0f} s)",
                          file=sys.stderr, flush=True)  # fmt: skip
            rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-mutants", type=int, default=6, help="mutants per service (default 6)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    started = time.monotonic()
    rows = asyncio.run(bench(args.max_mutants, args.seed, not args.json))
    if args.json:
        print(json.dumps(rows, indent=1))
        return
    print("| service | mutants (of points) | (a) schemathesis defaults | (b) Pilotage testing agent |")
    print("|---|---|---|---|")
    total = {"m": 0, "a": 0, "b": 0}
    for row in rows:
        m = row["mutants"]
        total["m"] += m
        total["a"] += row["a"]
        total["b"] += row["b"]
        print(f"| {row['service']} | {m} ({row['points']}) | {row['a']}/{m} = {100 * row['a'] / max(m, 1):.0f}% | "
              f"{row['b']}/{m} = {100 * row['b'] / max(m, 1):.0f}% |")  # fmt: skip
    m = max(total["m"], 1)
    print(f"| **all** | {total['m']} | {total['a']}/{total['m']} = {100 * total['a'] / m:.0f}% | "
          f"{total['b']}/{total['m']} = {100 * total['b'] / m:.0f}% |")  # fmt: skip
    print(f"\n{time.monotonic() - started:.0f} s, seed {args.seed}")


if __name__ == "__main__":
    main()
