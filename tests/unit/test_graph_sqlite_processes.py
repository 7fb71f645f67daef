"""Several OS processes write the SQLite graph while the CLI reads it (issue #4, item 6): no "database is locked"."""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
from multiprocessing.synchronize import Event
from pathlib import Path

WRITERS = 3
NODES_PER_WRITER = 60
READS = 5


def _writer(
    url: str, index: int, stop: Event, started: multiprocessing.Queue[int], results: multiprocessing.Queue[str]
) -> None:
    """Write >= NODES_PER_WRITER Function nodes, on until ``stop`` is set; put "ok N" or the error on ``results``."""
    from pilotage.graph.sqlite import SQLiteGraph

    i = 0
    try:
        with SQLiteGraph(url) as graph:
            graph.upsert_node("Service", "shared", {f"writer{index}": True})  # every writer merges into one node
            while i < NODES_PER_WRITER or not stop.is_set():
                node = graph.upsert_node("Function", f"w{index}.f{i}", {"i": i})
                graph.upsert_edge("Service:shared", "CONTAINS", node.id, {"writer": index})
                if i == 0:
                    started.put(index)
                if i % 20 == 0:  # the ingest's bulk path too
                    graph.write_batch(
                        [("Module", f"w{index}.m{i}", {"i": i})],
                        [("Service:shared", "CONTAINS", f"Module:w{index}.m{i}", {})],
                    )
                i += 1
    except Exception as exc:  # reported to the test, which fails with it
        results.put(f"writer {index}: {type(exc).__name__}: {exc}")
        return
    results.put(f"ok {i}")


def test_three_writer_processes_and_a_cli_reader_never_see_database_is_locked(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/.pilotage/graph.db"  # the CLI's default graph_url, from cwd=tmp_path
    context = multiprocessing.get_context("spawn")  # fresh interpreters: separate SQLite connections and locks
    stop = context.Event()
    started: multiprocessing.Queue[int] = context.Queue()
    results: multiprocessing.Queue[str] = context.Queue()
    writers = [context.Process(target=_writer, args=(url, i, stop, started, results)) for i in range(WRITERS)]
    for proc in writers:
        proc.start()
    try:
        assert sorted(started.get(timeout=120) for _ in range(WRITERS)) == list(range(WRITERS))
        env = {k: v for k, v in os.environ.items() if not k.startswith("PILOTAGE_")}
        sql = "SELECT count(*) AS n FROM nodes WHERE kind = 'Function'"
        reads: list[int] = []
        failures: list[str] = []
        for _ in range(READS):  # the writers keep writing until every read is done: reads overlap writes
            cli = subprocess.run(
                [sys.executable, "-m", "pilotage", "graph", "query", sql, "--json"],
                cwd=tmp_path,
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            if cli.returncode != 0:
                failures.append(cli.stderr.strip())
            else:
                reads.append(json.loads(cli.stdout)[0]["n"])
    finally:
        stop.set()
        for proc in writers:
            proc.join(timeout=120)
    outcomes = sorted(results.get(timeout=10) for _ in range(WRITERS))
    assert failures == [] and all(o.startswith("ok ") for o in outcomes), (failures, outcomes)
    assert [p.exitcode for p in writers] == [0] * WRITERS
    written = [int(o.split()[1]) for o in outcomes]
    assert min(written) >= NODES_PER_WRITER
    total = sum(written)
    assert len(reads) == READS and reads == sorted(reads) and WRITERS <= reads[0] and reads[-1] <= total
    from pilotage.graph.sqlite import SQLiteGraph

    with SQLiteGraph(url) as graph:
        counts = graph.query("SELECT kind, count(*) AS n FROM nodes GROUP BY kind ORDER BY kind")
        batches = sum((n + 19) // 20 for n in written)  # one write_batch per 20 nodes
        assert counts == [
            {"kind": "Function", "n": total},
            {"kind": "Module", "n": batches},
            {"kind": "Service", "n": 1},
        ]
        shared = graph.get_node("Service:shared")
        assert shared is not None and shared.props == {f"writer{i}": True for i in range(WRITERS)}
        edges = graph.query("SELECT count(*) AS n FROM edges WHERE src = 'Service:shared' AND type = 'CONTAINS'")
        assert edges == [{"n": total + batches}]
