"""Leases of a consumer group: which member holds which event, until when, and which events are acknowledged.

Shared by the embedded backends (``memory://`` keeps leases in dicts, ``sqlite:///`` in its ``leases``
table). A group's state is its *committed* offset (every event up to it is done) plus one :class:`Lease` per
event after it that was delivered at least once. :class:`ClaimPlanner` walks the group's matching events
after the committed offset in log order and decides which ones a fetching member may take:

- an acknowledged event is skipped;
- an event leased to a member until a time in the future is *in flight*: skipped, and its subject is
  blocked for the rest of the walk (per-subject order across members: nothing of that subject is handed out
  until it is acknowledged or its lease expires);
- any other event (never delivered, lease expired or released) is claimed, unless its subject is blocked.

The first matching event that is not acknowledged bounds the new committed offset (``first_open - 1``).
Events without a subject have no order constraint between them.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ClaimPlanner", "Lease"]


@dataclass
class Lease:
    """State of one delivered event in one group.

    Attributes:
        consumer: member holding (or last holding) it.
        expires: Unix time (s) when the lease ends; 0 means released.
        deliveries: times it was handed out.
        acked: True once acknowledged.
        subject: the event's CloudEvents subject (for per-subject order), or None.
        timeout_s: the ack timeout the lease was taken with (s); a renewal extends it by as much.
    """

    consumer: str
    expires: float
    deliveries: int
    acked: bool = False
    subject: str | None = None
    timeout_s: float = 30.0


class ClaimPlanner:
    """Decide, event by event in log order, what a fetching member may take.

    Args:
        leases: the group's leases by offset (not modified).
        now: current Unix time (s).
        max_events: most events to claim.
    """

    def __init__(self, leases: dict[int, Lease], now: float, max_events: int) -> None:
        self.leases = leases
        self.now = now
        self.max_events = max_events
        self.claimed: list[int] = []
        self.first_open: int | None = None
        self._blocked: set[str] = set()

    @property
    def full(self) -> bool:
        """True once ``max_events`` events are claimed."""
        return len(self.claimed) >= self.max_events

    def offer(self, offset: int, subject: str | None) -> bool:
        """Consider the matching event at ``offset``; return True when it is claimed."""
        lease = self.leases.get(offset)
        if lease is not None and lease.acked:
            return False
        if self.first_open is None:
            self.first_open = offset
        if lease is not None and lease.expires > self.now:
            if subject is not None:
                self._blocked.add(subject)
            return False
        if (subject is not None and subject in self._blocked) or self.full:
            if subject is not None:
                self._blocked.add(subject)
            return False
        self.claimed.append(offset)
        return True

    def new_committed(self, committed: int, scanned_to: int) -> int:
        """Return the group's committed offset after the walk.

        Args:
            committed: the committed offset before the walk.
            scanned_to: the highest offset the walk covered completely (every matching event up to it was
                offered).
        """
        if self.first_open is not None:
            return max(committed, self.first_open - 1)
        return max(committed, scanned_to)
