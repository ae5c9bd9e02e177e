"""Roll call (点名签到): the chair calls sites one by one; each called site acknowledges.

A pure state machine driven by explicit clock values. The called site's acknowledgement moves
the call on to the next site; the chair's ``next`` (or the per-call timeout) marks the called
site missed and moves on; ``stop`` ends the round, leaving uncalled sites pending.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from .model import SiteId

__all__ = ["RollCall", "RollcallResult"]


@dataclass(frozen=True, slots=True)
class RollcallResult:
    """One site's outcome in a round, for the attendance record."""

    round_no: int
    site: SiteId
    result: Literal["acked", "missed"]
    at: float


@dataclass(slots=True)
class RollCall:
    round_no: int
    pending: list[SiteId]
    timeout_s: float
    active: bool = True
    current: SiteId | None = None
    called_at: float | None = None
    acked: list[SiteId] = field(default_factory=list)
    missed: list[SiteId] = field(default_factory=list)

    @classmethod
    def start(cls, round_no: int, sites: list[SiteId], now: float, timeout_s: float) -> RollCall:
        call = cls(round_no=round_no, pending=list(sites), timeout_s=timeout_s)
        call._call_next(now)
        return call

    def _call_next(self, now: float) -> None:
        if self.pending:
            self.current = self.pending.pop(0)
            self.called_at = now
        else:
            self.current, self.called_at, self.active = None, None, False

    def ack(self, site: SiteId, now: float) -> RollcallResult:
        """The called site answers 到; the call moves on. The caller checks ``site == current``."""
        assert site == self.current
        self.acked.append(site)
        self._call_next(now)
        return RollcallResult(self.round_no, site, "acked", now)

    def skip(self, now: float) -> RollcallResult | None:
        """Chair's ``next``, or the timeout: the called site is missed."""
        result = None
        if self.current is not None:
            self.missed.append(self.current)
            result = RollcallResult(self.round_no, self.current, "missed", now)
        self._call_next(now)
        return result

    def stop(self, now: float) -> RollcallResult | None:
        """End the round; the site being called when it stops counts as missed."""
        result = None
        if self.current is not None:
            self.missed.append(self.current)
            result = RollcallResult(self.round_no, self.current, "missed", now)
        self.current, self.called_at, self.active = None, None, False
        return result

    def overdue(self, now: float) -> bool:
        return self.called_at is not None and now - self.called_at >= self.timeout_s

    def deadline(self) -> float | None:
        return None if self.called_at is None else self.called_at + self.timeout_s

    def to_wire(self) -> dict[str, Any]:
        return {
            "active": self.active,
            "round": self.round_no,
            "current": self.current,
            "acked": list(self.acked),
            "missed": list(self.missed),
            "pending": list(self.pending),
            "timeout_s": self.timeout_s,
        }
