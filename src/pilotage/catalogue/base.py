"""The base of every event-data model of the catalogue (:mod:`pilotage.catalogue`)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

__all__ = ["EventData", "Obj"]

#: A nested JSON object whose shape another module owns (verdicts, evidence, allocations, load-test figures).
Obj = dict[str, Any]


class EventData(BaseModel):
    """Base of every event-data model: unknown keys are refused (a new key needs a new field here).

    Strict: no coercion (``"0"`` is not an integer, a tuple not a list), so what validates is what the JSON holds;
    an integer is accepted where a number is expected.
    """

    model_config = ConfigDict(extra="forbid", strict=True)
