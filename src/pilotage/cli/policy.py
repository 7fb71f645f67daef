"""``pilotage policy check [PATH]``, ``policy pending``, ``approve ID`` and ``deny ID``: governance from the CLI.

``policy check`` gathers a repository's facts offline (dependencies from its manifests and the installed
metadata, licences from a CycloneDX SBOM, secrets with detect-secrets, cryptography, a bandit scan), evaluates the
``merge`` policies of the configured engine (``policy_url``: ``rego:`` or an OPA server) and prints the findings:
rich text, ``--json`` (the report), or ``--format sarif`` (SARIF 2.1.0 for code-scanning tools). Exit code 1 when
a policy denies; a policy that does not load is a one-line error (exit 2) naming the file and line.

``approve ID`` / ``deny ID`` answer an action a policy marked ``needs_approval``: the answer is an event
(``dev.pilotage.approval.granted`` / ``.denied``) on the configured bus, so it reaches the waiting agent from any
process sharing the event log (:mod:`pilotage.policy.approval`); ``policy pending`` lists the waiting ones. An
unknown id or one already answered is a one-line error (exit 2). The answer is signed with the operator's approval
key (``approval_key_file``, default ``~/.config/pilotage/approval.key``, created 0600 on first use,
:mod:`pilotage.policy.approval_key`); the waiting agent ignores answers it cannot verify, so a run's own processes
cannot approve their deploy. Requests and answers without a valid signature are not listed.
"""

from __future__ import annotations

import asyncio
import getpass
import json
import os
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from pilotage.cli import JsonOpt, app, cli_settings, console
from pilotage.events import CloudEvent

policy_app = typer.Typer(help="Governance policies: check a repository, list pending approvals.", no_args_is_help=True)
app.add_typer(policy_app, name="policy")

_STYLE = {"error": "red", "warning": "yellow", "note": "dim"}


class OutputFormat(StrEnum):
    """Output formats of ``policy check``."""

    text = "text"
    json = "json"
    sarif = "sarif"


@policy_app.command("check")
def policy_check(
    path: Annotated[Path, typer.Argument(help="The repository to check (default: the working directory).")] = Path(),
    output: Annotated[
        OutputFormat, typer.Option("--format", help="text (default), json, or sarif (SARIF 2.1.0).")
    ] = OutputFormat.text,
    no_sbom: Annotated[
        bool, typer.Option("--no-sbom", help="Read licences from installed metadata only (no cyclonedx-py run).")
    ] = False,
    json_mode: JsonOpt = False,
) -> None:
    """Run the governance policies on a repository; exit 1 when anything is denied."""
    from pilotage import __version__
    from pilotage.policy import open_engine
    from pilotage.policy.check import check_repository, to_sarif

    settings = cli_settings()
    with open_engine(settings) as engine:
        engine.check()
        report = check_repository(path, engine, use_sbom=not no_sbom)
    if output is OutputFormat.sarif:
        console.print_json(json.dumps(to_sarif(report, __version__)))
    elif json_mode or output is OutputFormat.json:
        console.print_json(json.dumps(report.to_dict()))
    else:
        _print_report(report.to_dict())
    if report.denied:
        raise typer.Exit(1)


def _print_report(doc: dict[str, Any]) -> None:
    facts = doc["facts"]
    scan = facts["security_scan"]
    issues = scan.get("issues") or {}
    console.print(f"[bold]policy check[/bold] {escape(str(doc['path']))} · engine {escape(doc['verdict']['engine'])}")
    console.print(
        f"  {facts['dependencies']} dependencies ({facts['direct_dependencies']} direct), licences from "
        f"{facts['licence_source']}; {facts['files_scanned']} files scanned; {facts['secrets']} secrets; "
        f"{facts['crypto_uses']} weak-hash/crypto uses; bandit {scan.get('status')} "
        f"({issues.get('high', 0)} high, {issues.get('medium', 0)} medium, {issues.get('low', 0)} low); "
        f"vulnerabilities {facts['vulnerability_scan']}",
        markup=False,
    )
    for found in doc["findings"]:
        where = found.get("file", "")
        if where and found.get("line"):
            where += f":{found['line']}"
        style = _STYLE.get(found["level"], "default")
        level = escape(f"{found['level']:7}")
        console.print(
            f"  [{style}]{level}[/{style}] "
            + escape(
                f"{found['rule']:20} {found['msg']}" + (f"  ({where})" if where and where not in found["msg"] else "")
            )
        )
    verdict = "[red]denied[/red]" if doc["denied"] else "[green]allowed[/green]"
    console.print(f"merge: {verdict}")


def _operator_key(settings: Any) -> bytes:
    """Load the operator's approval key, saying on stderr when this call created it (first use)."""
    from pilotage.policy.approval_key import key_path, load_key

    path = key_path(settings)
    existed = os.path.lexists(path)
    key = load_key(path)
    if not existed:
        sys.stderr.write(f"created the operator's approval key {path} (mode 0600): approvals are signed with it\n")
    return key


@policy_app.command("pending")
def policy_pending(json_mode: JsonOpt = False) -> None:
    """List the actions waiting for a person's approval (answer with pilotage approve/deny ID)."""
    from pilotage.app import open_bus
    from pilotage.policy.approval import pending_approvals

    settings = cli_settings()
    key = _operator_key(settings)

    async def go() -> list[dict[str, Any]]:
        async with open_bus(settings) as bus:
            return await pending_approvals(bus, key)

    waiting = asyncio.run(go())
    if json_mode:
        console.print_json(json.dumps(waiting))
        return
    if not waiting:
        from pilotage.policy.approval_key import key_id, key_path

        console.print(f"no approval pending (signed with key {key_id(key)} at {key_path(settings)})", markup=False)
    for item in waiting:
        console.print(
            f"{item['approval_id']}  {item['action']} by {item['agent']} in run {item['run_id']} "
            f"(timeout {item['timeout_s']:g} s, then {item['default']}): " + "; ".join(item["needs_approval"]),
            markup=False,
        )


_BY = Annotated[str | None, typer.Option("--by", help="Who answers (default: the login name).")]
_REASON = Annotated[str, typer.Option("--reason", help="Why; kept in the event and shown in the verdict.")]
_ID = Annotated[str, typer.Argument(help="The approval id (apr-…), from pilotage policy pending or the log.")]


def _answer(ident: str, granted: bool, by: str | None, reason: str, json_mode: bool) -> None:
    from pilotage.app import open_bus
    from pilotage.policy.approval import answer

    settings = cli_settings()
    key = _operator_key(settings)

    async def go() -> CloudEvent:
        async with open_bus(settings) as bus:
            return await answer(bus, ident, granted=granted, by=by or getpass.getuser(), reason=reason, key=key)

    event = asyncio.run(go())
    if json_mode:
        console.print_json(json.dumps({"type": event.type, "id": event.id, "run_id": event.runid, **event.data}))
    else:
        what = "approved" if granted else "denied"
        console.print(
            f"{ident} {what} by {event.data['by']} ({event.data['action']} in run {event.runid})", markup=False
        )


@app.command("approve")
def approve(ident: _ID, by: _BY = None, reason: _REASON = "", json_mode: JsonOpt = False) -> None:
    """Approve a waiting action (the policy's needs_approval messages it lists)."""
    _answer(ident, True, by, reason, json_mode)


@app.command("deny")
def deny(ident: _ID, by: _BY = None, reason: _REASON = "", json_mode: JsonOpt = False) -> None:
    """Deny a waiting action: the agent records a deny verdict and the run fails."""
    _answer(ident, False, by, reason, json_mode)
