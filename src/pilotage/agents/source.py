"""Source agent: turns a delivery of a managed service's own commit into the lifecycle's ``code.generated`` (#17).

Perceive: ``flow.started`` of kind ``deliver`` (:class:`~pilotage.catalogue.RunSpec`: ``service``, ``rev``,
``service_repo``); the service's production commit from the log (:mod:`pilotage.fleet.registry`).
Reason: ``source.delivery`` — deliver ``rev`` against the production commit, or refuse when ``rev`` *is* the
production commit (nothing to deliver).
Act: export both commits from the user's repository (read only: ``git archive``), run the descriptor's prepare step
of each (cached per key, :mod:`pilotage.fleet.checkout`), measure the change (``git diff --numstat`` production..rev,
source lines over the base's source lines), and — when the commit has an OpenAPI *file* — validate it and diff it
against production's (``spec.proposed``, ``spec.validated``).
Emit: ``code.generated`` and ``pr.opened`` in the shapes the codegen agent uses, so governance, testing,
performance, deployment and the rollout run unchanged on the delivered commit; ``base_dir``/``head_dir`` are the
checkouts, ``head_prepared``/``base_prepared`` the prepared folders, ``service_repo`` the user's repository.

Generated services (``pilotage run``/``demo``) take the other path: design and codegen produce the commit; this
agent ignores those runs (and design and codegen ignore deliveries).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, ClassVar

from pilotage.agent import Agent, Reasoning
from pilotage.catalogue import RunSpec
from pilotage.codegen.git import diff_stats
from pilotage.errors import ConfigError, InputError
from pilotage.events import CloudEvent, EventType
from pilotage.fleet.checkout import Prepared, descriptor_at, prepare, resolve_rev
from pilotage.fleet.descriptor import ServiceDescriptor
from pilotage.fleet.documents import DocumentSource, check_consumed
from pilotage.fleet.registry import load_fleet, refuse_cycle
from pilotage.spec.diff import diff_specs
from pilotage.spec.evolve import operations
from pilotage.spec.load import load_spec

__all__ = ["SourceAgent"]


class SourceAgent(Agent):
    """Checks out and prepares a delivery's commits and announces them as ``code.generated`` (module docstring)."""

    name: ClassVar[str] = "source"
    subscribes: ClassVar[tuple[str, ...]] = (EventType.FLOW_STARTED,)

    def reason(self, kind: str, inputs: dict[str, Any]) -> Reasoning:
        """Decide a ``source.delivery`` (pure).

        Inputs: ``service``, ``rev``, ``commit`` (the rev's sha), ``production_commit``.

        Returns:
            ``deliver`` (rule ``rev-differs-from-production``) or ``refuse`` (rule ``already-in-production``).
        """
        if kind != "source.delivery":
            return super().reason(kind, inputs)
        commit, production = inputs["commit"], inputs["production_commit"]
        if commit == production:
            return Reasoning(
                action="refuse",
                rule="already-in-production",
                score={"commits_ahead": 0},
                rationale=f"{inputs['rev']} is {commit[:12]}, the production commit of {inputs['service']}.",
            )
        return Reasoning(
            action="deliver",
            rule="rev-differs-from-production",
            score={"commits_ahead": 1},
            rationale=(
                f"Deliver {inputs['rev']} ({commit[:12]}) of {inputs['service']} against its production commit "
                f"{production[:12]}: the diff production..{inputs['rev']} is the change under review."
            ),
        )

    async def on_event(self, event: CloudEvent) -> None:
        """Check out, prepare and announce one delivery.

        Raises:
            InputError: the service is not managed, ``rev`` is not found or already in production.
            ConfigError: a commit's descriptor is missing or invalid, closes a dependency cycle or consumes an
                unknown service or operation (issue 19), or its prepare step failed.
        """
        run = RunSpec.model_validate(event.data)
        if not run.delivery:
            return
        fleet = await load_fleet(self.ctx.bus)
        managed = fleet.get(run.service)
        if managed is None:
            raise InputError(f"service {run.service!r} is not managed here", hint="pilotage service add PATH")
        repo = managed.repo_path
        head = await asyncio.to_thread(resolve_rev, repo, run.rev)
        base = managed.production_commit
        inputs = {"service": run.service, "rev": run.rev, "commit": head, "production_commit": base}
        decision = await self.decide("source.delivery", inputs, cause=event)
        if decision.action == "refuse":
            raise InputError(decision.rationale, hint="commit a change and deliver that revision")
        head_desc, base_desc = await asyncio.gather(
            asyncio.to_thread(descriptor_at, repo, head), asyncio.to_thread(descriptor_at, repo, base)
        )
        if head_desc.name != run.service:
            raise InputError(
                f"{head_desc.path}: name is {head_desc.name!r}, but the delivery is of {run.service!r}",
                hint="a service keeps its name; add a renamed service as a new one",
            )
        refuse_cycle(head_desc, fleet)  # issue 19: the commit's dependencies, against the live fleet
        await check_consumed(DocumentSource(self.ctx.settings, self.ctx.runtime), head_desc, fleet)
        root = self.ctx.settings.path_in_home("services").resolve() / run.service
        head_prep = await asyncio.to_thread(prepare, repo, head, head_desc, root)
        base_prep = await asyncio.to_thread(prepare, repo, base, base_desc, root)
        await self._announce_spec(event, run, head_desc, base_desc, head_prep, base_prep)
        stats = await asyncio.to_thread(diff_stats, repo, base, head)
        code = {
            "repo_path": repo,
            "base_branch": "production",
            "base_commit": base,
            "branch": run.rev,
            "commit": head,
            "base_dir": str(base_prep.checkout),
            "head_dir": str(head_prep.checkout),
            "files_changed": stats.files,
            "lines_added": stats.lines_added,
            "lines_removed": stats.lines_removed,
            "code_lines_changed": stats.code_lines_changed,
            "base_code_lines": stats.base_code_lines,
            "dependencies": [],
            "new_dependencies": [],
            "warnings": _prepare_notes(head_prep, base_prep),
            "decision_id": decision.id,
            "head_prepared": head_prep.prepared,
            "base_prepared": base_prep.prepared,
            "service_repo": repo,
        }
        await self.emit(EventType.CODE_GENERATED, code, cause=event)
        await self.emit(
            EventType.PR_OPENED,
            {
                "repo_path": repo,
                "branch": run.rev,
                "base_branch": "production",
                "commit": head,
                "base_commit": base,
                "title": f"Deliver {run.service} {run.rev} ({head[:12]})",
                "body": f"{len(stats.files)} files, +{stats.lines_added}/-{stats.lines_removed} against production "
                f"{base[:12]}",
            },
            cause=event,
        )

    async def _announce_spec(
        self,
        event: CloudEvent,
        run: RunSpec,
        head_desc: ServiceDescriptor,
        base_desc: ServiceDescriptor,
        head_prep: Prepared,
        base_prep: Prepared,
    ) -> None:
        """Validate the head's OpenAPI *file* and diff it against production's (``spec.proposed``/``validated``)."""
        if not head_desc.openapi or head_desc.openapi_served:
            return  # a served document is fetched from the running version by the testing stage
        head_spec = _inside(head_prep.checkout, head_desc.openapi, head_desc.path, "openapi")
        doc = await asyncio.to_thread(load_spec, head_spec)
        base_spec = head_spec
        if base_desc.openapi and not base_desc.openapi_served:
            candidate = base_prep.checkout / base_desc.openapi
            if candidate.is_file():
                base_spec = candidate
        base_doc = await asyncio.to_thread(load_spec, base_spec) if base_spec != head_spec else doc
        diff = diff_specs(base_doc, doc)
        common = {"spec_path": str(head_spec), "base_spec_path": str(base_spec)}
        await self.emit(
            EventType.SPEC_PROPOSED,
            common
            | {"resource": "", "fields": {}, "operations_added": diff.added, "diff": diff.to_dict(), "decision_id": ""},
            cause=event,
        )
        await self.emit(
            EventType.SPEC_VALIDATED,
            common
            | {"openapi_version": str(doc.get("openapi")), "operation_count": len(operations(doc)), "valid": True},
            cause=event,
        )


def _inside(folder: Path, relative: str, descriptor_path: str, field: str) -> Path:
    """``folder/relative`` when it is a file inside ``folder``.

    Raises:
        ConfigError: it escapes the folder or does not exist (names the descriptor and the field).
    """
    target = (folder / relative).resolve()
    if not target.is_relative_to(folder.resolve()) or not target.is_file():
        raise ConfigError(
            f"{descriptor_path}: {field}: {relative} is not a file of the commit",
            hint=f"commit the file or fix `{field}` in pilotage.yaml",
            field=field,
        )
    return target


def _prepare_notes(*prepared: Prepared) -> list[str]:
    notes = []
    for prep in prepared:
        if prep.key:
            state = f"prepared in {prep.seconds:.1f} s" if prep.ran else "prepare cache hit"
            notes.append(f"{prep.checkout.name}: {state} (key {prep.key})")
    return notes
