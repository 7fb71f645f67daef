"""The event log under the SQLite bus: the file, its two connections and threads, group-commit publishing, reads.

:class:`SQLiteLog` owns everything of :mod:`pilotage.bus.sqlite` but its consumer groups: the file created
atomically (a 0-byte file refused as corrupt), the schema and its migrations, the writer connection
(``synchronous=FULL``) and the group-state connection (``synchronous=NORMAL``) each on a thread of its own, the
group commit of publishes (one transaction, one fsync, per round of waiting publishers), and reads by offset,
type pattern, run and log time. :class:`~pilotage.bus.sqlite.SQLiteBus` adds consumer groups and leases on top;
the module docstring there describes the durability and multi-process rules of the whole bus.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import threading
import time as _time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from pilotage.bus.base import Bus, Record
from pilotage.errors import BackendCorrupt, BackendError, ConfigError, InputError
from pilotage.events import CloudEvent, matches

__all__ = ["SQLiteLog"]

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
    grp     TEXT PRIMARY KEY,
    offset  INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS leases (
    grp        TEXT NOT NULL,
    offset     INTEGER NOT NULL,
    consumer   TEXT NOT NULL,
    expires    REAL NOT NULL,
    deliveries INTEGER NOT NULL,
    acked      INTEGER NOT NULL DEFAULT 0,
    subject    TEXT,
    timeout_s  REAL NOT NULL,
    PRIMARY KEY (grp, offset)
) WITHOUT ROWID;
"""
_PAGE = 500


def _glob_to_sql(pattern: str) -> tuple[str, str] | None:
    """Return a SQL filter (``type LIKE ?`` or ``type = ?``) that selects a superset of ``pattern``, or None."""
    if pattern == "*":
        return None
    if pattern.endswith("*") and not any(c in pattern[:-1] for c in "*?[%_"):
        return " AND type LIKE ?", pattern[:-1] + "%"
    if not any(c in pattern for c in "*?["):
        return " AND type = ?", pattern
    return None


def _add_column(conn: sqlite3.Connection, alter: str) -> None:
    """Run one ``ALTER TABLE … ADD COLUMN`` migration; another process opening the same log may win the race.

    Raises:
        sqlite3.OperationalError: any error other than the column already existing.
    """
    try:
        conn.execute(alter)
    except sqlite3.OperationalError as exc:
        if "duplicate column name" not in str(exc):
            raise


