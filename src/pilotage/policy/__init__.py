"""Policy layer of Pilotage (see docs/architecture.md): engines, bundled Rego policies, facts and approvals.

Backends by URL (``registry.BACKENDS["policy"]``): ``rego:`` in-process Rego (:mod:`pilotage.policy.rego`) and
``http://`` / ``https://`` an OPA server (:mod:`pilotage.policy.opa`). :func:`open_engine` builds either from
settings.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pilotage.policy.base import PolicyEngine
    from pilotage.settings import Settings

__all__ = ["open_engine"]


def open_engine(settings: Settings, *, timeout_s: float | None = None) -> PolicyEngine:
    """Return the policy engine for ``settings.policy_url`` (no I/O yet).

    ``rego:`` gets ``settings.policy_dirs``; an ``http(s)://`` OPA server gets the URL. Both get the data
    ``{"license_allowlist": settings.license_allowlist}``.

    Raises:
        ConfigError: unknown URL scheme (the message lists the known ones) or a malformed OPA URL.
    """
    from pilotage.registry import backend_class, scheme_of

    cls = backend_class("policy", settings.policy_url)
    data: dict[str, Any] = {"license_allowlist": list(settings.license_allowlist)}
    extra: dict[str, Any] = {} if timeout_s is None else {"timeout_s": timeout_s}
    if scheme_of(settings.policy_url) in {"http", "https"}:
        engine: PolicyEngine = cls(settings.policy_url, data=data, **extra)
    else:
        engine = cls(policy_dirs=[Path(p) for p in settings.policy_dirs], data=data, **extra)
    return engine
