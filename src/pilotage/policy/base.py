"""The policy-engine contract: every world-changing action asks for a :class:`Verdict` first.

An *action* names a policy package below ``data.pilotage``: ``merge`` (a generated change entering the
repository), ``deploy``, ``promote``, ``rollback``, ``scale``. The engine evaluates the package's
``deny`` set (Rego v1: ``deny contains msg if { ... }``) against an input document; the action is allowed
when the set is empty. Fail closed (DESIGN.md section 6): an engine error, an undefined package or a
timeout is a deny whose reason says so.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from types import TracebackType
from typing import Any

__all__ = ["PolicyEngine", "Verdict"]


@dataclass(frozen=True)
class Verdict:
    """The answer of the policy engine for one action.

    Attributes:
        action: the action asked about (``deploy`` ...).
        allow: True only when no policy denied and the engine answered.
        reasons: one human-readable line per deny (empty when allowed).
        policies: the policy packages that were evaluated, e.g. ``["data.pilotage.deploy"]``.
        engine: the engine URL that answered (``rego:`` ...).
    """

    action: str
    allow: bool
    reasons: list[str] = field(default_factory=list)
    policies: list[str] = field(default_factory=list)
    engine: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Return the verdict as a JSON-serialisable dict."""
        return asdict(self)


class PolicyEngine(ABC):
    """Contract of a policy engine. Constructors have no side effects; policies load on first use."""

    url: str = ""

    @abstractmethod
    def evaluate(self, action: str, input: dict[str, Any]) -> Verdict:
        """Evaluate the policies for ``action`` on ``input``; never raises for a policy failure (fail closed).

        Raises:
            InputError: ``input`` is not JSON-serialisable.
        """

    @abstractmethod
    def check(self) -> None:
        """Load and compile every policy now.

        Raises:
            InputError: a policy file does not parse; the message names the file (and line when known).
        """

    def close(self) -> None:
        """Release resources. Idempotent."""

    def __enter__(self) -> PolicyEngine:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
