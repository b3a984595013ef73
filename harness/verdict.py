"""How a case fails: the requirement, what was expected, what was seen.

Rules of this file:
- A conformance failure always names the requirement it checks (e.g.
  `RFC9293/MUST-10`, or `linux-profile` for documented stack behaviour) and
  shows expected against seen, in the notation of the trace.
- Timing failures are a subclass, so reports can tell "the stack broke the
  rule" from "the stack was late beyond the tolerance".
- Pure: no IO. Each check is recorded (harness.steps) as a step of the
  report, passed or failed.
"""
from __future__ import annotations

from dataclasses import dataclass

from . import steps


class ConformanceFailure(AssertionError):
    """The stack under test did not do what the requirement says."""

    kind = "RFC violation"

    def __init__(self, requirement: str, what: str, expected: str, seen: str):
        self.requirement = requirement
        self.what = what
        self.expected = expected
        self.seen = seen
        super().__init__(self.message())

    def message(self) -> str:
        return (f"{self.requirement}: {self.what}\n"
                f"  expected: {self.expected}\n"
                f"  seen:     {self.seen}")


class TimingFailure(ConformanceFailure):
    """The expected segment came, but outside the timing tolerance."""

    kind = "timing tolerance exceeded"

    def message(self) -> str:
        return "timing: " + super().message()


@steps.check(steps.condition)
def require(condition: bool, requirement: str, what: str, expected, seen) -> None:
    """Fail the case with a ConformanceFailure unless `condition` holds."""
    __tracebackhide__ = True
    if not condition:
        raise ConformanceFailure(requirement, what, str(expected), str(seen))


@dataclass(frozen=True)
class Tolerance:
    """How far a measured interval may be from the expected one.

    Kernel timers fire late under load (and one jiffy early or late from
    rounding), so the allowance grows with the interval, as packetdrill's
    --tolerance_percent does: the larger of `absolute` seconds and `relative`
    times the expected interval. A stack whose timers count coarse ticks
    (lwIP: 500 ms) fires a timer up to one tick early or late, by where the
    event that armed it fell between two ticks: its profile's
    `timer_granularity` is added as `granularity`. See README, "Timing".
    """

    absolute: float = 0.025
    relative: float = 0.125
    granularity: float = 0.0

    def allowed(self, expected: float) -> float:
        return max(self.absolute, self.relative * expected) + self.granularity

    def within(self, expected: float, seen: float) -> bool:
        return abs(seen - expected) <= self.allowed(expected)

    def latest(self, expected: float) -> float:
        return expected + self.allowed(expected)

    def doubled(self, times: int) -> "Tolerance":
        """For a timer doubled `times` times by a backoff: its length was
        rounded to whole ticks before it was doubled, so the rounding doubles
        with it (Linux 6.1 under UML, 10 ms jiffies: 0.201 s is 21 jiffies,
        0.84 s after two doublings)."""
        return Tolerance(self.absolute, self.relative, self.granularity * 2 ** times)


@steps.check(steps.interval)
def require_interval(seen: float, expected: float, tolerance: Tolerance, requirement: str, what: str) -> None:
    """Fail with a TimingFailure unless `seen` is `expected` within tolerance."""
    __tracebackhide__ = True
    if not tolerance.within(expected, seen):
        raise TimingFailure(requirement, what,
                            f"{expected:.3f} s +- {tolerance.allowed(expected):.3f} s",
                            f"{seen:.3f} s ({seen - expected:+.3f} s)")


@steps.check(steps.expiry)
def require_expiry(alive: float, gone: float | None, expected: float, tolerance: Tolerance, requirement: str,
                   what: str) -> None:
    """A timer watched by probing (Peer.probe_while): it was still running
    `alive` seconds after its start (the SUT took the last probe answered
    as before no earlier) and had expired `gone` seconds after it (the answer
    that shows it; None: not seen yet). Fails with a TimingFailure only when
    the timer is proven early (gone before the tolerance allows) or late
    (alive after it): the probe period and the SUT's answering time never
    count against it."""
    __tracebackhide__ = True
    allowed = tolerance.allowed(expected)
    late, early = alive > expected + allowed, gone is not None and gone < expected - allowed
    if late or early:
        seen = f"still running at {alive:.3f} s" + (f", expired by {gone:.3f} s" if gone is not None else "")
        raise TimingFailure(requirement, what, f"{expected:.3f} s +- {allowed:.3f} s",
                            f"{seen} ({(alive if late else gone) - expected:+.3f} s)")
