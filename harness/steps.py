"""Every check a case makes, as an Allure step: what was required, what was seen.

Rules of this file:
- A check is one judgement the case makes with a requirement: a segment it
  expects (Peer.expect), a silence (Peer.expect_none), a condition or a timer
  (verdict.require, require_interval, require_expiry), the stack's documented
  answer (BoundProfile.conclude). A read of the SUT's TCP state
  (Stack.state_of, Stack.wait_for_state) is evidence: it shows in the next
  judgement's step, or as a step of its own when no judgement follows.
- The core marks those functions with `@steps.check(DESCRIBER)`, one line
  each; how each reads in the report (requirement, words, expected, seen) is
  written here, once, in the describers below.
- A check is recorded when it ends, with its outcome: passed, or failed with
  the ConformanceFailure that fails the case. A check made inside another
  (wait_for_state polls state_of) is part of the outer one.
- Checks are numbered per test (#1, #2...): the ladder and the sequence
  diagram mark the segment a check judged with the same number.
- Repetition is summarised, so a case of 200 handshakes stays readable: the
  first REPEAT checks of one kind (same function, requirement and words) are
  steps; later ones that pass are counted, and the count is the last step. A
  failing check is always a step.
- Without an Allure listener (no --alluredir) nothing goes to Allure; the
  numbering, the ladder marks and the list of checks (for the test page's
  verdict box) work the same.
"""
from __future__ import annotations

import functools
import inspect
import uuid
from dataclasses import dataclass, field

REPEAT = 3          # checks of one kind shown one by one; the rest are counted
TITLE = 150         # characters of a step's title; a longer check is whole in its parameters


@dataclass
class Check:
    """One judgement: the requirement, what it checks, expected and seen."""

    requirement: str | None
    what: str
    expected: str = ""
    seen: str = ""
    segment: object = None        # the Segment it judged, if any
    trace: object = None          # the Trace that holds it
    kind: str = ""                # the function that made it
    passed: bool = True
    failure: str = ""             # why a failed check failed, when not expected vs seen
    number: int = 0
    reads: list = field(default_factory=list)     # state reads shown with it

    def _full_title(self) -> str:
        req = f"{self.requirement} · " if self.requirement else ""
        return f"#{self.number} {req}{self.what}"

    def title(self) -> str:
        title = self._full_title()
        return title if len(title) <= TITLE else title[:TITLE - 1] + "…"

    def parameters(self) -> dict:
        out = {"check": self.what} if len(self._full_title()) > TITLE else {}
        if self.expected:
            out["expected"] = self.expected
        if self.seen:
            out["seen"] = self.seen
        for n, read in enumerate(self.reads, 1):
            out["state read" if len(self.reads) == 1 else f"state read {n}"] = read
        return out


class _Recorder:
    """The checks of the test that runs now (one per process: xdist runs one
    test at a time in each worker)."""

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self.checks: list[Check] = []      # every check, in order
        self.number = 0
        self.depth = 0
        self.kinds: dict = {}              # (kind, requirement, what) -> times seen
        self.counted: dict = {}            # key -> (first number, count) of checks not shown
        self.reads: list[str] = []         # state reads waiting for a judgement


_run = _Recorder()


def _allure_hooks():
    try:
        from allure_commons import plugin_manager
    except ImportError:           # the report's own tests run without allure-pytest too
        return None
    hook = plugin_manager.hook
    return hook if hook.start_step.get_hookimpls() else None


def _emit(title: str, params: dict, failure: str | None = None) -> None:
    """One Allure step, passed or (with `failure`, its message) failed."""
    hook = _allure_hooks()
    if hook is None:
        return
    sid = uuid.uuid4().hex
    error = AssertionError(failure) if failure is not None else None
    hook.start_step(uuid=sid, title=title, params=params)
    hook.stop_step(uuid=sid, exc_type=type(error) if error else None, exc_val=error, exc_tb=None)


def begin() -> None:
    """A test starts (the plugin calls it)."""
    _run.reset()


def checks() -> list[Check]:
    """The checks of the test so far."""
    return list(_run.checks)


def end() -> None:
    """The test's checks are over (the plugin calls it): state reads no
    judgement took up become steps, and the counted repetitions one step."""
    _flush_reads()
    if _run.counted:
        total = sum(n for _, n in _run.counted.values())
        params = {f"{n} × " + (f"{req} · " if req else "") + what: f"all passed (first of them #{first})"
                  for (kind, req, what), (first, n) in _run.counted.items()}
        _emit(f"… and {total} more checks like the ones above, all passed", params)


def _flush_reads() -> None:
    for read in _run.reads:
        _emit(f"state read: {read}", {})
    _run.reads = []


def _record(c: Check, error: BaseException | None) -> None:
    _run.number += 1
    c.number = _run.number
    c.passed = error is None
    _run.checks.append(c)
    if c.segment is not None and c.trace is not None:
        c.trace.checked(c.segment, f"#{c.number}" + ("" if c.passed else " ✗"))
    key = (c.kind, c.requirement, c.what)
    seen = _run.kinds[key] = _run.kinds.get(key, 0) + 1
    if c.kind in JUDGEMENTS:
        c.reads, _run.reads = _run.reads, []
    else:
        _flush_reads()
    if seen > REPEAT and error is None:
        first, n = _run.counted.get(key, (c.number, 0))
        _run.counted[key] = (first, n + 1)
        return
    _emit(c.title(), c.parameters(), None if c.passed else (c.failure or f"expected: {c.expected}\nseen:     {c.seen}"))


