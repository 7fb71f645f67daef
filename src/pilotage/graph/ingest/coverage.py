"""``TESTS`` edges from coverage.py per-test contexts (``graph ingest --coverage``): which test ran which function.

The repository's tests run in a subprocess, ``python -m coverage run -m pytest`` with coverage.py's
``dynamic_context = test_function`` (each line records the test functions that executed it, named
``module.test_name`` / ``module.Class.test_name``, which is the key of the ingester's Test nodes), measuring only the
files under the repository (``source``). A line is credited to the innermost Function (or Class body) whose
``line..end_line`` range holds it, and the edge ``Test -TESTS-> Function`` gets ``source: coverage`` and ``lines``
(how many of the function's lines the test ran). This runs the repository's code: it is opt-in, and the run gets
the allow-list environment and its own process group of :mod:`pilotage.runtime.sandbox` (issue #15).

Failing tests still give coverage; a run that records no test context (no tests, import errors, timeout) leaves the
static ``TESTS`` edges alone and says why in the report.
"""

from __future__ import annotations

import bisect
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from pilotage.graph.base import Graph
from pilotage.runtime.sandbox import launch_options, sandbox_env

__all__ = ["coverage_contexts", "coverage_edges"]


def coverage_contexts(root: Path, timeout_s: float = 600.0) -> tuple[dict[str, dict[int, list[str]]], str]:
    """Run the tests under ``root`` with per-test contexts.

    Args:
        root: the repository folder (the working directory of the run, and on ``PYTHONPATH`` with ``root/src``).
        timeout_s: wall-clock bound of the test run (seconds); the run is killed after it.

    Returns:
        ``(file path → line → test contexts, status)``; status is ``"ok"`` or why nothing was measured.
    """
    from coverage import CoverageData

    with tempfile.TemporaryDirectory(prefix="pilotage-cov-") as tmp:
        data_file = Path(tmp, ".coverage")
        rc = Path(tmp, "coveragerc")
        rc.write_text(f"[run]\ndynamic_context = test_function\ndata_file = {data_file}\nsource =\n    {root}\n")
        # the repository's tests are untrusted code: the allow-list environment, their own process group
        env = sandbox_env(
            {"PYTHONPATH": os.pathsep.join([str(root), str(root / "src"), os.environ.get("PYTHONPATH", "")])}
        )
        cmd = [
            sys.executable,
            "-m",
            "coverage",
            "run",
            f"--rcfile={rc}",
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
        ]
        try:
            proc = subprocess.run(  # noqa: S603 - fixed command, no shell
                cmd, capture_output=True, text=True, timeout=timeout_s, check=False, **launch_options(root, env)
            )
        except subprocess.TimeoutExpired:
            return {}, f"the test run took more than {timeout_s:g} s"
        if not data_file.exists():
            tail = " ".join((proc.stdout + proc.stderr).split()[-20:])
            return {}, f"no coverage data (pytest exit {proc.returncode}): {tail}"
        data = CoverageData(basename=str(data_file))
        data.read()
        out: dict[str, dict[int, list[str]]] = {}
        for path in data.measured_files():
            lines = {n: [c for c in cs if c] for n, cs in data.contexts_by_lineno(path).items()}
            lines = {n: cs for n, cs in lines.items() if cs}
            if lines:
                out[os.path.realpath(path)] = lines
    if not out:
        return {}, f"no test recorded a line (pytest exit {proc.returncode})"
    return out, "ok"


def coverage_edges(
    graph: Graph, root: str, contexts: dict[str, dict[int, list[str]]]
) -> tuple[list[tuple[str, str, str, dict[str, Any]]], list[tuple[str, str, str]]]:
    """Turn per-line test contexts into ``Test -TESTS-> Function/Class`` edges for the modules of ``root``.

    Returns:
        ``(edges to write, stale coverage edges of this root to delete)``.
    """
    modules = {
        r["path"]: r["name"]
        for r in graph.query(
            "SELECT key AS name, json_extract(props, '$.path') AS path FROM nodes "
            "WHERE kind = 'Module' AND json_extract(props, '$.root') = :root",
            {"root": root},
        )
    }
    ranges: dict[str, list[tuple[int, int, str]]] = {}
    for r in graph.query(
        "SELECT id, json_extract(props, '$.module') AS module, json_extract(props, '$.line') AS line, "
        "json_extract(props, '$.end_line') AS end_line FROM nodes "
        "WHERE kind IN ('Function', 'Class') AND json_extract(props, '$.root') = :root",
        {"root": root},
    ):
        ranges.setdefault(r["module"], []).append((r["line"], r["end_line"], r["id"]))
    tests = {
        r["id"]
        for r in graph.query(
            "SELECT id FROM nodes WHERE kind = 'Test' AND json_extract(props, '$.root') = :root", {"root": root}
        )
    }
    counts: dict[tuple[str, str], int] = {}
    for path, lines in contexts.items():
        module = modules.get(path)
        spans = sorted(ranges.get(module or "", []))
        starts = [s[0] for s in spans]
        for line, names in lines.items():
            owner = _innermost(spans, starts, line)
            if owner is None:
                continue
            for name in names:
                test = f"Test:{name}"
                if test in tests:
                    counts[(test, owner)] = counts.get((test, owner), 0) + 1
    edges = [(t, "TESTS", f, {"source": "coverage", "lines": n}) for (t, f), n in sorted(counts.items())]
    stale = [
        (r["src"], "TESTS", r["dst"])
        for r in graph.query(
            "SELECT e.src, e.dst FROM edges e JOIN nodes n ON n.id = e.src WHERE e.type = 'TESTS' "
            "AND json_extract(e.props, '$.source') = 'coverage' AND json_extract(n.props, '$.root') = :root",
            {"root": root},
        )
        if (r["src"], r["dst"]) not in counts
    ]
    return edges, stale


def _innermost(spans: list[tuple[int, int, str]], starts: list[int], line: int) -> str | None:
    """Return the id of the narrowest span holding ``line`` (spans sorted by start)."""
    best: tuple[int, str] | None = None
    for start, end, nid in spans[: bisect.bisect_right(starts, line)]:
        if start <= line <= end and (best is None or end - start < best[0]):
            best = (end - start, nid)
    return best[1] if best else None
