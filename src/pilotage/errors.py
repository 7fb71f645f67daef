"""The Pilotage error tree (DESIGN.md section 5).

Every error Pilotage raises on purpose is a :class:`PilotageError`. Driver exceptions are translated at the
backend boundary with ``raise ... from exc``. Errors carry their context as attributes so callers (and the
CLI's one-line error) never have to parse messages.

```
PilotageError
├── ConfigError          bad URL, missing extra, bad settings: the user fixes config
├── InputError           malformed spec, request, policy, repository: names the file and the place
├── PolicyDenied         an action was refused; carries the verdict and reasons
└── BackendError         the bus, graph, policy engine or runtime failed
    ├── BackendUnavailable   (retryable) connection refused, timeout
    └── BackendCorrupt       data on disk or wire is not what it must be
```
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "BackendCorrupt",
    "BackendError",
    "BackendUnavailable",
    "ConfigError",
    "InputError",
    "PilotageError",
    "PolicyDenied",
]


class PilotageError(Exception):
    """Base of every error Pilotage raises on purpose.

    Args:
        message: one line saying what went wrong and, where possible, how to fix it.
        hint: optional fix, appended to the one-line message as ``(fix: ...)``.
        **context: attributes kept on the error for callers (``path``, ``url``, ``offset`` ...).
    """

    def __init__(self, message: str, *, hint: str | None = None, **context: Any) -> None:
        self.message = message
        self.hint = hint
        self.context = context
        for key, value in context.items():
            setattr(self, key, value)
        super().__init__(self.one_line())

    def one_line(self) -> str:
        """Return the error as a single line: ``message (fix: hint)``, newlines folded."""
        text = self.message if not self.hint else f"{self.message} (fix: {self.hint})"
        return " ".join(text.split())


class ConfigError(PilotageError):
    """Bad URL, missing extra, bad settings: the user fixes configuration."""


class InputError(PilotageError):
    """Malformed user input (spec, request, policy, repository); ``path`` names the file when there is one."""


class PolicyDenied(PilotageError):
    """A world-changing action was refused by the policy engine.

    Attributes:
        verdict: the :class:`pilotage.policy.base.Verdict` that refused the action.
    """

    verdict: Any

    def __init__(self, message: str, *, verdict: Any, hint: str | None = None, **context: Any) -> None:
        super().__init__(message, hint=hint, verdict=verdict, **context)


class BackendError(PilotageError):
    """The bus, graph, policy engine or runtime failed."""


class BackendUnavailable(BackendError):
    """A backend could not be reached (connection refused, timeout); retrying may succeed."""


class BackendCorrupt(BackendError):
    """Data on disk or on the wire is not what it must be; ``offset`` says where when known."""