class SQLiteLog(Bus):
    """The SQLite event log of a :class:`~pilotage.bus.sqlite.SQLiteBus`: publishing and reading, no groups.

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
        self._writer: sqlite3.Connection | None = None  # synchronous=FULL, used only by the writer thread
        self._groups: sqlite3.Connection | None = None  # synchronous=NORMAL, used only by the group thread
        self._wpool: ThreadPoolExecutor | None = None
        self._gpool: ThreadPoolExecutor | None = None
        self._changed: asyncio.Condition | None = None
        self._queue: list[tuple[list[CloudEvent], asyncio.Future[list[int]]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._last_logged = 0.0
        #: Number of commits (fsyncs) the writer made; the benchmark reports events per fsync.
        self.commits = 0

    # -- plumbing -------------------------------------------------------------------------------------
    async def _on_writer(self, fn: Callable[..., T], *args: Any) -> T:
        if self._wpool is None:
            self._wpool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pilotage-bus-writer")
        return await asyncio.get_running_loop().run_in_executor(self._wpool, fn, *args)

    async def _on_groups(self, fn: Callable[..., T], *args: Any) -> T:
        if self._gpool is None:
            self._gpool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pilotage-bus-groups")
        return await asyncio.get_running_loop().run_in_executor(self._gpool, fn, *args)

    def _create_or_check(self) -> None:
        """Create a missing log atomically; refuse an existing empty file (issue #15, finding 7).

        SQLite opens a 0-byte file as a new empty database, so a log truncated to 0 bytes (a full disk, a stray
        ``> events.db``) would silently restart history. A new log is therefore written under a temporary name
        with its header and tables, then hard-linked into place (``link`` fails when another process won the
        race, which is fine): a file at :attr:`path` always holds a SQLite header, and a 0-byte one is corrupt.

        Raises:
            BackendCorrupt: the file exists and is empty (0 bytes).
            OSError: the folder cannot be written.
        """
        if str(self.path) == ":memory:":
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            if self.path.stat().st_size == 0:
                raise BackendCorrupt(
                    f"event log {self.path} is an empty file (0 bytes), not a SQLite log: its events are lost",
                    hint=f"restore {self.path} from a backup, or move it aside to start a new log",
                    path=str(self.path),
                )
            return
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.{threading.get_ident()}.new")
        conn = sqlite3.connect(str(tmp), isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(_SCHEMA)
        finally:
            conn.close()
        try:
            os.link(tmp, self.path)
        except FileExistsError:
            pass  # another process created the log first: use it
        finally:
            for leftover in (tmp, Path(f"{tmp}-wal"), Path(f"{tmp}-shm")):
                leftover.unlink(missing_ok=True)

    def _connect(self, synchronous: str) -> sqlite3.Connection:
        try:
            self._create_or_check()
            conn = sqlite3.connect(str(self.path), timeout=10.0, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={synchronous}")
            conn.executescript(_SCHEMA)
            columns = {row[1] for row in conn.execute("PRAGMA table_info(events)")}
            if "logged_at" not in columns:  # logs written before replay-by-time existed
                _add_column(conn, "ALTER TABLE events ADD COLUMN logged_at REAL")
            if "pattern" not in {row[1] for row in conn.execute("PRAGMA table_info(consumer_offsets)")}:
                _add_column(conn, "ALTER TABLE consumer_offsets ADD COLUMN pattern TEXT NOT NULL DEFAULT '*'")
        except sqlite3.OperationalError as exc:
            if "readonly" not in str(exc) and "unable to open" not in str(exc):
                raise BackendCorrupt(
                    f"event log {self.path} is not a readable SQLite database: {exc}",
                    hint=f"move {self.path} aside and start again; nothing was written to it",
                    path=str(self.path),
                ) from exc
            raise BackendError(
                f"event log {self.path} cannot be opened for writing: {exc}",
                hint=f"run where you may write {self.path} and its folder (SQLite's WAL needs both), or copy it",
                path=str(self.path),
            ) from exc
        except sqlite3.DatabaseError as exc:
            raise BackendCorrupt(
                f"event log {self.path} is not a readable SQLite database: {exc}",
                hint=f"move {self.path} aside and start again; nothing was written to it",
                path=str(self.path),
            ) from exc
        except OSError as exc:
            raise BackendError(f"event log {self.path} cannot be created: {exc}", path=str(self.path)) from exc
        return conn

    def _w(self) -> sqlite3.Connection:
        if self._writer is None:
            self._writer = self._connect("FULL")
        return self._writer

    def _g(self) -> sqlite3.Connection:
        if self._groups is None:
            self._groups = self._connect("NORMAL")
        return self._groups

    async def open(self) -> None:
        """Create the file and tables if needed.

        Raises:
            BackendCorrupt: the file is not a SQLite log, or is empty (0 bytes: a truncated log is never
                taken for a new one).
            BackendError: the file or its folder cannot be created or written.
        """
        if self._changed is None:
            self._changed = asyncio.Condition()
        if self._groups is None:
            await self._on_groups(self._g)
        if self._writer is None:
            await self._on_writer(self._w)

    def _failed(self, what: str, exc: sqlite3.Error) -> BackendError:
        if isinstance(exc, sqlite3.DatabaseError) and "malformed" in str(exc):
            return BackendCorrupt(f"event log {self.path}: {what}: {exc}", path=str(self.path))
        return BackendError(
            f"event log {self.path}: {what}: {exc}", hint="check disk space and file permissions", path=str(self.path)
        )

    # -- writing (group commit) -----------------------------------------------------------------------
    def _insert(self, events: list[CloudEvent]) -> list[int]:
        conn = self._w()
        offsets: list[int] = []
        logged = self._last_logged = max(_time.time(), self._last_logged)
        try:
            conn.execute("BEGIN IMMEDIATE")
            for event in events:
                cur = conn.execute(
                    "INSERT OR IGNORE INTO events(id, type, subject, runid, time, body, logged_at) "
                    "VALUES (?,?,?,?,?,?,?)",
                    (event.id, event.type, event.subject, event.runid, event.time, event.to_json(), logged),
                )
                if cur.rowcount == 1 and cur.lastrowid is not None:
                    offsets.append(cur.lastrowid)
                else:
                    row = conn.execute("SELECT offset FROM events WHERE id = ?", (event.id,)).fetchone()
                    offsets.append(int(row[0]))
            conn.execute("COMMIT")
            self.commits += 1
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise self._failed("publish failed, event not accepted", exc) from exc
        return offsets

    async def _append(self, event: CloudEvent) -> int:
        return (await self._append_many([event]))[0]

    async def _append_many(self, events: list[CloudEvent]) -> list[int]:
        await self.open()
        future: asyncio.Future[list[int]] = asyncio.get_running_loop().create_future()
        self._queue.append((events, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush(), name="pilotage-bus-group-commit")
        return await future

    async def _flush(self) -> None:
        """Commit everything queued, one transaction (one fsync) per round, until the queue is empty."""
        while self._queue:
            waiting, self._queue = self._queue, []
            events = [event for batch, _ in waiting for event in batch]
            try:
                offsets = await self._on_writer(self._insert, events)
            except Exception as exc:  # noqa: BLE001 - handed to every waiting publisher
                for _, future in waiting:
                    if not future.done():
                        future.set_exception(exc)
                continue
            start = 0
            for batch, future in waiting:
                if not future.done():
                    future.set_result(offsets[start : start + len(batch)])
                start += len(batch)
            await self._notify()

    async def _notify(self) -> None:
        assert self._changed is not None
        async with self._changed:
            self._changed.notify_all()

    # -- reading --------------------------------------------------------------------------------------
    def _rows(
        self, conn: sqlite3.Connection, after: int, pattern: str, columns: str, runid: str | None = None
    ) -> list[Any]:
        sql = f"SELECT {columns} FROM events WHERE offset > ?"
        args: list[Any] = [after]
        where = _glob_to_sql(pattern)
        if where is not None:
            sql += where[0]
            args.append(where[1])
        if runid is not None:  # the events_runid index
            sql += " AND runid = ?"
            args.append(runid)
        try:
            return conn.execute(sql + " ORDER BY offset LIMIT ?", (*args, _PAGE)).fetchall()
        except sqlite3.DatabaseError as exc:
            raise BackendCorrupt(
                f"event log {self.path} cannot be read after offset {after}: {exc}",
                hint=f"copy {self.path} aside and run `sqlite3 {self.path} .recover`",
                path=str(self.path),
                offset=after + 1,
            ) from exc

    def _select(self, from_offset: int, limit: int, pattern: str, runid: str | None) -> list[Record]:
        out: list[Record] = []
        after = max(from_offset, 1) - 1
        while len(out) < limit:
            rows = self._rows(self._g(), after, pattern, "offset, type, body", runid)
            for offset, type_, body in rows:
                if matches(pattern, type_):
                    out.append(Record(int(offset), self._decode(int(offset), body)))
                    if len(out) >= limit:
                        break
            if len(rows) < _PAGE:
                break
            after = int(rows[-1][0])
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

    async def read(
        self, from_offset: int = 1, limit: int = 1000, pattern: str = "*", *, runid: str | None = None
    ) -> list[Record]:
        """Return up to ``limit`` records at or after ``from_offset`` whose type matches ``pattern``.

        ``runid`` (when not None) keeps the events of that run only (``WHERE runid = ?``, indexed).

        Raises:
            BackendCorrupt: a stored row is not a valid CloudEvent (the message and ``offset`` name it).
        """
        await self.open()
        return await self._on_groups(self._select, from_offset, limit, pattern, runid)

    def _scalar(self, sql: str, *args: Any) -> int:
        row = self._g().execute(sql, args).fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    async def last_offset(self) -> int:
        """Return the newest offset (0 for an empty log)."""
        await self.open()
        return await self._on_groups(self._scalar, "SELECT COALESCE(MAX(offset), 0) FROM events")

    async def offset_at(self, time: datetime) -> int:
        """Return the first offset logged at or after ``time`` (naive = UTC); last offset + 1 if none.

        Events written before the ``logged_at`` column existed have no log time and count as older.
        """
        await self.open()
        stamp = (time if time.tzinfo else time.replace(tzinfo=UTC)).timestamp()
        found = await self._on_groups(self._scalar, "SELECT MIN(offset) FROM events WHERE logged_at >= ?", stamp)
        return found or await self.last_offset() + 1

    async def close(self) -> None:
        """Finish queued publishes, close both connections and their threads. Idempotent."""
        if self._flusher is not None and not self._flusher.done():
            await self._flusher
        for pool, attr in ((self._wpool, "_writer"), (self._gpool, "_groups")):
            if pool is not None:
                await asyncio.get_running_loop().run_in_executor(pool, self._close_conn, attr)
                pool.shutdown(wait=True)
        self._wpool = self._gpool = None

    def _close_conn(self, attr: str) -> None:
        conn = getattr(self, attr)
        if conn is not None:
            conn.close()
            setattr(self, attr, None)
