"""Commit Pilotage's spec-derived tests to a branch of the user's repository (issue #17, ``commit_tests``).

For a service with a descriptor the generated tests stay among the run's artefacts
(:mod:`pilotage.testing.descriptor_suite`) unless the run asks for ``commit_tests``. Then
:func:`commit_spec_tests` writes them, rendered for their place in the repository, on the branch
``pilotage/tests-<sha12>`` of the commit under test — never on the user's current branch, never in the user's
working tree:

* a temporary worktree of ``service_repo`` (``git worktree add``) is created next to the artefacts, on the branch
  (created at the tested commit, or checked out as it is when an earlier run created it);
* :func:`pilotage.testing.spec_tests.write_spec_tests` writes ``tests/test_pilotage_api_schemathesis.py`` and
  ``tests/test_pilotage_api_crud.py`` there, reading the OpenAPI document from the repository file the descriptor
  names or, for a served document, from a copy committed next to them (``tests/pilotage_openapi.json|yaml``);
* they are committed as "Pilotage testing" (``-c user.name``: the repository's configuration is not changed; hooks
  off: ``--no-verify`` and an empty ``core.hooksPath``), and the worktree is removed whatever happens.

The committed files run against a running service with ``PILOTAGE_BASE_URL`` set (they need schemathesis and
hypothesis); without it they import ``app.main:app`` in-process, the generated-service convention.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from pathlib import Path
from typing import Any

from pilotage.codegen.git import git, is_repo, rev_parse
from pilotage.errors import BackendError, InputError
from pilotage.testing.spec_tests import write_spec_tests

__all__ = ["AUTHOR", "branch_name", "commit_spec_tests"]

#: The identity of the commits (given per command: the user's repository configuration is left alone).
AUTHOR = ("Pilotage testing", "testing@pilotage.invalid")
#: Stem of the copy of a served OpenAPI document committed with the tests.
SPEC_COPY = "pilotage_openapi"
_NO_HOOKS = ("-c", "core.hooksPath=/dev/null")


def branch_name(commit: str) -> str:
    """The branch holding the generated tests of ``commit``: ``pilotage/tests-<sha12>``."""
    return f"pilotage/tests-{commit[:12]}"


def _branch_exists(repo: Path, branch: str) -> bool:
    try:
        git(repo, "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}")
    except BackendError:
        return False
    return True


def _spec_in(tree: Path, openapi: str, spec_path: Path) -> Path:
    """The document the committed tests read: the repository's file, or a copy of the served one in ``tests/``."""
    if not openapi.startswith("/"):
        return tree / openapi
    copy = tree / "tests" / f"{SPEC_COPY}{spec_path.suffix or '.json'}"
    copy.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(spec_path, copy)
    return copy


def _commit(
    repo: Path, commit: str, openapi: str, spec_path: Path, scratch: Path, options: dict[str, Any]
) -> dict[str, Any]:
    branch = branch_name(commit)
    sha = rev_parse(repo, commit)
    tree = scratch / "commit-worktree"
    if tree.exists():
        shutil.rmtree(tree)
    git(repo, "worktree", "prune")
    if _branch_exists(repo, branch):
        git(repo, *_NO_HOOKS, "worktree", "add", "-q", str(tree), branch)
    else:
        git(repo, *_NO_HOOKS, "worktree", "add", "-q", "-b", branch, str(tree), sha)
    try:
        spec = _spec_in(tree, openapi, spec_path)
        files = write_spec_tests(spec, tree, **options)
        written = [Path(f) for f in (files["schemathesis_file"], files["crud_file"]) if f]
        if spec.parent == tree / "tests":
            written.append(spec)
        rel = [str(f.relative_to(tree)) for f in written]
        git(tree, "add", "--", *rel)
        if git(tree, "status", "--porcelain", "--", *rel):
            name, email = AUTHOR
            message = (
                f"Pilotage: spec-derived API tests of {sha[:12]}\n\nGenerated from {openapi} by Pilotage's testing "
                "agent (regenerate rather than edit). Run against a service: PILOTAGE_BASE_URL=http://127.0.0.1:PORT "
                "python -m pytest tests/test_pilotage_api_*.py (needs schemathesis and hypothesis).\n"
            )
            git(tree, "-c", f"user.name={name}", "-c", f"user.email={email}", "-c", "commit.gpgsign=false",
                *_NO_HOOKS, "commit", "-q", "--no-verify", "-m", message)  # fmt: skip
        head = rev_parse(tree, "HEAD")
    finally:
        with contextlib.suppress(BackendError):
            git(repo, "worktree", "remove", "--force", str(tree))
        git(repo, "worktree", "prune")
    return {"repo": str(repo), "branch": branch, "commit": head, "files": rel}


async def commit_spec_tests(
    service_repo: str | Path,
    commit: str,
    *,
    openapi: str,
    spec_path: Path,
    scratch: Path,
    max_examples: int = 10,
    crud_examples: int = 5,
    request_timeout_s: float = 5.0,
) -> dict[str, Any]:
    """Commit the spec-derived tests of ``commit`` on ``pilotage/tests-<sha12>`` of ``service_repo``.

    Args:
        service_repo: the user's repository (``code.generated`` ``service_repo``); it must hold ``commit``.
        commit: the commit under test (the branch starts there).
        openapi: the descriptor's ``openapi`` (a repository file, or a served path).
        spec_path: the validated document (for a served path, the copy saved among the artefacts).
        scratch: a Pilotage-owned folder for the temporary worktree (the run's test artefacts).
        max_examples: examples per operation (:func:`pilotage.testing.spec_tests.write_spec_tests`).
        crud_examples: examples per CRUD resource (idem).
        request_timeout_s: the per-request timeout written into the files (idem).

    Returns:
        ``{"repo", "branch", "commit" (the branch's head), "files" (paths in the repository)}``; an unchanged
        regeneration on an existing branch adds no commit.

    Raises:
        InputError: ``service_repo`` is not a git repository.
        BackendError: git failed (the commit is unknown there, the branch is checked out elsewhere …).
    """
    repo = Path(service_repo).resolve()
    if not service_repo or not is_repo(repo):
        raise InputError(
            f"commit_tests: {service_repo or '(no service_repo)'} is not a git repository",
            hint="code.generated must name the service's repository in service_repo",
        )
    options = {"max_examples": max_examples, "crud_examples": crud_examples, "request_timeout_s": request_timeout_s}
    return await asyncio.to_thread(_commit, repo, commit, openapi, spec_path, Path(scratch).resolve(), options)
