"""pytest plugin (issue #4): run the tests the knowledge graph says a change affects first, then the rest.

Loaded by :func:`pilotage.testing.pytest_runner.run_pytest` with ``-p pilotage.testing.affected_first`` when it is
given ``first``; the node ids (``tests/test_x.py::test_y``, relative to the rootdir) come as a JSON list in the
environment variable :data:`ENV`. Only the order changes: every collected test still runs, once. A parametrised
test matches by its id without the ``[...]`` part; ids that match nothing are ignored.
"""

from __future__ import annotations

import json
import os
from typing import Any

__all__ = ["ENV", "order", "pytest_collection_modifyitems"]

#: Environment variable holding the JSON list of pytest node ids to run first.
ENV = "PILOTAGE_AFFECTED_TESTS"


def order(nodeids: list[str], first: list[str]) -> list[int]:
    """Return the indexes of ``nodeids`` in run order: those in ``first`` (in its order) then the rest (stable)."""
    rank = {nid: i for i, nid in enumerate(first)}

    def key(index: int) -> tuple[int, int]:
        base = nodeids[index].split("[", 1)[0]
        return (0, rank[base]) if base in rank else (1, 0)

    return sorted(range(len(nodeids)), key=key)


def pytest_collection_modifyitems(session: Any, config: Any, items: list[Any]) -> None:
    """Reorder the collected ``items`` in place (pytest hook)."""
    try:
        first = json.loads(os.environ.get(ENV, "[]"))
    except json.JSONDecodeError:
        return
    if not isinstance(first, list) or not first:
        return
    ranked = order([item.nodeid for item in items], [str(x) for x in first])
    items[:] = [items[i] for i in ranked]
