"""A managed service's commits on disk: read-only checkouts and the cached prepare step (issue #17).

A commit of a service's own repository is exported with ``git archive`` into Pilotage's state folder
(``<home>/services/<service>/checkouts/<sha12>/``): the user's repository is only read (no worktree, no branch, no
file written in it). The descriptor's prepare step (e.g. a venv install) runs once per *cache key* in its own
folder ``<home>/services/<service>/prepared/<key>/`` — the ``{prepared}`` placeholder of the start and test
commands. The key is the sha-256 of the prepare command and the content, at that commit, of the files listed in
``prepare.inputs`` (so a delivery that does not touch ``requirements.txt`` reuses the venv), or of the commit when
no input is listed. A folder is used only once its prepare finished with exit 0 (a ``.prepared`` marker written
last); concurrent prepares of one key are serialised by an exclusive ``flock``.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import os
import shutil
import signal
import subprocess
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pilotage.codegen.git import git, rev_parse
from pilotage.errors import BackendError, ConfigError, InputError
from pilotage.fleet.descriptor import (
    DESCRIPTOR_FILE,
    ServiceDescriptor,
    parse_descriptor_text,
    render_command,
    render_env,
)
from pilotage.runtime.local import tail_lines
from pilotage.runtime.sandbox import launch_options, sandbox_env

__all__ = ["Prepared", "checkout", "descriptor_at", "prepare", "resolve_rev"]

_MARKER = ".prepared"
#: Bytes of the prepare step's output kept in its log file's tail quoted by an error.
_TAIL_LINES = 5


@dataclass(frozen=True)
class Prepared:
    """A commit ready to start.

    ``checkout`` folder, ``prepared`` folder ("" without prepare), the cache ``key``, whether the prepare step ran
    now (``ran``: False = cache hit) and how long the call took (``seconds``).
    """

    checkout: Path
    prepared: str
    key: str
    ran: bool
    seconds: float


def resolve_rev(repo: str | Path, rev: str) -> str:
    """Return the full sha of ``rev`` in ``repo``.

    Raises:
        InputError: ``rev`` names no commit of the repository, or starts with ``-`` (it would be read as an option
            of git; exit 2; the message names both).
    """
    if rev.startswith("-") or not rev.strip() or "\0" in rev:
        raise InputError(f"revision {rev!r} is not a git revision", hint="name a commit, branch or tag")
    try:
        return rev_parse(repo, rev)
    except BackendError as exc:
        raise InputError(
            f"revision {rev!r} not found in {repo}", hint="name a commit, branch or tag of that repository"
        ) from exc


def descriptor_at(repo: str | Path, sha: str) -> ServiceDescriptor:
    """Return the ``pilotage.yaml`` of commit ``sha`` (read with ``git show``, validated).

    Raises:
        ConfigError: the commit has no descriptor, or it is invalid (names the file at that commit and the field).
    """
    where = f"{repo}/{DESCRIPTOR_FILE}@{sha[:12]}"
    try:
        text = git(repo, "show", f"{sha}:{DESCRIPTOR_FILE}")
    except BackendError as exc:
        written = (Path(repo) / DESCRIPTOR_FILE).is_file()
        raise ConfigError(
            f"{where}: the commit has no service descriptor",
            hint=f"commit it: git -C {repo} add {DESCRIPTOR_FILE} && git -C {repo} commit"
            if written
            else f"write one with `pilotage init {repo}` and commit it",
        ) from exc
    return parse_descriptor_text(text, path=where)


def _private_data(member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo:
    """Apply tarfile's ``data`` filter, with owner-only modes (issue 15: Pilotage's state folder is private)."""
    member = tarfile.data_filter(member, dest)
    return member.replace(mode=member.mode & 0o700, deep=False) if member.mode is not None else member


def checkout(repo: str | Path, sha: str, root: Path) -> Path:
    """Export commit ``sha`` of ``repo`` into ``root/<sha12>`` (``git archive``; idempotent) and return the folder.

    Raises:
        BackendError: git failed.
    """
    target = root / sha[:12]
    if (target / ".pilotage-commit").is_file():
        return target
    staging = root / f".{sha[:12]}.{time.monotonic_ns()}"
    staging.mkdir(parents=True)
    archive = subprocess.run(  # noqa: S603 - fixed argv; git archive of a sha
        ["git", "-C", str(repo), "archive", "--format=tar", sha],
        capture_output=True,
        env=sandbox_env({"GIT_TERMINAL_PROMPT": "0"}),
        check=False,
        timeout=120,
    )
    if archive.returncode != 0:
        raise BackendError(f"git archive {sha[:12]} failed in {repo}: {archive.stderr.decode()[-200:].strip()}")
    try:
        with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
            tar.extractall(staging, filter=_private_data)  # refuses absolute paths, .. and device files
    except (tarfile.TarError, OSError) as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise ConfigError(
            f"{repo} at {sha[:12]}: {exc}",
            hint="a committed symlink may not point outside the repository (an absolute or ../ target)",
        ) from exc
    (staging / ".pilotage-commit").write_text(sha + "\n", encoding="utf-8")
    try:
        staging.rename(target)
    except OSError:  # another process exported it meanwhile
        if not (target / ".pilotage-commit").is_file():
            raise
    return target


def _cache_key(repo: str | Path, sha: str, descriptor: ServiceDescriptor) -> str:
    assert descriptor.prepare is not None
    digest = hashlib.sha256(descriptor.prepare.command.encode())
    if not descriptor.prepare.inputs:
        digest.update(sha.encode())
    for name in descriptor.prepare.inputs:
        digest.update(b"\0" + name.encode() + b"\0")
        try:
            digest.update(git(repo, "show", f"{sha}:{name}").encode())
        except BackendError:
            digest.update(b"<missing>")
    return digest.hexdigest()[:16]


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def prepare(repo: str | Path, sha: str, descriptor: ServiceDescriptor, service_root: Path) -> Prepared:
    """Check out ``sha`` and run the descriptor's prepare step once per cache key (see the module docstring).

    Args:
        repo: the service's git repository.
        sha: the full commit sha.
        descriptor: the descriptor *of that commit*.
        service_root: ``<home>/services/<service>``.

    Raises:
        ConfigError: the prepare command exited non-zero or ran past ``prepare.timeout_s`` (names the field and
            quotes the last lines of its output; the log file is named in the hint).
        BackendError: git failed.
    """
    started = time.monotonic()
    folder = checkout(repo, sha, service_root / "checkouts")
    if descriptor.prepare is None:
        return Prepared(folder, "", "", False, 0.0)
    key = _cache_key(repo, sha, descriptor)
    prepared = (service_root / "prepared" / key).resolve()
    with _locked(service_root / "prepared" / f"{key}.lock"):
        if (prepared / _MARKER).is_file():
            return Prepared(folder, str(prepared), key, False, time.monotonic() - started)
        prepared.mkdir(parents=True, exist_ok=True)
        _run_prepare(descriptor, folder, prepared, service_root / "prepared" / f"{key}.log")
        (prepared / _MARKER).write_text(sha + "\n", encoding="utf-8")
    return Prepared(folder, str(prepared), key, True, time.monotonic() - started)


def _run_prepare(descriptor: ServiceDescriptor, folder: Path, prepared: Path, log_path: Path) -> None:
    assert descriptor.prepare is not None
    line = render_command(descriptor.prepare.command, prepared=prepared)
    timeout_s = descriptor.prepare.timeout_s
    env = render_env(descriptor.env, prepared=prepared)
    with log_path.open("wb") as log:
        proc = subprocess.Popen(  # noqa: S603 - the operator's descriptor command through /bin/sh
            ["/bin/sh", "-c", line], stdout=log, stderr=subprocess.STDOUT, **launch_options(folder, sandbox_env(env))
        )
        try:
            code: int | None = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            code = None
        finally:  # its own process group: nothing it started outlives it (a hung step, a background job)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    if code == 0:
        return
    tail = tail_lines(log_path, _TAIL_LINES)
    what = f"ran past {timeout_s} s" if code is None else f"exited {code}"
    raise ConfigError(
        f"{descriptor.path}: prepare.command {what}: {tail[-1] if tail else '(no output)'}",
        hint=f"fix `prepare` in pilotage.yaml; its output is in {log_path}",
        field="prepare.command",
        log_tail=tail,
    )
