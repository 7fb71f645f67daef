"""The operator's approval key: approvals are signed (HMAC-SHA256) so a run's processes cannot forge them.

Threat (issue #15, finding 3): an approval is an event in the log, and every process that can write the log — the
code under review included — could publish ``approval.granted`` for its own gated deploy. So every approval event
carries a signature made with a key that lives outside every run environment; the control plane acts only on a
signature it verifies (:mod:`pilotage.policy.approval`).

Where the key lives (first match): the ``approval_key_file`` setting (``pilotage.toml`` or
``PILOTAGE_APPROVAL_KEY_FILE``), else ``$XDG_CONFIG_HOME/pilotage/approval.key``, else
``~/.config/pilotage/approval.key`` — outside ``.pilotage/`` and the runs' repositories, and the variable is not in
the allow-list environment of the processes a run starts.

Format: one line of 64 hex digits (32 bytes from :func:`secrets.token_bytes`), mode ``0600``, owned by the user;
its folder is created ``0700``. The first use (``pilotage approve``/``deny``/``policy pending`` or an agent asking
for an approval) creates it: a temporary file written ``0600`` in the same folder is hard-linked into place, so two
processes creating it at once end with one key. A key file that others may read or write, or that another user
owns, is refused (as OpenSSH refuses a private key).

Signature: ``HMAC-SHA256(key, canonical JSON of the signed fields)`` (RFC 2104), hex, compared with
:func:`hmac.compare_digest`. Canonical JSON: ``json.dumps(..., sort_keys=True, separators=(",", ":"),
ensure_ascii=True)``. ``key_id`` (12 hex digits of SHA-256 over a label and the key) names the key in events
without revealing it, so a signature made with another key is reported as such.

Limit: a process running as the same OS user as the control plane can read this file unless the run's processes
are sandboxed under another uid (or a container without the operator's home); the signature then only stops
processes that cannot read the operator's files.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import secrets
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pilotage.errors import ConfigError

if TYPE_CHECKING:
    from pilotage.settings import Settings

__all__ = ["KEY_BYTES", "SIGNATURE_ALG", "default_key_path", "key_id", "key_path", "load_key", "sign", "verify"]

#: Bytes of a new key (256 bits: the block-independent strength of HMAC-SHA256, RFC 2104 section 3).
KEY_BYTES = 32
#: Name of the signature algorithm recorded beside each signature.
SIGNATURE_ALG = "HMAC-SHA256"
_KEY_ID_LABEL = b"pilotage approval key id\x00"


def default_key_path() -> Path:
    """Return ``$XDG_CONFIG_HOME/pilotage/approval.key``, or ``~/.config/pilotage/approval.key`` without it."""
    base = os.environ.get("XDG_CONFIG_HOME")
    root = Path(base) if base and Path(base).is_absolute() else Path.home() / ".config"
    return root / "pilotage" / "approval.key"


def key_path(settings: Settings) -> Path:
    """Return the approval key file ``settings`` name (``approval_key_file``), else :func:`default_key_path`.

    Raises:
        ConfigError: the file would lie inside the state folder (``settings.home``), where runs live.
    """
    configured = settings.approval_key_file
    path = configured.expanduser() if configured is not None else default_key_path()
    if path.resolve().is_relative_to(settings.home.expanduser().resolve()):
        raise ConfigError(
            f"approval key {path} lies inside the state folder {settings.home}, where the runs' processes write",
            hint="keep it outside, e.g. ~/.config/pilotage/approval.key (setting approval_key_file)",
            key="approval_key_file",
        )
    return path


def _check_file(path: Path) -> None:
    """Refuse a key file that is not a regular file of this user with no group/other permission.

    Raises:
        ConfigError: names the file and the fix.
    """
    info = path.lstat()
    if stat.S_ISDIR(info.st_mode):
        raise ConfigError(
            f"approval key {path} is a folder, not a file",
            hint=f"point approval_key_file (PILOTAGE_APPROVAL_KEY_FILE) at a file, e.g. {path / 'approval.key'}",
            path=path,
        )
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(f"approval key {path} is not a regular file", hint=f"remove {path}; it is created again")
    if info.st_uid != os.getuid():
        raise ConfigError(
            f"approval key {path} belongs to uid {info.st_uid}, not to you (uid {os.getuid()})",
            hint="use your own key: set approval_key_file or PILOTAGE_APPROVAL_KEY_FILE",
            path=path,
        )
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o077:
        raise ConfigError(
            f"approval key {path} is readable or writable by others (mode {mode:04o})",
            hint=f"chmod 600 {path}, or remove it and answer the approvals again",
            path=path,
        )


def _create(path: Path) -> None:
    """Write a new key to ``path`` unless one appears meanwhile (temporary file, then an atomic hard link)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as out:
            out.write(secrets.token_bytes(KEY_BYTES).hex() + "\n")
            out.flush()
            os.fsync(out.fileno())
        with contextlib.suppress(FileExistsError):  # another process won the race: its key is the key
            os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load_key(path: Path, *, create: bool = True) -> bytes:
    """Return the key stored in ``path``, creating the file (mode 0600) first when it is missing and ``create``.

    Raises:
        ConfigError: the file is missing (``create=False``), cannot be created or read, has group/other
            permissions, belongs to another user, or does not hold at least 64 hex digits; names the file.
    """
    try:
        if create and not os.path.lexists(path):
            _create(path)
        _check_file(path)
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError as exc:
        raise ConfigError(
            f"approval key {path} does not exist", hint="run pilotage policy pending once to create it", path=path
        ) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"approval key {path} cannot be used: {exc}", hint="check the folder's permissions", path=path
        ) from exc
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) < KEY_BYTES:
        raise ConfigError(
            f"approval key {path} does not hold {2 * KEY_BYTES} hex digits",
            hint=f"remove {path}; a new key is created on first use",
            path=path,
        )
    return key


def key_id(key: bytes) -> str:
    """Return 12 hex digits naming ``key`` (SHA-256 of a label and the key; reveals nothing usable)."""
    return hashlib.sha256(_KEY_ID_LABEL + key).hexdigest()[:12]


def _canonical(message: Mapping[str, Any]) -> bytes:
    return json.dumps(message, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode()


def sign(key: bytes, message: Mapping[str, Any]) -> str:
    """Return the HMAC-SHA256 of the canonical JSON of ``message`` under ``key``, as 64 hex digits."""
    return hmac.new(key, _canonical(message), hashlib.sha256).hexdigest()


def verify(key: bytes, message: Mapping[str, Any], signature: Any) -> bool:
    """Return True when ``signature`` is the HMAC-SHA256 of ``message`` under ``key`` (constant-time compare)."""
    if not isinstance(signature, str):
        return False
    try:
        expected = sign(key, message)
    except (TypeError, ValueError):  # a value JSON cannot carry: nobody signed it
        return False
    return hmac.compare_digest(expected.encode(), signature.encode())
