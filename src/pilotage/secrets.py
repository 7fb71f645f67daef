"""Secrets stay out of files and command lines: one masker, private files and folders (issue #15, finding 4).

**What a secret is.** The values of the operator's configuration that grant access: the test request headers
(``settings.testing_auth_headers``, e.g. ``Authorization`` or ``X-Tenant``), the passwords in backend URLs
(``nats://user:PASSWORD@host``), and the values of the control plane's environment variables whose names say
they are credentials (``GITHUB_TOKEN``, ``AWS_SECRET_ACCESS_KEY``, ``*_PASSWORD`` … :data:`SECRET_NAME`).
:func:`pilotage.settings.load_settings` registers them with the process-wide masker (:func:`masker`), so every
process that loaded settings — the CLI, ``pilotage serve``, a worker — masks them.

**Masking by value.** :class:`SecretMasker` replaces every occurrence of a registered value — and of its JSON
escaped and URL-encoded forms — with :data:`MASK`, whatever key or header name carried it (schemathesis masks
by header *name* only, so ``X-Tenant`` went through). Values shorter than :data:`MIN_SECRET_CHARS` are not
masked (masking ``1`` would rewrite every number); from the environment, shorter than :data:`MIN_ENV_SECRET_CHARS`.
It is applied where Pilotage writes: every event at the bus' publish path (:func:`pilotage.bus.base.coerce_event`),
graph properties, reports and incident records, the CLI log file (:class:`MaskingFormatter`), and the reports
the test tools wrote (JUnit XML, NDJSON, logs: :meth:`SecretMasker.mask_file`).

**Private files.** The CLI sets ``umask 077`` at its edge (:func:`private_umask`), so every file and folder it or
its children create is owner-only (sqlite's ``-wal``/``-shm`` files included); :func:`private_dir` creates the
state folder 0700 and tightens an existing one; :func:`write_private_text` writes one file 0600.
"""

from __future__ import annotations

import json
import logging
import os
import re
import stat
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus, urlsplit

__all__ = [
    "MASK",
    "MIN_ENV_SECRET_CHARS",
    "MIN_SECRET_CHARS",
    "SECRET_NAME",
    "MaskingFormatter",
    "SecretMasker",
    "environment_secrets",
    "mask",
    "masker",
    "private_dir",
    "private_umask",
    "register_secrets",
    "url_password",
    "write_private_text",
]

#: What a masked secret becomes.
MASK = "[masked]"
#: Configured secrets shorter than this (characters) are not masked: masking ``1`` would rewrite every number.
MIN_SECRET_CHARS = 4
#: Secrets found in the environment by name must be at least this long (``TOKEN=1`` is a flag, not a credential).
MIN_ENV_SECRET_CHARS = 8
#: Environment variable names that hold credentials (searched, case-insensitive).
SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSWORD|PASSWD|API_?KEY|ACCESS_KEY|PRIVATE_KEY|CREDENTIAL|SESSION", re.I)


def _forms(value: str) -> set[str]:
    """Return ``value`` and the encodings under which it reaches files: JSON-escaped, URL-encoded."""
    return {value, json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1], quote(value, safe=""),
            quote_plus(value, safe="")}  # fmt: skip


