"""Real git, through the ``git`` command line: repositories, commits, branches, diff stats, worktrees.

The codegen agent's "pull request" is a branch of the run's repository: ``main`` holds the baseline, the
branch ``pilotage/<resource>-<run>`` holds the change, and detached worktrees of both commits (under
``workdir/versions/<sha12>``) give the other agents each version as a folder. Commits are authored locally as
"Pilotage codegen" (the repository's own config, never the user's global one); signing is off.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pilotage.errors import BackendError, ConfigError, InputError
from pilotage.runtime.sandbox import sandbox_env

__all__ = [
    "AUTHOR_EMAIL",
    "AUTHOR_NAME",
    "DiffStats",
    "commit_all",
    "create_branch",
    "current_branch",
    "diff_stats",
    "git",
    "init_repo",
    "is_repo",
    "rev_parse",
    "worktree",
]

AUTHOR_NAME = "Pilotage codegen"
AUTHOR_EMAIL = "codegen@pilotage.invalid"
_TIMEOUT_S = 120


@dataclass(frozen=True)
class DiffStats:
    """What changed between two commits: ``files`` (relative paths) and line counts (binary files count 0).

    ``code_lines_changed`` (added + removed) and ``base_code_lines`` count only source code (files ending in one of
    :data:`CODE_SUFFIXES`; documents, data and configuration are left out): their ratio is the change's size in
    percent that chooses the rollout strategy (the seed's table, :mod:`pilotage.agents.deployment`).
    """

    files: list[str] = field(default_factory=list)
    lines_added: int = 0
    lines_removed: int = 0
    code_lines_changed: int = 0
    base_code_lines: int = 0

    def to_dict(self) -> dict[str, Any]:
        """Return the stats as JSON-serialisable data."""
        return asdict(self)


def git(repo: str | Path, *args: str) -> str:
    """Run ``git -C repo ARGS`` and return its stdout (stripped).

    git runs with the allow-list environment of :mod:`pilotage.runtime.sandbox` (no token, no setting).

    Raises:
        ConfigError: the ``git`` executable is not installed.
        BackendError: git exited non-zero; the message carries the command and the last line of stderr.
    """
    exe = shutil.which("git")
    if exe is None:
        raise ConfigError("the git executable is not on PATH", hint="install git (https://git-scm.com)")
    env = sandbox_env({"GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"})  # issue 15: no credential reaches git
    try:
        done = subprocess.run(
            [exe, "-C", str(repo), *args],
            capture_output=True,
            text=True,
            errors="replace",  # a file that is not UTF-8 (git show) is data, never a crash
            timeout=_TIMEOUT_S,
            env=env,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise BackendError(f"git {' '.join(args)} in {repo} timed out after {_TIMEOUT_S} s") from exc
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines()
        raise BackendError(
            f"git {' '.join(args)} failed in {repo}: {lines[-1] if lines else 'exit ' + str(done.returncode)}",
            repo=str(repo),
        )
    return done.stdout.strip()


def is_repo(path: str | Path) -> bool:
    """Return True when ``path`` is the top folder of a git repository (a ``.git`` entry exists, or it is bare)."""
    folder = Path(path)
    bare = (folder / "HEAD").is_file() and (folder / "objects").is_dir() and (folder / "refs").is_dir()
    return (folder / ".git").exists() or bare


def init_repo(path: str | Path) -> Path:
    """Create ``path`` (if needed) as a git repository on branch ``main`` with the Pilotage identity.

    Idempotent: an existing repository only gets its local identity (re)set.

    Returns:
        The repository path.
    """
    repo = Path(path)
    repo.mkdir(parents=True, exist_ok=True)
    if not is_repo(repo):
        git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.name", AUTHOR_NAME)
    git(repo, "config", "user.email", AUTHOR_EMAIL)
    git(repo, "config", "commit.gpgsign", "false")
    return repo


def commit_all(repo: str | Path, message: str) -> str:
    """Stage every change (``git add -A``) and commit it, even when nothing changed; return the commit sha.

    The message goes to git through a temporary file (``git commit -F``), so its length is not bounded by the
    command line's.

    Raises:
        InputError: ``message`` is empty.
        BackendError: git failed.
    """
    if not message.strip():
        raise InputError(f"empty commit message for repository {repo}", hint="pass a non-empty message")
    git(repo, "add", "-A")
    # By file, not argv (issue #15, finding 7): one argument over 128 KiB (Linux MAX_ARG_STRLEN) fails with E2BIG,
    # and a request of 10,000 fields is such a message. The file is 0600 (mkstemp) and outside the repository.
    fd, name = tempfile.mkstemp(prefix="pilotage-commit-", suffix=".txt")
    try:
        with open(fd, "w", encoding="utf-8") as handle:
            handle.write(message)
        git(repo, "commit", "-q", "--allow-empty", "--no-verify", "-F", name)
    finally:
        Path(name).unlink(missing_ok=True)
    return rev_parse(repo, "HEAD")


def rev_parse(repo: str | Path, ref: str) -> str:
    """Return the full sha of ``ref`` (a branch, tag or sha) in ``repo``."""
    return git(repo, "rev-parse", "--verify", f"{ref}^{{commit}}")


def current_branch(repo: str | Path) -> str:
    """Return the checked-out branch name ("" when HEAD is detached)."""
    return git(repo, "branch", "--show-current")


def create_branch(repo: str | Path, name: str, start: str = "main") -> str:
    """Check out a branch ``name`` at ``start`` (reset to it when the branch exists); return the start sha.

    Raises:
        InputError: ``name`` is not a valid branch name (``git check-ref-format``).
    """
    try:
        git(repo, "check-ref-format", "--branch", name)
    except BackendError as exc:
        raise InputError(f"{name!r} is not a valid git branch name", hint="use letters, digits, - and /") from exc
    git(repo, "checkout", "-q", "-B", name, start)
    return rev_parse(repo, "HEAD")


#: git's empty tree (``git hash-object -t tree /dev/null``): a diff from it counts every line of a commit.
EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"


#: File suffixes counted as source code in a change's size (common languages of services and their build scripts).
CODE_SUFFIXES = (".py", ".js", ".mjs", ".ts", ".go", ".java", ".kt", ".rb", ".rs", ".cs", ".php", ".scala", ".sh")


def _numstat(repo: str | Path, base: str, head: str) -> list[tuple[str, int, int]]:
    """``git diff --numstat`` rows: (path, lines added, lines removed); binary files count 0."""
    out = git(repo, "diff", "--numstat", "--no-renames", base, head)
    rows = []
    for line in out.splitlines():
        parts = line.split("\t", 2)
        if len(parts) == 3:
            plus, minus, name = parts
            rows.append((name, int(plus) if plus.isdigit() else 0, int(minus) if minus.isdigit() else 0))
    return rows


def diff_stats(repo: str | Path, base: str, head: str) -> DiffStats:
    """Return the files and lines changed from ``base`` to ``head`` (``git diff --numstat``) and the base's size."""
    rows = _numstat(repo, base, head)
    code = [r for r in rows if r[0].endswith(CODE_SUFFIXES)]
    base_code = [r for r in _numstat(repo, EMPTY_TREE, base) if r[0].endswith(CODE_SUFFIXES)]
    return DiffStats(
        files=[r[0] for r in rows],
        lines_added=sum(r[1] for r in rows),
        lines_removed=sum(r[2] for r in rows),
        code_lines_changed=sum(r[1] + r[2] for r in code),
        base_code_lines=sum(r[1] for r in base_code),
    )


def worktree(repo: str | Path, commit: str, root: str | Path) -> Path:
    """Return a detached worktree of ``commit`` at ``root/<sha12>``, adding it when absent (idempotent).

    Raises:
        BackendError: ``commit`` is unknown, or the folder exists but is not a worktree of that commit.
    """
    sha = rev_parse(repo, commit)
    target = Path(root).resolve() / sha[:12]
    if target.exists():
        if is_repo(target) and rev_parse(target, "HEAD") == sha:
            return target
        raise BackendError(f"{target} exists but is not a worktree of {sha[:12]}", hint="remove the folder")
    target.parent.mkdir(parents=True, exist_ok=True)
    git(repo, "worktree", "prune")
    git(repo, "worktree", "add", "-q", "--detach", str(target), sha)
    return target
