"""A delivery of a managed service, checked and described before anything starts (``pilotage deliver``, the API).

:func:`check_delivery` refuses a delivery that cannot run (service not managed, revision not found, descriptor
invalid, already production, a delivery of the service still running); :func:`delivery_run` builds its
:class:`~pilotage.agent.RunSpec` (kind ``deliver``) with a private work folder under ``<home>/runs/<run_id>``.
Handing the run to ``pilotage serve`` is publishing :func:`pilotage.flows.feature_delivery.queued_event` of it.
"""

from __future__ import annotations

from pathlib import Path
from posixpath import normpath

from pilotage.agent import RunSpec
from pilotage.errors import BackendError, ConfigError, InputError
from pilotage.fleet.registry import ManagedService, refuse_concurrent, require_managed
from pilotage.settings import Settings

__all__ = ["check_delivery", "delivery_run", "make_workdir"]


def _in_commit(repo: str, sha: str, path: str) -> bool:
    from pilotage.codegen.git import git

    try:
        return git(repo, "cat-file", "-t", f"{sha}:{normpath(path)}") == "blob"
    except BackendError:
        return False


def check_delivery(
    fleet: dict[str, ManagedService], name: str, rev: str, budget_s: float = 900.0, *, queued: bool = False
) -> tuple[ManagedService, str]:
    """Return (the managed service, the full sha of ``rev``) when ``rev`` of ``name`` can be delivered.

    Args:
        fleet: the managed services (:func:`pilotage.fleet.registry.load_fleet`).
        name: the service.
        rev: a sha, branch or tag of its repository.
        budget_s: the delivery's time budget in seconds (an older delivery still inside it is running).
        queued: the delivery goes to ``pilotage serve``'s queue, which runs one delivery of a service at a time
            (issue 19, :mod:`pilotage.flows.admission`): one in progress is no reason to refuse it.

    Raises:
        InputError: not managed, not found, a delivery still running, or already production (exit 2).
        ConfigError: the descriptor at ``rev`` is missing or invalid (exit 3).
    """
    from pilotage.fleet.checkout import descriptor_at, resolve_rev

    service = require_managed(fleet, name)
    if not queued:
        refuse_concurrent(service, budget_s)
    if not Path(service.repo_path).is_dir():
        raise InputError(f"{service.repo_path} (service {name}) no longer exists", hint="restore the repository")
    sha = resolve_rev(service.repo_path, rev)
    descriptor = descriptor_at(service.repo_path, sha)
    if (
        descriptor.openapi
        and not descriptor.openapi_served
        and not _in_commit(service.repo_path, sha, descriptor.openapi)
    ):
        raise ConfigError(
            f"{descriptor.path}: openapi: {descriptor.openapi} is not a file of the commit",
            hint="commit the document, or fix `openapi` (a file, or a path the service serves: /openapi.json)",
            field="openapi",
        )
    if sha == service.production_commit:
        raise InputError(f"{rev} ({sha[:12]}) is already the production commit of {name}", hint="commit a change")
    return service, sha


def make_workdir(workdir: Path) -> Path:
    """Create the run's work folder, owner-only (0700); an unusable path is the user's input, not a Pilotage bug.

    Raises:
        InputError: the folder cannot be created (names it).
    """
    from pilotage.secrets import private_dir

    try:
        private_dir(workdir)
    except OSError as exc:
        raise InputError(
            f"cannot create the work folder {workdir}: {exc.strerror or exc}",
            hint="run in a writable folder, or pass --workdir with a writable folder",
            path=str(workdir),
        ) from exc
    return workdir


def delivery_run(
    settings: Settings, service: ManagedService, rev: str, sha: str, *, commit_tests: bool = False
) -> RunSpec:
    """Return the RunSpec of delivering ``sha`` (asked as ``rev``) of ``service``; creates its work folder."""
    from pilotage.flows.feature_delivery import new_run_id

    run_id = new_run_id()
    workdir = make_workdir((settings.home / "runs" / run_id).expanduser().resolve())
    return RunSpec(
        run_id=run_id,
        service=service.name,
        spec_path="",
        request=f"deliver {rev}",
        workdir=str(workdir),
        idle_after_s=3600.0,
        kind="deliver",
        rev=sha,
        service_repo=service.repo_path,
        commit_tests=commit_tests,
    )