class SecretMasker:
    """Replaces registered secret values with :data:`MASK` in text, JSON-like data and files.

    Args:
        values: the secrets (strings shorter than :data:`MIN_SECRET_CHARS` are ignored).
    """

    def __init__(self, values: Iterable[str] = ()) -> None:
        self._values: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self.add(values)

    def add(self, values: Iterable[str], *, min_chars: int = MIN_SECRET_CHARS) -> None:
        """Register more secret values (and their encoded forms); values shorter than ``min_chars`` are ignored."""
        new = {form for v in values if isinstance(v, str) and len(v) >= min_chars for form in _forms(v)}
        new = {form for form in new if len(form) >= min_chars} - self._values
        if new:
            self._values |= new
            ordered = sorted(self._values, key=len, reverse=True)  # longest first: no partial masks
            self._pattern = re.compile("|".join(re.escape(v) for v in ordered))

    @property
    def values(self) -> frozenset[str]:
        """The registered values with their encoded forms."""
        return frozenset(self._values)

    def mask_text(self, text: str) -> str:
        """Return ``text`` with every registered value replaced by :data:`MASK`."""
        if self._pattern is None or not text:
            return text
        return self._pattern.sub(MASK, text)

    def mask(self, data: Any) -> Any:
        """Return ``data`` (JSON-like: dicts, lists, tuples, strings, scalars) with secrets masked in strings and keys.

        Data without a secret is returned as is (the same object).
        """
        if self._pattern is None:
            return data
        if isinstance(data, str):
            return self.mask_text(data)
        if isinstance(data, Mapping):
            return {self.mask(k): self.mask(v) for k, v in data.items()}
        if isinstance(data, list | tuple):
            return type(data)(self.mask(v) for v in data)
        return data

    def contains_secret(self, data: Any) -> bool:
        """Return True when ``data`` (text or JSON-like) holds a registered value."""
        if self._pattern is None:
            return False
        text = data if isinstance(data, str) else json.dumps(data, default=str, ensure_ascii=False)
        return self._pattern.search(text) is not None

    def mask_file(self, path: Path) -> bool:
        """Rewrite ``path`` with secrets masked (UTF-8 text; undecodable bytes kept); return True if it changed.

        A missing file is not an error (returns False). The file's mode is kept.
        """
        if self._pattern is None:
            return False
        try:
            raw = path.read_bytes()
        except (FileNotFoundError, IsADirectoryError):
            return False
        text = raw.decode("utf-8", errors="surrogateescape")
        masked = self.mask_text(text)
        if masked == text:
            return False
        path.write_bytes(masked.encode("utf-8", errors="surrogateescape"))
        return True


_MASKER = SecretMasker()


def masker() -> SecretMasker:
    """Return the process-wide masker (filled by :func:`register_secrets`, used wherever Pilotage writes)."""
    return _MASKER


def register_secrets(values: Iterable[str], *, min_chars: int = MIN_SECRET_CHARS) -> None:
    """Add ``values`` to the process-wide masker (see :meth:`SecretMasker.add`)."""
    _MASKER.add(values, min_chars=min_chars)


def mask(data: Any) -> Any:
    """Return ``data`` with the process-wide secrets masked (see :meth:`SecretMasker.mask`)."""
    return _MASKER.mask(data)


def url_password(url: str | None) -> str | None:
    """Return the password in ``url``'s user-info (``scheme://user:PASSWORD@host``), or None."""
    if not url or "://" not in url:
        return None
    try:
        return urlsplit(url).password
    except ValueError:
        return None


def environment_secrets(environ: Mapping[str, str] | None = None) -> list[str]:
    """Return the values of the variables of ``environ`` (default ``os.environ``) named like credentials."""
    env = os.environ if environ is None else environ
    return [v for k, v in env.items() if SECRET_NAME.search(k) and len(v) >= MIN_ENV_SECRET_CHARS]


class MaskingFormatter(logging.Formatter):
    """A log formatter whose output (message, arguments and traceback) has the process-wide secrets masked."""

    def format(self, record: logging.LogRecord) -> str:
        """Format ``record`` as :class:`logging.Formatter` does, then mask."""
        return _MASKER.mask_text(super().format(record))


def private_umask() -> int:
    """Set the process umask to ``077`` (new files 0600, folders 0700, children inherit it); return the old one."""
    return os.umask(0o077)


def private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) as an owner-only folder, tighten it to 0700 if it exists; return it.

    Raises:
        OSError: the folder cannot be created or its mode changed (callers turn it into an InputError).
    """
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    if stat.S_IMODE(path.stat().st_mode) & 0o077:
        path.chmod(0o700)
    return path


def write_private_text(path: Path, text: str) -> Path:
    """Write ``text`` with the process-wide secrets masked to ``path``, mode 0600 (created or tightened); return it.

    Raises:
        OSError: the file cannot be written.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        os.fchmod(handle.fileno(), 0o600)
        handle.write(_MASKER.mask_text(text))
    return path
