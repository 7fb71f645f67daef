"""Run reports and one-line event summaries.

The report is a Markdown file with the timeline, every decision (inputs, rule, score, verdict) and the
outcome; the summaries feed the CLI's live timeline.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from pilotage.events import CloudEvent, EventType
from pilotage.secrets import write_private_text

__all__ = ["STAGES", "generated_failures", "stage_of", "summarize", "write_report"]

#: Event type → lifecycle stage shown in the timeline (DESIGN.md section 2).
STAGES: dict[str, str] = {
    EventType.FLOW_QUEUED: "queued",  # issue 19: waiting for `pilotage serve`'s admission
    EventType.FLOW_STARTED: "request",
    EventType.SPEC_PROPOSED: "design",
    EventType.SPEC_VALIDATED: "design",
    EventType.CODE_GENERATED: "code",
    EventType.PR_OPENED: "code",
    EventType.POLICY_EVALUATED: "policy",
    EventType.TESTS_COMPLETED: "test",
    EventType.PERF_MEASURED: "perf",
    EventType.PERF_ADVICE: "perf",
    EventType.DEPLOY_REQUESTED: "rollout",
    EventType.DEPLOY_STARTED: "rollout",
    EventType.DEPLOY_RESUMED: "rollout",
    EventType.DEPLOY_STEP: "rollout",
    EventType.DEPLOY_PROMOTED: "rollout",
    EventType.SLO_EVALUATED: "watch",
    EventType.SLO_BREACH: "watch",
    EventType.DEPLOY_ROLLED_BACK: "watch",
    EventType.DEPLOY_PAUSED: "watch",
    EventType.DEPLOY_STANDBY_RELEASED: "rollout",
    EventType.INCIDENT_OPENED: "watch",
    EventType.ENV_SCALED_DOWN: "cost",
    EventType.MODEL_UPDATED: "learn",
    EventType.DECISION: "decision",
    EventType.AGENT_FAILED: "error",
    EventType.FLOW_COMPLETED: "done",
    EventType.FLOW_FAILED: "done",
    # issue 17: services under management
    EventType.SERVICE_ADDED: "fleet",
    EventType.SERVICE_RELEASED: "fleet",
    EventType.SERVICE_UP: "fleet",
    EventType.SERVICE_DOWN: "fleet",
    EventType.CONTRACT_VERIFIED: "test",  # issue 19: a consumer's tests against the delivered commit
    # issue 6 (policy): the governance agent's security scan and the human-approval exchange
    EventType.SECURITY_SCANNED: "policy",
    EventType.APPROVAL_REQUESTED: "policy",
    EventType.APPROVAL_GRANTED: "policy",
    EventType.APPROVAL_DENIED: "policy",
    EventType.APPROVAL_EXPIRED: "policy",
}


def stage_of(event: CloudEvent) -> str:
    """Return the lifecycle stage of ``event`` (``other`` for types outside :data:`STAGES`)."""
    stage = STAGES.get(event.type)
    if stage is not None:
        return stage
    if event.type.startswith(("dev.pilotage.cnet.", "dev.pilotage.worker.", "dev.pilotage.market.")):
        return "coord"  # issue 8: contract-net, workers, credit market
    return "other"


def _short(event_type: str) -> str:
    return event_type.removeprefix(EventType.PREFIX)


def _step_summary(d: dict[str, Any]) -> str:
    """One ``deploy.step`` in the strategy's own words (issue 16), with the traffic plan's summary at step 0."""
    step, weight, strategy = d.get("step"), d.get("weight"), d.get("strategy")
    traffic = f"; synthetic traffic: {d['traffic']}" if d.get("traffic") else ""
    if strategy == "feature-flag":
        return f"step {step}: flag on for {weight}% of targeting keys{traffic}"
    if d.get("phase") == "preview":
        return f"step {step}: green at its preview address, 0% of users{traffic}"
    if strategy == "blue-green":
        return f"step {step}: switched to green (100%), watching{traffic}"
    return f"step {step}: canary weight {weight}%{traffic}"


def _fleet_summary(t: str, d: dict[str, Any]) -> str:
    """One ``service.*`` event (issue 17)."""
    if t == EventType.SERVICE_ADDED:
        return f"{d.get('service')} added, production {str(d.get('commit'))[:12]}, port {d.get('stable_port')}"
    if t == EventType.SERVICE_RELEASED:
        was = str(d.get("previous_commit"))[:12]
        return f"production of {d.get('service')} is now {str(d.get('commit'))[:12]} (was {was})"
    if t == EventType.SERVICE_UP:
        wake = f" in {d['wake_s']} s" if d.get("wake_s") is not None else ""
        return f"{d.get('service')} {str(d.get('commit'))[:12]} {d.get('reason')}{wake} at {d.get('url')}"
    error = f": {d['error']}" if d.get("error") else ""
    return f"{d.get('service')} down ({d.get('reason')}){error}"


def generated_failures(data: dict[str, Any]) -> str:
    """``"; Pilotage's generated tests: CRUD 1 failed (report.md)"`` when some failed or errored, else ``""``.

    They gate like the service's own tests; without this the progress line showed only zeros for a failed run.
    """
    generated = data.get("generated")
    generated = generated if isinstance(generated, dict) else {}
    parts = []
    for kind, label in (("crud", "CRUD"), ("properties", "property"), ("docstrings", "docstring")):
        counts = generated.get(kind)
        counts = counts if isinstance(counts, dict) else {}
        bad = int(counts.get("failed") or 0) + int(counts.get("errors") or 0)
        if bad:
            parts.append(f"{label} {bad} failed")
    return f"; Pilotage's generated tests: {', '.join(parts)} (report.md)" if parts else ""


def summarize(event: CloudEvent) -> str:  # noqa: C901 - one branch per event type, flat
    """Return a one-line human summary of ``event`` for the timeline."""
    d: dict[str, Any] = event.data if isinstance(event.data, dict) else {}
    t = event.type
    if t == EventType.FLOW_QUEUED:  # issue 19
        return f"queued: {d.get('kind', 'generate')} {d.get('service')} {str(d.get('rev') or '')[:12]}".rstrip()
    if t == EventType.FLOW_STARTED:
        if d.get("kind") == "deliver":  # issue 17
            return f"deliver {d.get('service')} {str(d.get('rev'))[:12]} from {d.get('service_repo')}"
        return f"request {d.get('request')!r} on {Path(str(d.get('spec_path', ''))).name}"
    if t == EventType.SPEC_PROPOSED:
        ops, diff = d.get("operations_added", []), d.get("diff") or {}
        if not d.get("resource"):  # a delivery: the commit's own document against production's
            return f"OpenAPI diff against production: {len(ops)} added, {len(diff.get('removed') or [])} removed " + (
                f"({diff.get('classification')})"
            )
        if d.get("change") == "add-field":
            fields = ", ".join(d.get("fields") or {})
            return f"field {fields} added to schema {d.get('resource')} ({diff.get('classification')})"
        return f"{len(ops)} operations added for {d.get('resource')} ({diff.get('classification')})"
    if t == EventType.SPEC_VALIDATED:
        return f"OpenAPI {d.get('openapi_version')} valid, {d.get('operation_count')} operations"
    if t == EventType.CODE_GENERATED:
        delivered = d.get("base_branch") == "production"  # a delivered commit (else generated, on its branch)
        where = "" if delivered else f" on {d.get('branch')}"
        notes = f" ({'; '.join(d['warnings'])})" if delivered and d.get("warnings") else ""
        return (
            f"commit {str(d.get('commit'))[:10]}{where}: {len(d.get('files_changed', []))} files, "
            f"+{d.get('lines_added')}/-{d.get('lines_removed')}{notes}"
        )
    if t == EventType.PR_OPENED:
        if d.get("base_branch") == "production":  # issue 17: a delivery's change under review
            return f"change {str(d.get('base_commit'))[:12]}..{str(d.get('commit'))[:12]} under review"
        return f"pull request {d.get('branch')} → {d.get('base_branch')}"
    if t in (EventType.SERVICE_ADDED, EventType.SERVICE_RELEASED, EventType.SERVICE_UP, EventType.SERVICE_DOWN):
        return _fleet_summary(t, d)
    if t == EventType.MARKET_AUCTION_CLOSED:
        won = ", ".join(f"{w.get('agent')} at {w.get('price')} credits" for w in d.get("winners") or []) or "no sale"
        return f"{d.get('resource')} auction {d.get('auction_id')}: {won} ({d.get('bids')} bids)"
    if t == EventType.MARKET_RELEASED:
        return f"{d.get('resource')} released by {d.get('agent')}"
    if t == EventType.SECURITY_SCANNED:  # issue 6
        issues = d.get("issues") or {}
        return (
            f"security scan ({d.get('tool')}) {d.get('status')}: {issues.get('high', 0)} high, "
            f"{issues.get('medium', 0)} medium, {issues.get('low', 0)} low"
        )
    if t.startswith("dev.pilotage.approval."):  # issue 6
        what = t.rsplit(".", 1)[-1]
        who = f" by {d['by']}" if d.get("by") else ""
        asks = (
            ("; ".join(d.get("needs_approval") or []) + f" (pilotage approve {d.get('approval_id')})")
            if what == "requested"
            else ""
        )
        if what == "rejected":  # issue 15: an answer whose signature did not verify (forged or unsigned)
            return (
                f"approval {d.get('approval_id')} ignored a {str(d.get('rejected_type', '')).rsplit('.', 1)[-1]} "
                f"claiming to be by {d.get('claimed_by') or '?'}: {d.get('reason')}"
            )
        if what in ("granted", "denied") and not d.get("signature"):  # issue 15: never shown as a real answer
            return f"approval {d.get('approval_id')} unsigned answer '{what}'{who} (ignored: not the operator's)"
        return f"approval {d.get('approval_id')} {what}{who}: {d.get('action')} {asks}".rstrip()
    if t == EventType.POLICY_EVALUATED:
        verdict = "allow" if d.get("allow") else "DENY " + "; ".join(d.get("reasons", []))
        if d.get("allow") and d.get("override"):  # issue 15: a safe-direction action without the policy's allow
            verdict += f" ({d['override']}: " + "; ".join(d.get("reasons", [])) + ")"
        return f"{d.get('action')}: {verdict}"
    if t == EventType.TESTS_COMPLETED:
        st = d.get("schemathesis") or {}
        unit = d.get("unit") or {}
        api = (
            f"schemathesis {st.get('requests')} requests, {st.get('server_errors')} server errors (gating), "
            f"{st.get('failures')} other findings (reported, not gating)"
            if st.get("ran", True)
            else "spec-derived tests not run"
        )
        own = (
            f"unit {unit.get('passed')} passed, {unit.get('failed')} failed"
            if unit.get("ran", True)
            else "no test command"
        )
        own += generated_failures(d)
        contract = d.get("contract") if isinstance(d.get("contract"), dict) else None
        gaps = (contract or {}).get("gaps") or []
        own += (
            "" if contract is None else f"; contract breaks {contract.get('violations', 0)}, document gaps {len(gaps)}"
        )
        return f"{'passed' if d.get('passed') else 'FAILED'}: {api}; {own}"
    if t == EventType.PERF_MEASURED:
        if d.get("skipped"):
            return f"skipped: {d.get('reason')}"
        tot = d.get("total") or {}
        prod = (d.get("production") or {}).get("total") or {}
        beside = f"; production p50 {prod.get('p50_ms')} ms, p95 {prod.get('p95_ms')} ms" if prod else ""
        return (
            f"{tot.get('requests')} requests, {tot.get('rps', 0):.0f} req/s, p50 {tot.get('p50_ms')} ms, "
            f"p95 {tot.get('p95_ms')} ms, p99 {tot.get('p99_ms')} ms, error rate {d.get('error_rate')}{beside}"
        )
    if t == EventType.DEPLOY_REQUESTED:
        return f"{d.get('strategy')} requested (risk {d.get('risk')}), steps {d.get('steps')}"
    if t == EventType.DEPLOY_STARTED:
        where = f", preview {d['preview_url']}" if d.get("preview_url") else ""
        flag = f", flag {d['flag_key']} on {d.get('flags_url')}" if d.get("flag_key") else ""
        return f"{d.get('strategy')} with steps {d.get('steps')} via {d.get('proxy_url')}{where}{flag}"
    if t == EventType.DEPLOY_STEP:
        return _step_summary(d)
    if t in (EventType.SLO_EVALUATED, EventType.SLO_BREACH):
        c = d.get("canary") or {}
        b = d.get("baseline") or {}
        state = "healthy" if d.get("healthy") else "BREACH"
        if t == EventType.SLO_EVALUATED and not d.get("healthy"):
            state = {"pause": "PAUSED", "rollback": "ROLLBACK"}.get(str(d.get("action")), state)
            state += " (both versions degrading)" if d.get("cause") == "shared_degradation" else ""
        base = f", baseline {b.get('errors')}/{b.get('requests')}" if b and b.get("requests") else ""
        why = f" — {d['reasons'][0]}" if d.get("reasons") and not d.get("healthy") else ""
        outcome = f" ({d['outcome']})" if d.get("outcome") else ""
        return (
            f"{d.get('phase', 'step')} {state}{outcome}: canary {c.get('errors')}/{c.get('requests')} "
            f"errors{base}, SLO error rate ≤ {d.get('slo_error_rate')}{why}"
        )
    if t == EventType.DEPLOY_PAUSED:
        return f"PAUSED at {d.get('weight')}%: {d.get('reason')}"
    if t == EventType.DEPLOY_STANDBY_RELEASED:
        return f"standby {d.get('version')} stopped ({d.get('reason')})"
    if t == EventType.DEPLOY_PROMOTED:
        return f"promoted {d.get('version')} ({d.get('strategy')})"
    if t == EventType.DEPLOY_ROLLED_BACK:
        return f"ROLLED BACK {d.get('version')}: {d.get('reason')}"
    if t == EventType.INCIDENT_OPENED:
        return f"incident {d.get('incident_id')}: {d.get('summary')}"
    if t == EventType.ENV_SCALED_DOWN:
        return (
            f"{d.get('environment')} idle {d.get('idle_s')} s → scaled to zero, saving "
            f"${d.get('saving_usd_per_hour')}/h"
        )
    if t == EventType.MODEL_UPDATED:
        return f"Beta({d.get('alpha')}, {d.get('beta')}) for {d.get('service')}/{d.get('strategy')}"
    if t == EventType.DECISION:
        return f"{d.get('agent')}/{d.get('kind')} → {d.get('action')} ({d.get('rule')})"
    if t == EventType.AGENT_FAILED:
        return f"{d.get('agent')} failed: {d.get('error')}"
    if t in (EventType.FLOW_COMPLETED, EventType.FLOW_FAILED):
        return f"{d.get('status')}, outcome {d.get('outcome')}" + (f": {d.get('error')}" if d.get("error") else "")
    return _short(t)


def _time(event: CloudEvent) -> str:
    try:
        return datetime.fromisoformat(event.time).strftime("%H:%M:%S.%f")[:-3]
    except ValueError:
        return event.time


def _gap_lines(events: list[CloudEvent]) -> list[str]:
    """``## Document gaps`` of the last ``tests.completed`` (issue 18): one line per operation and status, or ``[]``."""
    tested = [e for e in events if e.type == EventType.TESTS_COMPLETED and isinstance(e.data, dict)]
    contract = (tested[-1].data.get("contract") if tested else None) or {}
    gaps = [g for g in contract.get("gaps") or [] if isinstance(g, dict)] if isinstance(contract, dict) else []
    if not gaps:
        return []
    denies = contract.get("gap_gate") == "deny"
    head = "they deny the deploy (testing_document_gap_gate = deny)" if denies else "reported, not denied"
    lines = ["", "## Document gaps", "", f"Statuses HTTP forces that the document does not declare ({head}):", ""]
    return lines + [f"- {g.get('operation')} → {g.get('status')}: {g.get('reason')}; fix: {g.get('fix')}" for g in gaps]


