"""Pilotage: agents that run the software lifecycle of a fleet of services.

Public names are re-exported here; see ``docs/architecture.md`` for the layers.
"""

from __future__ import annotations

from pilotage.agent import Agent, AgentContext, Decision, Reasoning, RunSpec
from pilotage.errors import (
    BackendCorrupt,
    BackendError,
    BackendUnavailable,
    ConfigError,
    InputError,
    PilotageError,
    PolicyDenied,
)
from pilotage.events import CloudEvent, EventType, new_event
from pilotage.settings import Settings, load_settings

__version__ = "0.1.0"

__all__ = [
    "Agent",
    "AgentContext",
    "BackendCorrupt",
    "BackendError",
    "BackendUnavailable",
    "CloudEvent",
    "ConfigError",
    "Decision",
    "EventType",
    "InputError",
    "PilotageError",
    "PolicyDenied",
    "Reasoning",
    "RunSpec",
    "Settings",
    "__version__",
    "load_settings",
    "new_event",
]
