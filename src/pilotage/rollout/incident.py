"""Incident records of a rollback: a Markdown file with the evidence, and a GitHub-issue payload when configured.

:func:`write_incident` writes ``<folder>/<incident_id>.md`` (summary, the judge's verdicts with statistic, p-value,
effect size and threshold, the burn-rate alerts, the request counts, the actions taken) and, when a repository is
configured (``settings.incident_repository = "owner/name"``), ``<folder>/<incident_id>.github-issue.json``: the
body of GitHub's REST call *Create an issue* (``POST /repos/{owner}/{repo}/issues`` with ``title``, ``body``,
``labels``; https://docs.github.com/en/rest/issues/issues#create-an-issue). Pilotage writes the payload and does not
send it: posting needs a token, which is the operator's to hold (``gh api repos/OWNER/REPO/issues --input FILE``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pilotage.errors import ConfigError
from pilotage.secrets import write_private_text

__all__ = ["IncidentFiles", "github_issue_payload", "render_markdown", "write_incident"]

_REPO = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")


@dataclass(frozen=True)
class IncidentFiles:
    """Paths written for one incident: ``markdown`` always, ``github_payload`` when a repository is configured."""

    markdown: Path
    github_payload: Path | None


def _e(verdict: dict[str, Any]) -> str:
    """The sequential evidence of a verdict: e-value of its threshold (older verdicts: the statistic)."""
    ev = verdict.get("evidence") or {}
    if "e_value" in ev:
        return f"{_fmt(ev['e_value'])} / {_fmt(ev.get('e_threshold'))}"
    return _fmt(verdict.get("statistic"))


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def render_markdown(incident_id: str, summary: str, evidence: dict[str, Any], actions: list[str]) -> str:
    """Render the incident as Markdown.

    Args:
        incident_id: id of the incident.
        summary: one line.
        evidence: ``deployment_id``, ``service``, ``phase``, ``step``, ``weight`` and an assessment
            (``outcome``, ``reasons``, ``verdicts`` [...], ``alerts`` [...], ``counts``) as
            :meth:`pilotage.rollout.analysis.Assessment.to_dict` gives; optionally ``populations`` (a request
            table per version) and ``log_tail`` (the canary's last log lines).
        actions: what was done, in order.
    """
    lines = [
        f"# Incident {incident_id}",
        "",
        f"- **Opened:** {datetime.now(UTC).isoformat(timespec='seconds')}",
        f"- **Service:** {evidence.get('service', '?')} · **deployment:** {evidence.get('deployment_id', '?')}",
        f"- **When:** {'post-promotion watch' if evidence.get('phase') == 'watch' else 'rollout'} step "
        f"{evidence.get('step', '?')} at canary weight "
        f"{evidence.get('weight', '?')}%",
        f"- **Summary:** {summary}",
        "",
        "## Why",
        "",
        *[f"- {r}" for r in evidence.get("reasons", [])],
        "",
        "## Canary judge",
        "",
        "| metric | test | outcome | e-value / threshold | p-value (always valid) | effect size | threshold |",
        "|---|---|---|---|---|---|---|",
        *[
            f"| {v['metric']} | {v['test']} | {v['outcome']} | {_e(v)} | {_fmt(v['p_value'])} | "
            f"{_fmt(v['effect_size'])} | {', '.join(f'{k}={_fmt(x)}' for k, x in v['threshold'].items())} |"
            for v in evidence.get("verdicts", [])
        ],
        "",
        "## Burn-rate alerts (SRE Workbook ch. 5, scaled windows)",
        "",
        "| objective | rule | factor | long window s | burn | short window s | burn | firing |",
        "|---|---|---|---|---|---|---|---|",
        *[
            f"| {a['objective']} | {a['rule']} | {a['factor']} | {a['long_window_s']} | {_fmt(a['long_burn'])} | "
            f"{a['short_window_s']} | {_fmt(a['short_burn'])} | {'**yes**' if a['firing'] else 'no'} |"
            for a in evidence.get("alerts", [])
        ],
        "",
        "## Requests in the analysis window",
        "",
        *_population_rows(evidence.get("populations", [])),
        "```json",
        json.dumps(evidence.get("counts", {}), indent=2, sort_keys=True),
        "```",
        "",
        "## Actions taken",
        "",
        *[f"{i}. {a}" for i, a in enumerate(actions, 1)],
        "",
    ]
    if evidence.get("log_tail") is not None:
        lines += ["## Canary log (last lines)", "", "```", *(evidence["log_tail"] or ["(no log)"]), "```", ""]
    return "\n".join(lines)


def _population_rows(populations: list[dict[str, Any]]) -> list[str]:
    """Markdown table of ``populations`` [{role, version, requests, errors, error_rate, source}] (empty: none)."""
    if not populations:
        return []
    rows = [
        f"| {p['role']} | {p['version']} | {_fmt(p['requests'])} | {_fmt(p['errors'])} | {p['error_rate']:.2%} | "
        f"{p.get('source', '?')} |"
        for p in populations
    ]
    return ["| population | version | requests | 5xx | error rate | source |", "|---|---|---|---|---|---|", *rows, ""]


def github_issue_payload(incident_id: str, summary: str, markdown: str, service: str) -> dict[str, Any]:
    """Return the JSON body of GitHub's *Create an issue* call for this incident."""
    return {
        "title": f"[pilotage] {service}: {summary[:180]} ({incident_id})",
        "body": markdown,
        "labels": ["incident", "pilotage", f"service:{service}"],
    }


def write_incident(
    folder: Path,
    incident_id: str,
    summary: str,
    evidence: dict[str, Any],
    actions: list[str],
    *,
    repository: str | None = None,
) -> IncidentFiles:
    """Write the Markdown record and, with ``repository`` (``owner/name``), the GitHub-issue payload.

    Raises:
        ConfigError: ``repository`` is not ``owner/name``.
    """
    if repository is not None and not _REPO.match(repository):
        raise ConfigError(
            f"incident repository {repository!r} is not owner/name", hint="set incident_repository = 'owner/name'"
        )
    folder.mkdir(parents=True, exist_ok=True)
    text = render_markdown(incident_id, summary, evidence, actions)
    md = folder / f"{incident_id}.md"
    write_private_text(md, text)  # issue 15: 0600, secrets masked
    payload_path = None
    if repository is not None:
        # exactly the body of the create-an-issue call (the repository is in the URL, not the body)
        payload = github_issue_payload(incident_id, summary, text, str(evidence.get("service", "?")))
        payload_path = folder / f"{incident_id}.github-issue.json"
        write_private_text(payload_path, json.dumps(payload, indent=2))
    return IncidentFiles(md, payload_path)
