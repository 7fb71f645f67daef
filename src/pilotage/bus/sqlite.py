"""``sqlite:///PATH``: the default bus, a durable append-only CloudEvents log in one SQLite file.

Durability: the database runs in WAL mode with ``synchronous=FULL``, so every ``publish`` commit fsyncs the
write-ahead log before it returns (SQLite docs, "PRAGMA synchronous": FULL in WAL mode makes transactions
durable across power loss). That costs one fsync per publish; ``publish_many`` puts a batch in one
transaction and one fsync. Several processes may publish and consume the same file: SQLite serialises
writers (``busy_timeout`` 10 s) and consumers in other processes see new events by polling
(``poll_interval_s``); consumers in the same process are woken at once.

Tables: ``events(offset, id UNIQUE, type, subject, runid, time, body)`` and ``consumer_offsets(grp, offset)``.
Publishing an event whose id is already in the log returns the existing offset (idempotent publish).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from pilotage.bus.base import Bus, Record
from pilotage.errors import BackendCorrupt, BackendError, ConfigError, InputError
from pilotage.events import CloudEvent, matches

__all__ = ["SQLiteBus"]

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    offset  INTEGER PRIMARY KEY AUTOINCREMENT,
    id      TEXT NOT NULL UNIQUE,
    type    TEXT NOT NULL,
    subject TEXT,
    runid   TEXT NOT NULL DEFAULT '',
    time    TEXT NOT NULL,
    body    TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_type ON events(type);
CREATE INDEX IF NOT EXISTS events_runid ON events(runid);
CREATE TABLE IF NOT EXISTS consumer_offsets (
    grp    TEXT PRIMARY KEY,
    offset INTEGER NOT NULL
);
"""


def _glob_to_like(pattern: str) -> str | None:
    """Translate a type glob to a SQL LIKE prefix filter when it is ``prefix*``; else None (filter in Python)."""
    if pattern == "*":
        return None
    if pattern.endswith("*") and not any(c in pattern[:-1] for c in "*?[%_"):
        return pattern[:-1] + "%"
    return None


