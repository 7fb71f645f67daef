"""The policy-engine contract: every world-changing action asks for a :class:`Verdict` first.

An *action* names a policy package below ``data.pilotage``: ``commit`` (the codegen agent writing to git),
``merge`` (a generated change entering the repository), ``deploy``, ``promote``, ``rollback``, ``scale``. The
engine evaluates two sets of the package against an input document (Rego v1):

* ``deny`` (required): ``deny contains msg if { ... }``; the action is refused while it is not empty;
* ``needs_approval`` (optional): ``needs_approval contains msg if { ... }``; the action waits for a person
  (``pilotage approve ID`` / ``pilotage deny ID``, :mod:`pilotage.policy.approval`).

A member of either set is a string, or an object ``{"msg": str, "rule": str, "file": str, "line": int}`` (only
``msg`` is required) so ``pilotage policy check`` can point at a file and line; :attr:`Verdict.reasons` holds the
messages, :attr:`Verdict.findings` the objects.

An approval is carried by the input: ``input.approval = {"id", "granted": true, "by", "approved": [msg, ...]}``
satisfies exactly the ``needs_approval`` messages listed in ``approved`` (:func:`make_verdict`), so an approval of
one new dependency does not cover another.

Fail closed (DESIGN.md section 6): an engine error, an undefined package, a timeout or an unreachable server is a
deny whose reason says so (and :attr:`Verdict.error` holds it); the action is allowed only when ``deny`` is empty
and no approval is pending.

Except in the safe direction (DESIGN.md 6b, issue #15 finding 5). Refusing an action is only safe when the action
adds risk; a rollback that is refused leaves a failing canary serving its share of traffic. So the rule is per
action (:data:`SAFE_DIRECTION_ACTIONS`, applied by :meth:`pilotage.agent.Agent.authorize`):

==========  ================================  ===============================  ==================================
action      direction                         engine error / timeout / down    explicit deny / needs_approval
==========  ================================  ===============================  ==================================
rollback    traffic back to known-good        proceeds: "no verdict; safe      proceeds: "deny overridden; safe
                                              direction"                       direction" / "approval not
                                                                               awaited; safe direction"
deploy      adds risk (new code serves)       deny (fail closed)               deny / waits for a person
promote     adds risk (canary to 100 %)       deny (fail closed)               deny / waits for a person
scale       adds risk (stops a serving env)   deny (fail closed)               deny / waits for a person
commit      adds risk (code enters git)       deny (fail closed)               deny / waits for a person
merge       adds risk (change is accepted)    deny (fail closed)               deny / waits for a person
==========  ================================  ===============================  ==================================

A safe-direction action always gets an allowing verdict whose :attr:`Verdict.override` says why, with the
engine's error (:attr:`Verdict.error`) or the policy's reasons kept, so ``pilotage explain`` shows what the policy
would have said. Any action not listed as safe (including actions a user's policies add) is fail closed.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from types import TracebackType
from typing import Any

from pilotage.errors import InputError

__all__ = [
    "APPROVAL_PREFIX",
    "DEFAULT_TIMEOUT_S",
    "SAFE_DIRECTION_ACTIONS",
    "PolicyEngine",
    "Verdict",
    "encode_input",
    "finding_of",
    "make_verdict",
    "no_verdict",
    "safe_direction",
]

#: Seconds an engine may take to answer one evaluation before the answer counts as a deny. Bundled policies
#: answer in well under 0.1 s (see ``rego.py``); 5 s leaves room for large inputs and slow machines.
DEFAULT_TIMEOUT_S = 5.0
#: Prefix of the reason that stands for a pending approval in :attr:`Verdict.reasons`.
APPROVAL_PREFIX = "approval required: "
#: Actions that move traffic toward the known-good version: they proceed without an allowing verdict (module doc).
SAFE_DIRECTION_ACTIONS: frozenset[str] = frozenset({"rollback"})
#: :attr:`Verdict.override` of a safe-direction action the engine could not judge.
NO_VERDICT_SAFE = "no verdict; safe direction"
#: :attr:`Verdict.override` of a safe-direction action a working policy denied.
DENY_OVERRIDDEN_SAFE = "deny overridden; safe direction"
#: :attr:`Verdict.override` of a safe-direction action a working policy wanted a person for (it never waits).
APPROVAL_NOT_AWAITED_SAFE = "approval not awaited; safe direction"


@dataclass(frozen=True)
class Verdict:
    """The answer of the policy engine for one action.

    Attributes:
        action: the action asked about (``deploy`` ...).
        allow: True only when no policy denied, no approval is pending and the engine answered.
        reasons: one human-readable line per deny, then one ``approval required: <msg>`` per pending approval
            (empty when allowed).
        policies: the policy packages (and files, when known) that were evaluated, e.g. ``["data.pilotage.deploy"]``.
        engine: the engine URL that answered (``rego:``, ``http://opa:8181`` ...).
        needs_approval: the ``needs_approval`` messages no approval in the input covers yet.
        findings: ``[{"kind": "deny" | "approval", "msg", "rule", "file"?, "line"?}]``, one per reason.
        error: why the engine gave no answer (error, timeout, unreachable, undefined package), else ``""``; a
            verdict with an error is never an allow, except in the safe direction.
        override: ``""``, or why a safe-direction action proceeds without the policy's allow
            (``"no verdict; safe direction"``, ``"deny overridden; safe direction"``); ``reasons`` then keep
            what the policy or the engine said.
    """

    action: str
    allow: bool
    reasons: list[str] = field(default_factory=list)
    policies: list[str] = field(default_factory=list)
    engine: str = ""
    needs_approval: list[str] = field(default_factory=list)
    findings: list[dict[str, Any]] = field(default_factory=list)
    error: str = ""
    override: str = ""

    @property
    def awaits_approval(self) -> bool:
        """True when the only obstacle is a pending approval (no deny): a person may still allow the action."""
        return not self.allow and bool(self.needs_approval) and len(self.reasons) == len(self.needs_approval)

    def to_dict(self) -> dict[str, Any]:
        """Return the verdict as a JSON-serialisable dict."""
        return asdict(self)


def no_verdict(action: str, reason: str, *, policies: Sequence[str] = (), engine: str = "") -> Verdict:
    """Return the deny verdict of an engine that could not answer: ``reasons == [reason]``, ``error == reason``."""
    return Verdict(action=action, allow=False, reasons=[reason], policies=list(policies), engine=engine, error=reason)


def safe_direction(verdict: Verdict) -> Verdict:
    """Return the verdict a safe-direction action proceeds on (module doc): an allow that keeps what was said.

    An allowing verdict is returned unchanged. Otherwise ``allow`` becomes True and ``override`` says why:
    ``"no verdict; safe direction"`` when the engine could not answer (``error`` set), ``"approval not awaited;
    safe direction"`` when a pending approval was the only obstacle, else ``"deny overridden; safe direction"``;
    ``reasons``, ``needs_approval``, ``findings`` and ``error`` are kept for the record.
    """
    if verdict.allow:
        return verdict
    if verdict.error:
        override = NO_VERDICT_SAFE
    elif verdict.awaits_approval:
        override = APPROVAL_NOT_AWAITED_SAFE
    else:
        override = DENY_OVERRIDDEN_SAFE
    return replace(verdict, allow=True, override=override)


def finding_of(item: Any, kind: str, package: str) -> dict[str, Any]:
    """Normalise one member of a ``deny``/``needs_approval`` set into a finding dict.

    Args:
        item: a string, or an object with at least ``msg``; any other value is JSON-encoded as the message.
        kind: ``deny`` or ``approval``.
        package: the package (``data.pilotage.merge``), used as ``rule`` when the item names none.

    Returns:
        ``{"kind", "msg", "rule"}`` plus ``file`` (str), ``line`` (int >= 1), ``severity`` and ``dependency`` (str)
        when the item gives them.
    """
    if isinstance(item, dict) and isinstance(item.get("msg"), str):
        out: dict[str, Any] = {"kind": kind, "msg": item["msg"], "rule": str(item.get("rule") or package)}
        if isinstance(item.get("file"), str) and item["file"]:
            out["file"] = item["file"]
        line = item.get("line")
        if isinstance(line, int) and not isinstance(line, bool) and line >= 1:
            out["line"] = line
        for key in ("severity", "dependency"):
            if isinstance(item.get(key), str):
                out[key] = item[key]
        return out
    msg = item if isinstance(item, str) else json.dumps(item, sort_keys=True)
    return {"kind": kind, "msg": msg, "rule": package}


def _approved(input: dict[str, Any]) -> set[str]:
    approval = input.get("approval")
    if not isinstance(approval, dict) or approval.get("granted") is not True:
        return set()
    return {str(msg) for msg in approval.get("approved") or [] if isinstance(msg, str)}


def make_verdict(
    action: str,
    deny: Iterable[Any],
    needs_approval: Iterable[Any],
    input: dict[str, Any],
    *,
    policies: Sequence[str],
    engine: str,
) -> Verdict:
    """Build the verdict from the members of the two sets (the same rule for every backend).

    Args:
        action: the action asked about.
        deny: members of ``data.pilotage.<action>.deny``.
        needs_approval: members of ``data.pilotage.<action>.needs_approval`` (empty when the package has none).
        input: the input document; its ``approval`` (see module doc) satisfies the messages it lists.
        policies: what was evaluated.
        engine: the engine URL.

    Returns:
        A verdict whose reasons and findings are sorted by message (deny first, then pending approvals).
    """
    package = f"data.pilotage.{action}"
    denies = sorted((finding_of(item, "deny", package) for item in deny), key=lambda f: str(f["msg"]))
    approved = _approved(input)
    pending = sorted(
        (f for f in (finding_of(item, "approval", package) for item in needs_approval) if f["msg"] not in approved),
        key=lambda f: str(f["msg"]),
    )
    reasons = [f["msg"] for f in denies] + [APPROVAL_PREFIX + f["msg"] for f in pending]
    return Verdict(
        action=action,
        allow=not reasons,
        reasons=reasons,
        policies=list(policies),
        engine=engine,
        needs_approval=[f["msg"] for f in pending],
        findings=denies + pending,
    )


def encode_input(action: str, input: Any) -> str:
    """Return ``input`` as JSON text for the engine.

    Raises:
        InputError: ``input`` is not a JSON object, or holds values JSON cannot carry (objects, NaN, infinities);
            the message names the action and the offending value's type.
    """
    try:
        text = json.dumps(input, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InputError(
            f"policy input for {action!r} is not JSON-serialisable: {exc}",
            hint="pass only str/int/float/bool/None/list/dict (no NaN) in the policy input",
        ) from exc
    if not isinstance(input, dict):
        raise InputError(f"policy input for {action!r} is a {type(input).__name__}, not an object")
    return text


class PolicyEngine(ABC):
    """Contract of a policy engine. Constructors have no side effects; policies load on first use.

    Attributes:
        url: the engine URL (``rego:``, ``http://127.0.0.1:8181``).
        timeout_s: seconds one evaluation may take; a slower answer is a deny (fail closed).
    """

    url: str = ""
    timeout_s: float = DEFAULT_TIMEOUT_S

    @abstractmethod
    def evaluate(self, action: str, input: dict[str, Any]) -> Verdict:
        """Evaluate the policies for ``action`` on ``input``; never raises for a policy failure (fail closed).

        Raises:
            InputError: ``input`` is not JSON-serialisable.
        """

    @abstractmethod
    def check(self) -> None:
        """Load and compile every policy now (or reach the server).

        Raises:
            InputError: a policy file does not parse; the message names the file (and line when known).
            BackendError: the engine cannot be reached (server backends).
        """

    def close(self) -> None:
        """Release resources. Idempotent."""

    def __enter__(self) -> PolicyEngine:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