def check(describe):
    """Decorator: the function makes a check, described by
    `describe(args, result, error) -> Check | str | None` (args: the call's
    arguments by name; a str is a state read; None records nothing)."""
    def wrap(fn):
        signature = inspect.signature(fn)

        @functools.wraps(fn)
        def run(*args, **kwargs):
            __tracebackhide__ = True
            if _run.depth:
                return fn(*args, **kwargs)
            _run.depth += 1
            try:
                result = fn(*args, **kwargs)
            except (KeyboardInterrupt, SystemExit):
                _run.depth -= 1
                raise
            except BaseException as e:        # a failure, or pytest's xfail of a documented deviation
                _run.depth -= 1
                _note(describe, signature, args, kwargs, None, e)
                raise
            _run.depth -= 1
            _note(describe, signature, args, kwargs, result, None)
            return result
        return run
    return wrap


def _note(describe, signature, args, kwargs, result, error) -> None:
    bound = signature.bind(*args, **kwargs)
    bound.apply_defaults()
    c = describe(bound.arguments, result, error)
    if c is None:
        return
    if isinstance(c, str):
        if c not in _run.reads:            # require(state_of(..) == X, .., state_of(..)) reads twice
            _run.reads.append(c)
        return
    c.kind = describe.__name__
    _record(c, error)


def _from_failure(error, kind_default: Check) -> Check:
    """A failed check reads as its ConformanceFailure says."""
    if error is not None and hasattr(error, "requirement"):
        kind_default.requirement = error.requirement
        kind_default.what = error.what
        kind_default.expected = error.expected
        kind_default.seen = error.seen
    elif error is not None:
        kind_default.seen = str(error)
    return kind_default


# --- how each check reads ----------------------------------------------------------------
# One describer per function the core marks; its name is the check's kind.

def expectation(a, seg, error) -> Check:
    """Peer.expect: the SUT's next segment, as required."""
    from .segment import flags_of
    peer = a["self"]
    c = Check(a["requirement"] or peer.requirement, a["what"] or "the SUT's next segment on this connection",
              trace=peer.trace)
    if error is not None:
        c = _from_failure(error, c)
        last = peer.trace.entries[peer.cursor - 1] if peer.cursor else None
        if c.seen != "nothing" and last is not None and peer.mine(last):
            c.segment = last                   # the segment that was not as required
        return c
    c.expected = peer.describe_expected(flags_of(a["flags"]), a["seq"], a["ack"], a["data"])
    c.seen, c.segment = peer.describe(seg), seg
    return c


def silence(a, _, error) -> Check:
    """Peer.expect_none: nothing from the SUT for a while."""
    peer = a["self"]
    span = f"{a['within']:g} s" if a["within"] is not None else "until the deadline"
    c = Check(a["requirement"] or peer.requirement, a["what"] or f"the SUT stays silent for {span}",
              f"nothing for {span}", "nothing", trace=peer.trace)
    return _from_failure(error, c)


def condition(a, _, error) -> Check:
    """verdict.require: a condition on what the case saw."""
    return _from_failure(error, Check(a["requirement"], a["what"], str(a["expected"]), str(a["seen"])))


def interval(a, _, error) -> Check:
    """verdict.require_interval: a time between two segments."""
    seen, expected, tol = a["seen"], a["expected"], a["tolerance"]
    return _from_failure(error, Check(a["requirement"], a["what"], f"{expected:.3f} s ± {tol.allowed(expected):.3f} s",
                                      f"{seen:.3f} s ({seen - expected:+.3f} s)"))


def expiry(a, _, error) -> Check:
    """verdict.require_expiry: a timer watched by probing."""
    expected, tol, gone = a["expected"], a["tolerance"], a["gone"]
    seen = f"still running {a['alive']:.3f} s after it started" + (
        f", expired by {gone:.3f} s" if gone is not None else "")
    return _from_failure(error, Check(a["requirement"], a["what"], f"{expected:.3f} s ± {tol.allowed(expected):.3f} s",
                                      seen))


def documented_answer(a, _, error) -> Check | None:
    """BoundProfile.conclude: the stack gave its documented answer; where that
    answer departs from the rule, the case is a documented deviation."""
    b, bound = a["behaviour"], a["self"]
    where = bound.profile.source
    if b["follows"]:
        return Check(b["rule"], f"the stack's documented answer ({b['answer']}) follows the rule",
                     f"{b['answer']} ({where})", b["answer"])
    return Check(b["rule"], f"the stack's documented answer ({b['answer']}) departs from the rule: "
                 "a documented deviation", "the rule", f"{b['answer']}, as {where} documents",
                 failure=f"documented deviation from {b['rule']}: {b['note']}")


JUDGEMENTS = {"condition", "interval", "expiry"}


def state_read(a, state, _) -> str:
    """Stack.state_of: the state of one of the SUT's sockets."""
    return f"the SUT's socket {a['port']} ⇄ {a['remote_port']}: {state or 'CLOSED (no socket)'}"


def state_wait(a, at, _) -> str:
    """Stack.wait_for_state: a state awaited until a deadline."""
    want = a["want"] or "CLOSED (no socket)"
    if at is None:
        return f"the SUT's socket {a['port']} ⇄ {a['remote_port']}: not {want} within {a['within']:g} s"
    return f"the SUT's socket {a['port']} ⇄ {a['remote_port']}: {want} (awaited, at most {a['within']:g} s)"
