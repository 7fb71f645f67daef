"""``sqlite:///PATH``: the default bus, a durable append-only CloudEvents log in one SQLite file.

Durability: WAL mode with ``synchronous=FULL`` on the publishing connection, so every commit fsyncs the
write-ahead log before ``publish`` returns (SQLite docs, "PRAGMA synchronous": FULL in WAL mode makes a
transaction durable across power loss). **Group commit**: publishes that arrive while a commit is in progress
wait for it and then go together in the next transaction, so one fsync covers every waiting event (16
concurrent publishers share fsyncs; one publisher awaiting each publish pays one fsync per event).
``publish_many`` is one transaction. Consumer-group state (offsets and leases) lives in the same file but is
written by a second connection with ``synchronous=NORMAL`` (no fsync per ack): a power loss can forget the
newest acknowledgements, which only causes redelivery, which at-least-once allows; any later FULL commit
makes them durable too (the WAL is written in order).

Several OS processes may publish and consume the same file: SQLite serialises writers (``busy_timeout``
10 s); lease claims run in ``BEGIN IMMEDIATE`` transactions, so two processes never lease the same event to
two members; members in other processes see new events by polling (``poll_interval_s``), members in the same
process are woken at once.

Tables: ``events(offset, id UNIQUE, type, subject, runid, time, body, logged_at)``,
``consumer_offsets(grp, offset)`` and ``leases(grp, offset, consumer, expires, deliveries, acked, subject,
timeout_s)``. Publishing an event whose id is already in the log returns the existing offset.

This module owns the consumer groups (offsets, lease claims, ack/nack/extend); the log they read — file,
connections, group commit, reads — is :class:`~pilotage.bus.sqlite_log.SQLiteLog`, which :class:`SQLiteBus`
extends.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time as _time
from typing import Any

from pilotage.bus.base import DEFAULT_ACK_TIMEOUT_S, Delivery
from pilotage.bus.leases import ClaimPlanner, Lease
from pilotage.bus.sqlite_log import _PAGE, SQLiteLog
from pilotage.events import matches

__all__ = ["SQLiteBus"]


class SQLiteBus(SQLiteLog):
    """Durable CloudEvents log in SQLite with group commit, consumer groups and leases.

    Args:
        url: ``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db``.

    Raises:
        ConfigError: the URL is not ``sqlite:///PATH`` (raised by the constructor; no I/O happens there).
    """

    # -- consumer groups ------------------------------------------------------------------------------
    def _write(self, sql_args: list[tuple[str, tuple[Any, ...]]], advance: list[str] | None = None) -> None:
        conn = self._g()
        try:
            conn.execute("BEGIN IMMEDIATE")
            for sql, args in sql_args:
                conn.execute(sql, args)
            for group in dict.fromkeys(advance or []):
                self._advance(group)
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise self._failed("consumer state not written", exc) from exc

    async def committed(self, group: str) -> int:
        """Return the group's acknowledged prefix (0 if none); it advances when a member fetches."""
        await self.open()
        return await self._on_groups(self._scalar, "SELECT offset FROM consumer_offsets WHERE grp = ?", group)

    async def group_exists(self, group: str) -> bool:
        """Return True when the group has a row in ``consumer_offsets``."""
        await self.open()
        return bool(await self._on_groups(self._scalar, "SELECT COUNT(*) FROM consumer_offsets WHERE grp = ?", group))

    async def commit(self, group: str, offset: int) -> None:
        """Store ``offset`` as acknowledged by ``group`` (never moves backwards)."""
        await self.open()
        await self._on_groups(
            self._write,
            [
                (
                    "INSERT INTO consumer_offsets(grp, offset) VALUES (?, ?) "
                    "ON CONFLICT(grp) DO UPDATE SET offset = max(offset, excluded.offset)",
                    (group, offset),
                ),
                ("DELETE FROM leases WHERE grp = ? AND offset <= ?", (group, offset)),
            ],
        )

    async def seek(self, group: str, offset: int) -> None:
        """Make ``offset`` the group's next position (backwards too); drop its leases."""
        await self.open()
        await self._on_groups(
            self._write,
            [
                (
                    "INSERT INTO consumer_offsets(grp, offset) VALUES (?, ?) "
                    "ON CONFLICT(grp) DO UPDATE SET offset = excluded.offset",
                    (group, max(offset - 1, 0)),
                ),
                ("DELETE FROM leases WHERE grp = ?", (group,)),
            ],
        )

    def _plan(
        self, conn: sqlite3.Connection, group: str, pattern: str, max_events: int
    ) -> tuple[ClaimPlanner, int, int, dict[int, tuple[str, str | None]]]:
        """Walk the group's matching events after its committed offset; return the plan and what it read."""
        committed = self._scalar("SELECT offset FROM consumer_offsets WHERE grp = ?", group)
        leases = {
            int(o): Lease(c, float(e), int(d), bool(a), s, float(t))
            for o, c, e, d, a, s, t in conn.execute(
                "SELECT offset, consumer, expires, deliveries, acked, subject, timeout_s FROM leases WHERE grp = ?",
                (group,),
            )
        }
        newest = self._scalar("SELECT COALESCE(MAX(offset), 0) FROM events")
        planner = ClaimPlanner(leases, _time.time(), max_events)
        bodies: dict[int, tuple[str, str | None]] = {}
        after = committed
        while not planner.full:
            rows = self._rows(conn, after, pattern, "offset, type, subject, body")
            for offset, type_, subject, body in rows:
                if matches(pattern, type_) and planner.offer(int(offset), subject):
                    bodies[int(offset)] = (body, subject)
                    if planner.full:
                        break
            if len(rows) < _PAGE:
                break
            after = int(rows[-1][0])
        return planner, committed, newest, bodies

    def _claim(self, group: str, pattern: str, max_events: int, ack_timeout_s: float, consumer: str) -> list[Delivery]:
        conn = self._g()
        # A read-only look first: idle members polling must not take the write lock.
        exists = self._scalar("SELECT COUNT(*) FROM consumer_offsets WHERE grp = ?", group)
        planner, committed, newest, _ = self._plan(conn, group, pattern, max_events)
        if exists and not planner.claimed and planner.new_committed(committed, newest) == committed:
            return []
        try:
            conn.execute("BEGIN IMMEDIATE")
            planner, committed, newest, bodies = self._plan(conn, group, pattern, max_events)
            new_committed = planner.new_committed(committed, newest)
            conn.execute(
                "INSERT INTO consumer_offsets(grp, offset, pattern) VALUES (?, ?, ?) "
                "ON CONFLICT(grp) DO UPDATE SET offset = excluded.offset, pattern = excluded.pattern",
                (group, new_committed, pattern),
            )
            conn.execute("DELETE FROM leases WHERE grp = ? AND offset <= ?", (group, new_committed))
            out: list[Delivery] = []
            for offset in planner.claimed:
                previous = planner.leases.get(offset)
                deliveries = (previous.deliveries if previous else 0) + 1
                body, subject = bodies[offset]
                conn.execute(
                    "INSERT OR REPLACE INTO leases(grp, offset, consumer, expires, deliveries, acked, subject, "
                    "timeout_s) VALUES (?,?,?,?,?,0,?,?)",
                    (group, offset, consumer, planner.now + ack_timeout_s, deliveries, subject, ack_timeout_s),
                )
                out.append(Delivery(offset, self._decode(offset, body), group, deliveries, token=consumer))
            conn.execute("COMMIT")
        except BaseException as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise self._failed("lease not taken", exc) from exc
            raise
        return out

    async def fetch(
        self,
        group: str,
        pattern: str = "*",
        *,
        max_events: int = 100,
        ack_timeout_s: float = DEFAULT_ACK_TIMEOUT_S,
        consumer: str = "",
        wait_s: float = 0.0,
    ) -> list[Delivery]:
        """Lease up to ``max_events`` matching events to ``consumer`` (see :meth:`Bus.fetch`).

        Raises:
            BackendCorrupt: a leased row is not a valid CloudEvent (``offset`` names it).
            BackendError: the lease could not be written.
        """
        await self.open()
        deadline = _time.monotonic() + wait_s
        while True:
            out = await self._on_groups(self._claim, group, pattern, max_events, ack_timeout_s, consumer)
            remaining = deadline - _time.monotonic()
            if out or remaining <= 0:
                return out
            await self._wait(min(remaining, self.poll_interval_s))

    def _advance(self, group: str) -> None:
        """Move the group's committed offset over the acknowledged events that follow it (in a transaction)."""
        conn = self._g()
        row = conn.execute("SELECT offset, pattern FROM consumer_offsets WHERE grp = ?", (group,)).fetchone()
        if row is None:
            return
        committed, pattern = int(row[0]), str(row[1])
        acked = {int(o) for (o,) in conn.execute("SELECT offset FROM leases WHERE grp = ? AND acked = 1", (group,))}
        if not acked:
            return
        newest = self._scalar("SELECT COALESCE(MAX(offset), 0) FROM events")
        after, new = committed, newest
        while after < newest:
            rows = self._rows(conn, after, pattern, "offset, type")
            open_at = next((int(o) for o, t in rows if matches(pattern, t) and int(o) not in acked), None)
            if open_at is not None:
                new = open_at - 1
                break
            if len(rows) < _PAGE:
                break
            after = int(rows[-1][0])
        if new > committed:
            conn.execute("UPDATE consumer_offsets SET offset = ? WHERE grp = ?", (new, group))
            conn.execute("DELETE FROM leases WHERE grp = ? AND offset <= ?", (group, new))

    async def ack(self, *deliveries: Delivery) -> None:
        """Mark ``deliveries`` done (also when their lease expired meanwhile: the work was done).

        The group's committed offset moves over every acknowledged event that directly follows it.
        """
        await self.open()
        await self._on_groups(
            self._write,
            [
                (
                    "INSERT INTO leases(grp, offset, consumer, expires, deliveries, acked, subject, timeout_s) "
                    "SELECT ?, ?, ?, 0, ?, 1, ?, 0 WHERE ? > COALESCE((SELECT offset FROM consumer_offsets "
                    "WHERE grp = ?), 0) ON CONFLICT(grp, offset) DO UPDATE SET acked = 1",
                    (d.group, d.offset, str(d.token), d.deliveries, d.event.subject, d.offset, d.group),
                )
                for d in deliveries
            ],
            [d.group for d in deliveries],
        )

    async def nack(self, *deliveries: Delivery) -> None:
        """Release ``deliveries`` still held by their member for immediate redelivery."""
        await self.open()
        await self._on_groups(
            self._write,
            [
                (
                    "UPDATE leases SET expires = 0 WHERE grp = ? AND offset = ? AND consumer = ? AND acked = 0",
                    (d.group, d.offset, str(d.token)),
                )
                for d in deliveries
            ],
        )
        await self._notify()

    async def extend(self, *deliveries: Delivery) -> None:
        """Renew the leases still held by their member for their ack timeout from now."""
        await self.open()
        await self._on_groups(
            self._write,
            [
                (
                    "UPDATE leases SET expires = max(expires, ? + timeout_s) "
                    "WHERE grp = ? AND offset = ? AND consumer = ? AND acked = 0",
                    (_time.time(), d.group, d.offset, str(d.token)),
                )
                for d in deliveries
            ],
        )

    async def _wait(self, timeout_s: float) -> None:
        assert self._changed is not None
        # asyncio.timeout, not asyncio.wait_for: on Python 3.11 wait_for can swallow a cancellation that arrives
        # as the inner wait completes (CPython gh-86296), which would leave a stopped consumer running.
        try:
            async with asyncio.timeout(timeout_s), self._changed:
                await self._changed.wait()
        except TimeoutError:
            return
