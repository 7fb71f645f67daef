"""Schema migrations: the plain SQL files of ``migrations/``, applied in order, each once.

A migration is ``migrations/NNN_what_it_does.sql``; the number orders them. :func:`migrate` applies every file not
yet recorded in the ``schema_migrations`` table, each in its own transaction together with its record (version and
sha256 of the file), holding an advisory lock so that instances starting together apply each file once. The
service migrates at startup (:func:`app.db.open_pool`); a release can migrate first::

    python -m app.migrate            # apply the missing migrations, print each one applied
    python -m app.migrate --status   # print applied and pending migrations, apply nothing

The files follow expand/contract: a migration only adds (a table, a nullable column or one with a default, an
index), so the version that ran before it keeps working on the migrated schema while the new one rolls out, and
rolling the code back needs no rollback of the schema. Dropping or renaming waits for a later migration, once no
running version reads the old shape. Hence a database migrated further than this code knows is fine, while an
applied file that was edited since is not (:class:`MigrationError`).
"""

from __future__ import annotations

import hashlib
import re
import sys
from pathlib import Path

import psycopg

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"
#: Key of the advisory lock held while migrating.
LOCK = 1_702_017
_NAME = re.compile(r"(\d{3})_[a-z0-9_]+\.sql")


class MigrationError(Exception):
    """A migration file is misnamed or was edited after it was applied; the message names the file."""


def migration_files(folder: Path = MIGRATIONS) -> list[tuple[str, Path]]:
    """Return ``(version, file)`` of each migration in ``folder``, by version (the file's 3-digit prefix).

    Raises:
        MigrationError: a file is misnamed, or two files have the same number.
    """
    found: dict[str, Path] = {}
    for path in sorted(folder.glob("*.sql")):
        match = _NAME.fullmatch(path.name)
        if match is None:
            raise MigrationError(f"{path}: a migration is named NNN_what_it_does.sql (lowercase, 3 digits)")
        if match.group(1) in found:
            raise MigrationError(f"{path}: {found[match.group(1)].name} has the same number; renumber one")
        found[match.group(1)] = path
    return list(found.items())


def _applied(conn: psycopg.Connection) -> dict[str, str]:
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version TEXT PRIMARY KEY, name TEXT NOT NULL, "
        "sha256 TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
    )
    return dict(conn.execute("SELECT version, sha256 FROM schema_migrations").fetchall())


def migrate(url: str, folder: Path = MIGRATIONS) -> list[str]:
    """Apply the migrations of ``folder`` missing from database ``url``; return the names of those applied.

    Raises:
        MigrationError: a file is misnamed, or its sha256 differs from the one recorded when it was applied.
        psycopg.Error: the database is unreachable or a migration failed (that migration is rolled back).
    """
    done = []
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (LOCK,))
        applied = _applied(conn)
        for version, path in migration_files(folder):
            text = path.read_text(encoding="utf-8")
            digest = hashlib.sha256(text.encode()).hexdigest()
            if version in applied:
                if applied[version] != digest:
                    raise MigrationError(f"{path} changed after it was applied: add a new migration instead")
                continue
            with conn.transaction():
                conn.execute(text)
                conn.execute(
                    "INSERT INTO schema_migrations (version, name, sha256) VALUES (%s, %s, %s)",
                    (version, path.name, digest),
                )
            done.append(path.name)
    return done


def status(url: str, folder: Path = MIGRATIONS) -> tuple[list[str], list[str]]:
    """Return the versions applied to database ``url`` (by version) and those of ``folder`` still pending."""
    with psycopg.connect(url, autocommit=True) as conn:
        applied = _applied(conn)
    return sorted(applied), [version for version, _ in migration_files(folder) if version not in applied]


def main(argv: list[str]) -> int:
    """``python -m app.migrate [--status]`` on ``$ORDERS_DATABASE_URL``; exit 1 with one line on an error."""
    from app.db import database_url

    try:
        if argv == ["--status"]:
            applied, pending = status(database_url())
            print(f"applied: {' '.join(applied) or '-'}\npending: {' '.join(pending) or '-'}")
        else:
            for name in migrate(database_url()):
                print(f"applied {name}")
    except (MigrationError, psycopg.Error) as exc:
        print(f"migrate: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
