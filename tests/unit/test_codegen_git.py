"""pilotage.codegen.git with real git in tmp_path."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from pilotage.codegen import git
from pilotage.errors import BackendError, InputError


def test_init_commit_branch_diff_worktree(tmp_path: Path) -> None:
    repo = git.init_repo(tmp_path / "repo")
    assert git.is_repo(repo)
    assert git.git(repo, "config", "user.name") == "Pilotage codegen"
    (repo / "a.txt").write_text("one\ntwo\n")
    base = git.commit_all(repo, "baseline")
    assert git.current_branch(repo) == "main" and len(base) == 40
    assert git.create_branch(repo, "pilotage/coupon-12345678") == base
    (repo / "a.txt").write_text("one\nthree\nfour\n")
    (repo / "b.txt").write_text("new\n")
    head = git.commit_all(repo, "Add coupon support")
    stats = git.diff_stats(repo, base, head)
    assert stats.files == ["a.txt", "b.txt"]
    assert (stats.lines_added, stats.lines_removed) == (3, 1)
    versions = tmp_path / "versions"
    base_dir = git.worktree(repo, base, versions)
    head_dir = git.worktree(repo, "pilotage/coupon-12345678", versions)
    assert base_dir == (versions / base[:12]).resolve()
    assert (base_dir / "a.txt").read_text() == "one\ntwo\n"
    assert (head_dir / "b.txt").read_text() == "new\n"
    assert git.worktree(repo, base, versions) == base_dir  # idempotent
    assert git.git(repo, "log", "-1", "--format=%an <%ae>", head) == "Pilotage codegen <codegen@pilotage.invalid>"


def test_init_is_idempotent_and_empty_commits_are_allowed(tmp_path: Path) -> None:
    repo = git.init_repo(tmp_path)
    first = git.commit_all(repo, "first")
    git.init_repo(tmp_path)
    second = git.commit_all(repo, "nothing changed")
    assert first != second and git.rev_parse(repo, "HEAD~1") == first


def test_errors(tmp_path: Path) -> None:
    repo = git.init_repo(tmp_path)
    git.commit_all(repo, "first")
    with pytest.raises(InputError, match="not a valid git branch name"):
        git.create_branch(repo, "bad..name")
    with pytest.raises(InputError, match="empty commit message"):
        git.commit_all(repo, "  ")
    with pytest.raises(BackendError, match="rev-parse"):
        git.rev_parse(repo, "no-such-branch")
    (tmp_path / "versions" / "x").mkdir(parents=True)
    sha = git.rev_parse(repo, "HEAD")
    (tmp_path / "versions" / sha[:12]).mkdir()
    with pytest.raises(BackendError, match="not a worktree"):
        git.worktree(repo, sha, tmp_path / "versions")


def test_a_request_of_10000_fields_commits_as_its_message(tmp_path: Path) -> None:
    """Issue #15, finding 7: the message goes by file (``-F``); on argv one argument over 128 KiB is E2BIG."""
    from pilotage.spec.grammar import parse_request

    request = "Add coupon support with fields " + ", ".join(f"field_{i:05d}:string" for i in range(10_000))
    assert len(parse_request(request).fields) == 10_000 and len(request.encode()) > 200_000
    repo = git.init_repo(tmp_path)
    (repo / "a.txt").write_text("x\n")
    head = git.commit_all(repo, request)
    assert git.git(repo, "log", "-1", "--format=%B", head) == request
    assert not list(Path(tempfile.gettempdir()).glob("pilotage-commit-*")), "the message file is removed"
