"""The codegen agent: a validated spec → a runnable service on a git branch, a "pull request" (step 2).

On ``spec.validated`` it

1. **perceives**: the run (``flow.started``), the base and next specs named by the event, the generation plan
   of the next spec (resources and the kind of every operation, :mod:`pilotage.codegen.plan`), and whether
   ``workdir/repo`` is already a repository;
2. **reasons** (kind ``codegen.plan``): which files and resources it generates and where it commits;
3. **acts**: on a fresh repository, generates the service for the base spec and commits it on ``main``
   ("baseline"); then branches ``pilotage/<resource-slug>-<run id[:8]>`` from ``main``, regenerates for the
   next spec (the operations it adds behind the release flag, ``flagged_operations``) and commits with the
   request as message; adds detached worktrees of both commits under
   ``workdir/versions/<sha12>``; makes the generated repository a managed service whose production is the
   baseline (:func:`pilotage.fleet.registry.register_generated`, issue 17: the change is delivered like any
   commit of a managed service); emits ``code.generated`` then ``pr.opened``;
4. **learns**: ``Service -HAS_COMMIT-> Commit`` for both commits and ``Commit -IMPLEMENTS-> Spec``.

Redelivery of the same event is harmless: a branch whose head already carries the request is reused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from pilotage.agent import Agent, Reasoning, RunSpec
from pilotage.codegen import git
from pilotage.codegen.generator import SERVICE_FILES, generate_service, read_requirements
from pilotage.codegen.models import model_names
from pilotage.codegen.plan import make_plan
from pilotage.errors import BackendError
from pilotage.events import CloudEvent, EventType
from pilotage.fleet.registry import register_generated
from pilotage.graph.base import node_id
from pilotage.spec.diff import diff_specs
from pilotage.spec.grammar import parse_request
from pilotage.spec.load import load_spec, spec_key

__all__ = ["CodegenAgent", "branch_name"]


def branch_name(slug: str, run_id: str) -> str:
    """Return the change branch: ``pilotage/<slug>-<run_id[:8]>``."""
    return f"pilotage/{slug}-{run_id[:8]}"


def _commit_input(repo: Path, branch: str, role: str, message: str, files: list[str]) -> dict[str, Any]:
    """The ``commit`` policy input (``policy/bundled/commit.rego``); issue 6."""
    return {"repo_path": str(repo), "branch": branch, "role": role, "message": message, "files": list(files)}


def _plan_summary(doc: dict[str, Any]) -> tuple[list[dict[str, str]], list[str]]:
    plan = make_plan(doc, model_names(doc))
    ops = [{"operation": f"{op.meta['method']} {op.meta['path']}", "kind": op.kind} for op in plan.operations]
    return ops, [f"{r.name} ({r.collection_path})" for r in plan.resources]


class CodegenAgent(Agent):
    """Generates and commits the service for the next spec (see module docstring)."""

    name: ClassVar[str] = "codegen"
    subscribes: ClassVar[tuple[str, ...]] = (EventType.SPEC_VALIDATED,)

    def reason(self, kind: str, inputs: dict[str, Any]) -> Reasoning:
        """Plan a ``codegen.plan`` from the repository state and the generation plan (pure).

        Inputs: ``repo_initialized`` (bool), ``branch``, ``files`` (the service layout), ``resources`` and
        ``operations`` (``[{"operation", "kind"}]``) of the next spec.

        Returns:
            action ``baseline-and-branch`` (fresh repository) or ``branch`` (rule ``openapi-to-fastapi``);
            score: counts of files, resources, operations and operations backed by SQLite.
        """
        if kind != "codegen.plan":
            return super().reason(kind, inputs)
        stored = [op for op in inputs["operations"] if op["kind"] not in ("example", "nested")]
        action = "branch" if inputs["repo_initialized"] else "baseline-and-branch"
        first = "" if inputs["repo_initialized"] else "Commit the base spec's service on main as the baseline, then "
        return Reasoning(
            action=action,
            rule="openapi-to-fastapi",
            score={
                "files": len(inputs["files"]),
                "resources": len(inputs["resources"]),
                "operations": len(inputs["operations"]),
                "stored_operations": len(stored),
            },
            rationale=(
                f"{first}regenerate {len(inputs['files'])} files on {inputs['branch']}: "
                f"{len(inputs['operations'])} operations, {len(stored)} of them persisted in SQLite for the "
                f"resources {', '.join(inputs['resources']) or 'none'}; the others answer schema examples."
            ),
        )

    def _existing_change(self, repo: Path, branch: str, message: str) -> str | None:
        try:
            head = git.rev_parse(repo, branch)
        except BackendError:
            return None
        return head if git.git(repo, "log", "-1", "--format=%B", head).strip() == message.strip() else None

    async def on_event(self, event: CloudEvent) -> None:
        """Generate, commit and announce the change for one ``spec.validated`` event.

        Raises:
            InputError: a spec named by the event does not load, or the run's request does not parse.
            BackendError: git failed.
        """
        run: RunSpec = await self.run_spec(event)
        if run.delivery:
            return  # a delivery's commit exists already (the source agent announces it)
        data = event.data or {}
        next_doc = load_spec(data["spec_path"])
        base_doc = load_spec(data["base_spec_path"])
        req = parse_request(run.request)
        repo = run.repo_path.resolve()
        branch = branch_name(req.slug, run.run_id)
        operations, resources = _plan_summary(next_doc)
        flagged = diff_specs(base_doc, next_doc).added
        initialized = git.is_repo(repo)
        inputs = {
            "repo_initialized": initialized,
            "branch": branch,
            "files": list(SERVICE_FILES),
            "resources": resources,
            "operations": operations,
        }
        decision = await self.decide("codegen.plan", inputs, cause=event)

        if not initialized:
            git.init_repo(repo)
            baseline = generate_service(base_doc, repo, name=run.service)
            info = base_doc.get("info") or {}
            message = f"baseline: {info.get('title', run.service)} {info.get('version', '')}".strip()
            # issue 6 (policy): every commit asks the policy engine first; a deny raises PolicyDenied (fail closed)
            await self.authorize(
                "commit", _commit_input(repo, "main", "baseline", message, baseline.files), cause=event
            )
            git.commit_all(repo, message)
        base_commit = git.rev_parse(repo, "main")
        commit = self._existing_change(repo, branch, run.request)
        if commit is None:
            git.create_branch(repo, branch, "main")
            # issue 16: the operations the change adds are served only to requests whose release flag is on
            generated = generate_service(next_doc, repo, flagged=flagged, name=run.service)
            # issue 6 (policy): every commit asks the policy engine first; a deny raises PolicyDenied (fail closed)
            await self.authorize(
                "commit", _commit_input(repo, branch, "change", run.request, generated.files), cause=event
            )
            commit = git.commit_all(repo, run.request)
            warnings = generated.warnings
        else:
            warnings = []
        git.git(repo, "checkout", "-q", "main")
        stats = git.diff_stats(repo, base_commit, commit)
        versions = Path(run.workdir).resolve() / "versions"
        base_dir = git.worktree(repo, base_commit, versions)
        head_dir = git.worktree(repo, commit, versions)
        dependencies = read_requirements(head_dir / "requirements.txt")
        base_names = {d["name"] for d in read_requirements(base_dir / "requirements.txt")}
        new_dependencies = [d for d in dependencies if d["name"] not in base_names]

        # issue 17: the generated service is a managed service; its baseline is the production the change is
        # delivered against, served on the service's stable address (pilotage.fleet.keeper brings it up)
        settings = self.ctx.settings
        await register_generated(
            self.ctx.bus,
            self.ctx.graph,
            repo,
            base_commit,
            run_id=run.run_id,
            port_base=settings.fleet_port_base,
            port=run.proxy_port,
        )
        await self.emit(
            EventType.CODE_GENERATED,
            {
                "repo_path": str(repo),
                "base_branch": "main",
                "base_commit": base_commit,
                "branch": branch,
                "commit": commit,
                "base_dir": str(base_dir),
                "head_dir": str(head_dir),
                "files_changed": stats.files,
                "lines_added": stats.lines_added,
                "lines_removed": stats.lines_removed,
                "code_lines_changed": stats.code_lines_changed,
                "base_code_lines": stats.base_code_lines,
                "dependencies": dependencies,
                "new_dependencies": new_dependencies,
                "warnings": warnings,
                "flagged_operations": flagged,
                "decision_id": decision.id,
                "service_repo": str(repo),
            },
            cause=event,
        )
        self._learn(run.service, base_doc, next_doc, base_commit, commit, branch, stats.to_dict())
        body = "\n".join(
            [
                f"Generated by Pilotage for run {run.run_id}: {run.request}",
                "",
                f"Resources: {', '.join(resources) or 'none'}",
                f"Changed: {len(stats.files)} files, +{stats.lines_added} -{stats.lines_removed} lines",
                f"New dependencies: {', '.join(d['name'] for d in new_dependencies) or 'none'}",
                "",
                *[f"- `{op['operation']}` ({op['kind']})" for op in operations],
            ]
        )
        await self.emit(
            EventType.PR_OPENED,
            {
                "repo_path": str(repo),
                "branch": branch,
                "base_branch": "main",
                "commit": commit,
                "base_commit": base_commit,
                "title": run.request,
                "body": body,
            },
            cause=event,
        )

    def _learn(
        self,
        service: str,
        base_doc: dict[str, Any],
        next_doc: dict[str, Any],
        base_commit: str,
        commit: str,
        branch: str,
        stats: dict[str, Any],
    ) -> None:
        graph = self.ctx.graph
        graph.upsert_node("Service", service, {"name": service})
        for sha, doc, props in (
            (base_commit, base_doc, {"branch": "main", "role": "base"}),
            (
                commit,
                next_doc,
                {
                    "branch": branch,
                    "role": "head",
                    "lines_added": stats["lines_added"],
                    "lines_removed": stats["lines_removed"],
                    "files_changed": len(stats["files"]),
                },
            ),
        ):
            graph.upsert_node("Commit", sha, {"service": service, "sha": sha, **props})
            graph.upsert_edge(node_id("Service", service), "HAS_COMMIT", node_id("Commit", sha))
            key = spec_key(service, doc)
            graph.upsert_node("Spec", key, {"service": service})
            graph.upsert_edge(node_id("Commit", sha), "IMPLEMENTS", node_id("Spec", key))