class SQLiteBus(Bus):
    """Durable CloudEvents log in SQLite.

    Args:
        url: ``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db``.

    Raises:
        ConfigError: the URL is not ``sqlite:///PATH`` (raised by the constructor; no I/O happens there).
    """

    def __init__(self, url: str = "sqlite:///.pilotage/events.db") -> None:
        if not url.startswith("sqlite:///") or len(url) <= len("sqlite:///"):
            raise ConfigError(f"bus URL {url!r} is not sqlite:///PATH", hint="use sqlite:///.pilotage/events.db")
        self.url = url
        self.path = Path(url[len("sqlite:///") :])
        self._conn: sqlite3.Connection | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._changed: asyncio.Condition | None = None
        self._last_seen = 0

    # -- plumbing -------------------------------------------------------------------------------------
    async def _run(self, fn: Any, *args: Any) -> Any:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pilotage-sqlite-bus")
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def _connect(self) -> sqlite3.Connection:
        with self._lock:
            if self._conn is not None:
                return self._conn
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                conn = sqlite3.connect(str(self.path), timeout=10.0, isolation_level=None, check_same_thread=False)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=FULL")
                conn.executescript(_SCHEMA)
            except sqlite3.DatabaseError as exc:
                raise BackendCorrupt(
                    f"event log {self.path} is not a readable SQLite database: {exc}",
                    hint=f"move {self.path} aside and start again; nothing was written to it",
                    path=str(self.path),
                ) from exc
            except OSError as exc:
                raise BackendError(f"event log {self.path} cannot be created: {exc}", path=str(self.path)) from exc
            self._conn = conn
            return conn

    async def open(self) -> None:
        """Create the file and tables if needed. Raises BackendCorrupt when the file is not a SQLite log."""
        if self._changed is None:
            self._changed = asyncio.Condition()
        await self._run(self._connect)

    # -- writing --------------------------------------------------------------------------------------
    def _insert(self, events: list[CloudEvent]) -> list[int]:
        conn = self._connect()
        offsets: list[int] = []
        with self._lock:
            try:
                conn.execute("BEGIN IMMEDIATE")
                for event in events:
                    cur = conn.execute(
                        "INSERT OR IGNORE INTO events(id, type, subject, runid, time, body) VALUES (?,?,?,?,?,?)",
                        (event.id, event.type, event.subject, event.runid, event.time, event.to_json()),
                    )
                    if cur.rowcount == 1 and cur.lastrowid is not None:
                        offsets.append(cur.lastrowid)
                    else:
                        row = conn.execute("SELECT offset FROM events WHERE id = ?", (event.id,)).fetchone()
                        offsets.append(int(row[0]))
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise BackendError(
                    f"event log {self.path}: publish failed, event not accepted: {exc}",
                    hint="check disk space and file permissions",
                    path=str(self.path),
                ) from exc
        return offsets

    async def _append(self, event: CloudEvent) -> int:
        await self.open()
        offsets: list[int] = await self._run(self._insert, [event])
        await self._notify()
        return offsets[0]

    async def publish_many(self, events: list[CloudEvent]) -> list[int]:
        """Append ``events`` in one transaction (one fsync); return their offsets in order.

        Raises:
            InputError: one event is invalid; nothing is written.
            BackendError: the log could not be written; nothing was accepted.
        """
        for event in events:
            event.to_json()
        await self.open()
        offsets: list[int] = await self._run(self._insert, events)
        await self._notify()
        return offsets

    async def _notify(self) -> None:
        assert self._changed is not None
        async with self._changed:
            self._changed.notify_all()

    # -- reading --------------------------------------------------------------------------------------
    def _select(self, from_offset: int, limit: int, pattern: str) -> list[Record]:
        """Read matching records; exact types and ``prefix*`` globs are filtered in SQL, others in Python."""
        conn = self._connect()
        like = _glob_to_like(pattern)
        exact = pattern != "*" and like is None and not any(c in pattern for c in "*?[")
        out: list[Record] = []
        position = max(from_offset, 1)
        while len(out) < limit:
            sql = "SELECT offset, body FROM events WHERE offset >= ?"
            args: list[Any] = [position]
            if like is not None:
                sql += " AND type LIKE ?"
                args.append(like)
            elif exact:
                sql += " AND type = ?"
                args.append(pattern)
            sql += " ORDER BY offset LIMIT ?"
            args.append(limit)
            with self._lock:
                try:
                    rows = conn.execute(sql, args).fetchall()
                except sqlite3.DatabaseError as exc:
                    raise BackendCorrupt(
                        f"event log {self.path} cannot be read after offset {position}: {exc}",
                        hint=f"copy {self.path} aside and run `sqlite3 {self.path} .recover`",
                        path=str(self.path),
                        offset=position,
                    ) from exc
            if not rows:
                break
            for offset, body in rows:
                event = self._decode(int(offset), body)
                if matches(pattern, event.type):
                    out.append(Record(int(offset), event))
                    if len(out) >= limit:
                        break
            position = int(rows[-1][0]) + 1
        return out

    def _decode(self, offset: int, body: str) -> CloudEvent:
        try:
            return CloudEvent.from_dict(json.loads(body))
        except (json.JSONDecodeError, InputError) as exc:
            raise BackendCorrupt(
                f"event log {self.path}: the event at offset {offset} is not a valid CloudEvent: {exc}",
                hint=f"inspect it with `sqlite3 {self.path} 'select body from events where offset={offset}'`",
                path=str(self.path),
                offset=offset,
            ) from exc

    async def read(self, from_offset: int = 1, limit: int = 1000, pattern: str = "*") -> list[Record]:
        """Return up to ``limit`` records at or after ``from_offset`` whose type matches ``pattern``.

        Raises:
            BackendCorrupt: a stored row is not a valid CloudEvent (the message names its offset).
        """
        await self.open()
        records: list[Record] = await self._run(self._select, from_offset, limit, pattern)
        return records

    def _get_offset(self, group: str) -> int:
        conn = self._connect()
        with self._lock:
            row = conn.execute("SELECT offset FROM consumer_offsets WHERE grp = ?", (group,)).fetchone()
        return int(row[0]) if row else 0

    def _set_offset(self, group: str, offset: int) -> None:
        conn = self._connect()
        with self._lock:
            conn.execute(
                "INSERT INTO consumer_offsets(grp, offset) VALUES (?, ?) "
                "ON CONFLICT(grp) DO UPDATE SET offset = max(offset, excluded.offset)",
                (group, offset),
            )

    async def committed(self, group: str) -> int:
        """Return the last offset acknowledged by ``group`` (0 if none)."""
        await self.open()
        value: int = await self._run(self._get_offset, group)
        return value

    async def commit(self, group: str, offset: int) -> None:
        """Store ``offset`` as acknowledged by ``group`` (never moves backwards)."""
        await self.open()
        await self._run(self._set_offset, group, offset)

    def _max_offset(self) -> int:
        conn = self._connect()
        with self._lock:
            row = conn.execute("SELECT COALESCE(MAX(offset), 0) FROM events").fetchone()
        return int(row[0])

    async def last_offset(self) -> int:
        """Return the newest offset (0 for an empty log)."""
        await self.open()
        value: int = await self._run(self._max_offset)
        return value

    async def _wait(self, after_offset: int, timeout_s: float) -> None:
        assert self._changed is not None
        # asyncio.timeout, not asyncio.wait_for: on Python 3.11 wait_for can swallow a cancellation that arrives
        # as the inner wait completes (CPython gh-86296), which would leave a stopped consumer running.
        try:
            async with asyncio.timeout(timeout_s), self._changed:
                await self._changed.wait()
        except TimeoutError:
            return

    async def close(self) -> None:
        """Close the database and the I/O thread. Idempotent."""
        if self._executor is not None:
            await self._run(self._close_conn)
            self._executor.shutdown(wait=True)
            self._executor = None

    def _close_conn(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
