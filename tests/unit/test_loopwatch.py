"""LoopWatch (:mod:`pilotage.loopwatch`): a loop held by synchronous work is measured and its holder named."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from pilotage.loopwatch import LoopSummary, LoopWatch, loop_stack


def _hold_the_loop(seconds: float) -> None:
    time.sleep(seconds)  # synchronous work inside a coroutine: nothing else on the loop runs meanwhile


def test_a_held_loop_is_measured_and_the_code_holding_it_is_named(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> LoopSummary:
        watch = LoopWatch(warn_s=0.3, tick_s=0.05).start()
        await asyncio.sleep(0.2)  # some ticks on time first
        _hold_the_loop(0.8)
        await asyncio.sleep(0.2)  # the heartbeat comes back
        return await watch.stop()

    with caplog.at_level(logging.INFO, logger="pilotage.loopwatch"):
        summary = asyncio.run(main())
    assert summary.stalls == 1
    assert 0.7 <= summary.longest_lag_s < 3.0  # 0.8 s held, minus the tick it would have slept anyway
    assert summary.longest_where.endswith("_hold_the_loop")  # the innermost frame of the loop thread's stack
    assert summary.ticks >= 5
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings[0].startswith("event loop held >= ") and "_hold_the_loop" in warnings[0]
    assert warnings[1].startswith("event loop stall ended: the loop was held 0.")
    assert any(r.getMessage().startswith("event loop lag: longest 0.") for r in caplog.records)


def test_a_loop_that_only_waits_has_no_stall() -> None:
    async def main() -> LoopSummary:
        watch = LoopWatch(warn_s=0.5, tick_s=0.05).start()
        await asyncio.sleep(0.6)
        return await watch.stop()

    summary = asyncio.run(main())
    assert summary.stalls == 0 and summary.longest_where == "" and summary.stacks == []
    assert summary.longest_lag_s < 0.5
    assert summary.ticks >= 6


def test_loop_stack_names_the_calling_function() -> None:
    import threading

    stack = loop_stack(threading.get_ident())  # its own thread: loop_stack itself is the innermost frame
    assert stack[-1].endswith(" loop_stack") and stack[-1].startswith("pilotage/loopwatch.py:")
    assert stack[-2].endswith("test_loop_stack_names_the_calling_function") and "test_loopwatch.py:" in stack[-2]
    assert loop_stack(-1) == []  # no such thread


@pytest.mark.parametrize(("warn_s", "tick_s"), [(1.0, 0.0), (1.0, 1.0), (0.1, 0.5)])
def test_out_of_range_intervals_are_refused(warn_s: float, tick_s: float) -> None:
    with pytest.raises(ValueError, match="0 < tick_s < warn_s"):
        LoopWatch(warn_s=warn_s, tick_s=tick_s)