def write_report(path: Path, events: list[CloudEvent], *, title: str) -> Path:
    """Write a Markdown report of a run's ``events`` to ``path`` and return it.

    Sections: outcome, timeline (one row per event), decisions (inputs as JSON, rule, score, verdict). The file
    is written 0600 with every registered secret masked (:func:`pilotage.secrets.write_private_text`).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    closing = [e for e in events if e.type in (EventType.FLOW_COMPLETED, EventType.FLOW_FAILED)]
    lines = [f"# {title}", ""]
    if closing:
        d = closing[-1].data or {}
        lines += [
            f"**Status:** {d.get('status')} · **outcome:** {d.get('outcome')} · **duration:** {d.get('duration_s')} s",
            "",
        ]
        if d.get("error"):
            lines += [f"**Error:** {d.get('error')}", ""]
    lines += ["## Timeline", "", "| time (UTC) | stage | event | summary |", "|---|---|---|---|"]
    for event in events:
        summary = summarize(event).replace("|", "\\|")
        lines.append(f"| {_time(event)} | {stage_of(event)} | `{_short(event.type)}` | {summary} |")
    lines += _gap_lines(events)
    lines += ["", "## Decisions", ""]
    for event in events:
        if event.type != EventType.DECISION:
            continue
        d = event.data or {}
        lines += [
            f"### {d.get('agent')} · {d.get('kind')} → **{d.get('action')}**",
            "",
            f"- id: `{d.get('id')}` (`pilotage explain {d.get('id')}`)",
            f"- rule: {d.get('rule')}",
            f"- score: `{json.dumps(d.get('score'))}`",
            f"- rationale: {d.get('rationale')}",
        ]
        if d.get("verdict"):
            v = d["verdict"]
            lines.append(f"- policy verdict: {'allow' if v.get('allow') else 'deny'} {v.get('reasons') or ''}")
        lines += ["", "```json", json.dumps(d.get("inputs"), indent=2, default=str)[:4000], "```", ""]
    return write_private_text(path, "\n".join(lines) + "\n")  # issue 15: 0600, secrets masked
