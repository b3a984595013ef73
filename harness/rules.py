"""SEGMENT ARRIVES (RFC 9293 §3.10.7, with RFC 5961) as data, and the oracle that reads it.

Rules of this file:
- Everything that decides what a segment arriving in a state must draw lives
  here, once, as tables a reader can hold against the RFC: ACCEPTABILITY
  (Table 6 of RFC 9293), RULES (the ordered checks of §3.10.7.1 to .4) and
  RESETS (where a reset leaves each state). The generated matrix cases and
  their verdict messages both come from these tables.
- Conditions, assignments and answers are written in the RFC's own notation
  (`RCV.NXT =< SEG.SEQ < RCV.NXT+RCV.WND`, `<SEQ=SEG.ACK><CTL=RST>`) and
  evaluated here, sequence numbers compared modulo 2**32 (RFC 9293 §3.4).
- This file does not know which stack it judges, nor how a segment reaches
  it: given a state, the connection's variables and a segment, `arrive()`
  returns the answer, the next state and the rows that decided. Pure: no IO,
  no clock.
- A stack profile may replace a row where the stack documents another
  answer ([[rule]] in cases/profiles/<stack>.toml): `Override` rows are tried
  just before the row they replace, and `judge()` says whether the stack's
  documented outcome departs from the RFC's, and which rule it departs from.

Theory of operation. The state decides which checks run (`STEPS`): CLOSED,
LISTEN and SYN-SENT have their own; the synchronized states run the RFC's
eight checks in order (sequence number, RST, security, SYN, ACK, URG, text,
FIN; security is not modelled, and "held" is the RFC's "segments with
higher beginning sequence numbers SHOULD be held", placed after the RST and
SYN checks that apply whatever the sequence number). Within a check, the
first row whose state and condition match fires: its assignments change the
variables, its answer is recorded, its next state taken, and it either
returns or lets processing continue with the next check. ACKs the checks
send are one ACK in the end, <SEQ=SND.NXT><ACK=RCV.NXT>, with the variables
as processing left them (RFC 9293: "piggybacked ... if possible").
"""
from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field, replace

MOD = 1 << 32

STATES = ("CLOSED", "LISTEN", "SYN-SENT", "SYN-RECEIVED", "ESTABLISHED", "FIN-WAIT-1", "FIN-WAIT-2",
          "CLOSE-WAIT", "CLOSING", "LAST-ACK", "TIME-WAIT")
SYNCHRONIZED = STATES[3:]
RETURN, CONTINUE = "return", "continue"
SAME, RESET = "same", "RESET"
NOTHING = "nothing"
ACK_NOW = "<SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK>"

# The checks each state runs, in order (RFC 9293 §3.10.7.1 to §3.10.7.4).
STEPS = {
    "CLOSED": ("closed",),
    "LISTEN": ("listen.rst", "listen.ack", "listen.syn", "listen.other"),
    # a SYN acknowledging ours continues "at the sixth step" of §3.10.7.4 (URG, text, FIN)
    "SYN-SENT": ("syn-sent.ack", "syn-sent.rst", "syn-sent.syn", "urg", "text", "fin", "syn-sent.other"),
    **{s: ("seq", "rst", "syn", "held", "ack", "urg", "text", "fin") for s in SYNCHRONIZED},
}

# Table 6 of RFC 9293 §3.10.7.4: is a segment acceptable?
# (row, segment length and receive window, test); a profile may replace a test.
ACCEPTABILITY = (
    ("table6.empty-zero-window", "SEG.LEN = 0 and RCV.WND = 0", "SEG.SEQ = RCV.NXT"),
    ("table6.empty", "SEG.LEN = 0 and RCV.WND > 0", "RCV.NXT =< SEG.SEQ < RCV.NXT+RCV.WND"),
    ("table6.text-zero-window", "SEG.LEN > 0 and RCV.WND = 0", "False"),
    ("table6.text", "SEG.LEN > 0 and RCV.WND > 0",
     "RCV.NXT =< SEG.SEQ < RCV.NXT+RCV.WND or RCV.NXT =< SEG.SEQ+SEG.LEN-1 < RCV.NXT+RCV.WND"),
)
TABLE6 = {row: (case, test) for row, case, test in ACCEPTABILITY}

# Where a reset leaves each state (RFC 9293 §3.10.7.4, second: check the RST bit).
RESETS = (
    ("SYN-RECEIVED", "PASSIVE", "LISTEN"),   # "return this connection to LISTEN state"
    ("SYN-RECEIVED", "not PASSIVE", "CLOSED"),  # active OPEN: "the connection was refused"
    *((s, "True", "CLOSED") for s in SYNCHRONIZED[1:]),
)


@dataclass(frozen=True)
class Rule:
    """One row: in `states`, at check `step`, when `when` holds, do `do`,
    send `answer`, enter `next` and `then` return or continue."""

    id: str
    states: tuple
    step: str
    when: str
    answer: str = NOTHING
    next: str = SAME
    then: str = RETURN
    do: str = ""
    level: str = "MUST"          # MUST, SHOULD or MAY as the RFC words it; a MAY answer may be left out
    source: str = "RFC9293/3.10.7.4"
    text: str = ""               # the paragraph, paraphrased
    delayed: bool = False        # the answer may wait for the delayed-ACK timer (RFC 9293 §3.8.6.3)
    also: tuple = ()             # other requirement ids the row checks (RFC 9293's MAY-12, MAY-13)


_SYNC = SYNCHRONIZED
_OPEN = ("ESTABLISHED", "FIN-WAIT-1", "FIN-WAIT-2")                 # text is accepted (seventh check)
_AFTER_FIN = ("CLOSE-WAIT", "CLOSING", "LAST-ACK", "TIME-WAIT")      # the peer's FIN was received

RULES = (
    # --- §3.10.7.1 CLOSED -------------------------------------------------------------------
    Rule("closed.rst", ("CLOSED",), "closed", "RST", source="RFC9293/3.10.7.1",
         text="CLOSED: an incoming segment containing a RST is discarded"),
    Rule("closed.ack", ("CLOSED",), "closed", "ACK", "<SEQ=SEG.ACK><CTL=RST>", source="RFC9293/3.10.7.1",
         text="CLOSED: a segment with ACK draws <SEQ=SEG.ACK><CTL=RST>"),
    Rule("closed.no-ack", ("CLOSED",), "closed", "True", "<SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>",
         source="RFC9293/3.10.7.1", text="CLOSED: a segment without ACK draws <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>"),
    # --- §3.10.7.2 LISTEN --------------------------------------------------------------------
    Rule("listen.rst", ("LISTEN",), "listen.rst", "RST", level="SHOULD", source="RFC9293/3.10.7.2",
         text="LISTEN, first: an incoming RST should be ignored"),
    Rule("listen.ack", ("LISTEN",), "listen.ack", "ACK", "<SEQ=SEG.ACK><CTL=RST>", source="RFC9293/3.10.7.2",
         text="LISTEN, second: any acknowledgment is bad: <SEQ=SEG.ACK><CTL=RST>"),
    Rule("listen.syn", ("LISTEN",), "listen.syn", "SYN", "<SEQ=ISS><ACK=RCV.NXT><CTL=SYN,ACK>", "SYN-RECEIVED",
         do="IRS := SEG.SEQ; RCV.NXT := SEG.SEQ + 1; ISS := NEW; SND.UNA := NEW; SND.NXT := NEW + 1; PASSIVE := True",
         source="RFC9293/3.10.7.2",
         text="LISTEN, third: a SYN sets RCV.NXT to SEG.SEQ+1 and draws <SEQ=ISS><ACK=RCV.NXT><CTL=SYN,ACK> "
              "(other control or text is queued for SYN-RECEIVED)"),
    Rule("listen.other", ("LISTEN",), "listen.other", "True", source="RFC9293/3.10.7.2",
         text="LISTEN, fourth: any other segment is dropped"),
    # --- §3.10.7.3 SYN-SENT ------------------------------------------------------------------
    Rule("syn-sent.bad-ack-rst", ("SYN-SENT",), "syn-sent.ack", "ACK and RST and (SEG.ACK =< ISS or SEG.ACK > SND.NXT)",
         source="RFC9293/3.10.7.3", text="SYN-SENT, first: an unacceptable ACK on a RST: drop the segment"),
    Rule("syn-sent.bad-ack", ("SYN-SENT",), "syn-sent.ack", "ACK and (SEG.ACK =< ISS or SEG.ACK > SND.NXT)",
         "<SEQ=SEG.ACK><CTL=RST>", source="RFC9293/3.10.7.3",
         text="SYN-SENT, first: SEG.ACK =< ISS or SEG.ACK > SND.NXT draws <SEQ=SEG.ACK><CTL=RST>"),
    Rule("syn-sent.rst", ("SYN-SENT",), "syn-sent.rst", "RST and ACK", next="CLOSED", source="RFC9293/3.10.7.3",
         text='SYN-SENT, second: a RST with an acceptable ACK: "connection reset", enter CLOSED'),
    Rule("syn-sent.rst-no-ack", ("SYN-SENT",), "syn-sent.rst", "RST", source="RFC9293/3.10.7.3",
         text="SYN-SENT, second: a RST without ACK is dropped"),
    Rule("syn-sent.syn-ack", ("SYN-SENT",), "syn-sent.syn", "SYN and ACK", ACK_NOW, "ESTABLISHED", CONTINUE,
         do="IRS := SEG.SEQ; RCV.NXT := SEG.SEQ + 1; SND.UNA := SEG.ACK",
         source="RFC9293/3.10.7.3",
         text="SYN-SENT, fourth: a SYN acknowledging ours: enter ESTABLISHED and send <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK> "
              "(text and FIN continue at the sixth check)"),
    Rule("syn-sent.syn", ("SYN-SENT",), "syn-sent.syn", "SYN", "<SEQ=ISS><ACK=RCV.NXT><CTL=SYN,ACK>", "SYN-RECEIVED",
         do="IRS := SEG.SEQ; RCV.NXT := SEG.SEQ + 1; PASSIVE := False", source="RFC9293/3.10.7.3",
         text="SYN-SENT, fourth: a SYN without ACK (simultaneous open): enter SYN-RECEIVED and send "
              "<SEQ=ISS><ACK=RCV.NXT><CTL=SYN,ACK> (text and FIN are queued)"),
    Rule("syn-sent.other", ("SYN-SENT",), "syn-sent.other", "True", source="RFC9293/3.10.7.3",
         text="SYN-SENT, fifth: neither SYN nor RST: drop the segment"),
    # --- §3.10.7.4 first: check sequence number (Table 6) ------------------------------------
    Rule("seq.crossing-syn-ack", ("SYN-RECEIVED",), "seq", "SYN and ACK and SEG.SEQ + 1 = RCV.NXT", then=CONTINUE,
         do="TRIM; SYN := False", source="RFC9293/3.10.7.4",
         text="first, check sequence number: in SYN-RECEIVED, the peer's SYN-ACK crossing ours carries its SYN again "
              "(SEG.SEQ = RCV.NXT-1): the old SYN is trimmed and the ACK processed (RFC 9293 Figure 7, line 7)"),
    Rule("seq.unacceptable-rst", _SYNC, "seq", "not ACCEPTABLE and RST", source="RFC9293/3.10.7.4",
         text="first, check sequence number: an unacceptable RST is dropped"),
    Rule("seq.unacceptable", _SYNC, "seq", "not ACCEPTABLE", ACK_NOW, level="SHOULD", source="RFC9293/3.10.7.4",
         text="first, check sequence number: an unacceptable segment draws <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK> "
              "and is dropped"),
    Rule("seq.trim", _SYNC, "seq", "SEG.SEQ < RCV.NXT", then=CONTINUE, do="TRIM", source="RFC9293/3.10.7.4",
         text="first, check sequence number: a segment that straddles RCV.NXT is processed from RCV.NXT on, its old "
              "part (the SYN's octet first, then text) trimmed off; a SYN bit stays for the fourth check"),
    # --- second: check the RST bit (RFC 5961 §3) ---------------------------------------------
    Rule("rst.exact", _SYNC, "rst", "RST and SEG.SEQ = RCV.NXT", next=RESET, source="RFC5961/3.2",
         text="second, check the RST bit: SEG.SEQ exactly RCV.NXT resets the connection "
              "(SYN-RECEIVED from a passive OPEN returns to LISTEN)"),
    Rule("rst.in-window", _SYNC, "rst", "RST", ACK_NOW, source="RFC5961/3.2",
         text="second, check the RST bit: in the window but not RCV.NXT draws a challenge ACK "
              "<SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK> and is dropped"),
    # --- fourth: check the SYN bit (RFC 5961 §4) ---------------------------------------------
    Rule("syn.passive", ("SYN-RECEIVED",), "syn", "SYN and PASSIVE", next="LISTEN", source="RFC9293/3.10.7.4",
         text="fourth, check the SYN bit: SYN-RECEIVED from a passive OPEN returns to LISTEN"),
    Rule("syn.challenge", _SYNC, "syn", "SYN", ACK_NOW, source="RFC5961/4.2",
         text="fourth, check the SYN bit: a SYN in a synchronized state, whatever its sequence number, draws a "
              "challenge ACK <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK> and is dropped"),
    # --- segments beyond RCV.NXT (first check, last paragraph; MAY-13) ------------------------
    Rule("held.out-of-order", _SYNC, "held", "SEG.SEQ > RCV.NXT", ACK_NOW, level="MAY", source="RFC9293/SHLD-31",
         also=("RFC9293/MAY-13",),
         text="a segment beginning beyond RCV.NXT is held for later processing (SHLD-31); an ACK of RCV.NXT "
              "MAY be sent at once (MAY-13)"),
    # --- fifth: check the ACK field ------------------------------------------------------------
    Rule("ack.off", _SYNC, "ack", "not ACK", source="RFC9293/3.10.7.4",
         text="fifth, check the ACK field: if the ACK bit is off, drop the segment"),
    Rule("ack.syn-received", ("SYN-RECEIVED",), "ack", "SND.UNA < SEG.ACK =< SND.NXT", next="ESTABLISHED",
         then=CONTINUE, do="SND.UNA := SEG.ACK", source="RFC9293/3.10.7.4",
         text="fifth, SYN-RECEIVED: SND.UNA < SEG.ACK =< SND.NXT enters ESTABLISHED and processing continues"),
    Rule("ack.syn-received-bad", ("SYN-RECEIVED",), "ack", "True", "<SEQ=SEG.ACK><CTL=RST>",
         source="RFC9293/3.10.7.4", text="fifth, SYN-RECEIVED: an unacceptable ACK draws <SEQ=SEG.ACK><CTL=RST>"),
    Rule("ack.unsent", _SYNC[1:], "ack", "SEG.ACK > SND.NXT", ACK_NOW, source="RFC9293/3.10.7.4",
         text="fifth, check the ACK field: an ACK of something not yet sent (SEG.ACK > SND.NXT) draws "
              "<SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK> and is dropped"),
    Rule("ack.too-old", _SYNC[1:], "ack", "SEG.ACK < SND.UNA - MAX.SND.WND", ACK_NOW, source="RFC5961/5.2",
         also=("RFC9293/MAY-12",),
         text="fifth, check the ACK field (RFC 5961 §5): an ACK below SND.UNA-MAX.SND.WND is discarded and "
              "draws <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK>"),
    Rule("ack.last-ack", ("LAST-ACK",), "ack", "SND.UNA < SEG.ACK and SEG.ACK = SND.NXT", next="CLOSED",
         do="SND.UNA := SEG.ACK", text="fifth, LAST-ACK: the acknowledgment of our FIN deletes the TCB: CLOSED"),
    Rule("ack.closing", ("CLOSING",), "ack", "SND.UNA < SEG.ACK and SEG.ACK = SND.NXT", next="TIME-WAIT",
         then=CONTINUE, do="SND.UNA := SEG.ACK",
         text="fifth, CLOSING: the acknowledgment of our FIN enters TIME-WAIT"),
    Rule("ack.closing-other", ("CLOSING",), "ack", "True",
         text="fifth, CLOSING: an ACK that does not acknowledge our FIN is ignored"),
    Rule("ack.fin-wait-1", ("FIN-WAIT-1",), "ack", "SND.UNA < SEG.ACK and SEG.ACK = SND.NXT", next="FIN-WAIT-2",
         then=CONTINUE, do="SND.UNA := SEG.ACK",
         text="fifth, FIN-WAIT-1: the acknowledgment of our FIN enters FIN-WAIT-2 and processing continues"),
    Rule("ack.time-wait", ("TIME-WAIT",), "ack", "True", ACK_NOW, then=CONTINUE, source="RFC9293/3.10.7.4",
         text="fifth, TIME-WAIT: what arrives can only be a retransmission of the remote FIN: acknowledge it and "
              "restart the 2 MSL timeout"),
    Rule("ack.new", _SYNC[1:], "ack", "SND.UNA < SEG.ACK =< SND.NXT", then=CONTINUE, do="SND.UNA := SEG.ACK",
         text="fifth, check the ACK field: SND.UNA < SEG.ACK =< SND.NXT advances SND.UNA"),
    Rule("ack.duplicate", _SYNC[1:], "ack", "True", then=CONTINUE,
         text="fifth, check the ACK field: a duplicate ACK (SEG.ACK =< SND.UNA) is ignored"),
    # --- sixth: check the URG bit (no answer of its own) ----------------------------------------
    Rule("urg.update", _OPEN, "urg", "URG", then=CONTINUE,
         text="sixth, check the URG bit: RCV.UP <- max(RCV.UP, SEG.UP) and the user is signalled"),
    Rule("urg.ignored", _AFTER_FIN, "urg", "URG", then=CONTINUE,
         text="sixth, check the URG bit: after the peer's FIN an URG is ignored"),
    # --- seventh: process the segment text ------------------------------------------------------
    Rule("text.accept", _OPEN, "text", "TEXT > 0", ACK_NOW, then=CONTINUE, do="RCV.NXT := RCV.NXT + TEXT",
         delayed=True,
         text="seventh, process the segment text: the data is accepted, RCV.NXT advances over it and an "
              "acknowledgment <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK> is sent"),
    Rule("text.after-fin", _AFTER_FIN, "text", "TEXT > 0", then=CONTINUE,
         text="seventh, after the peer's FIN: the segment text is ignored"),
    # --- eighth: check the FIN bit ---------------------------------------------------------------
    Rule("fin.close-wait", ("SYN-RECEIVED", "ESTABLISHED"), "fin", "FIN", ACK_NOW, "CLOSE-WAIT",
         do="RCV.NXT := RCV.NXT + 1", text="eighth, check the FIN bit: advance RCV.NXT over the FIN, acknowledge it, "
                                           "enter CLOSE-WAIT"),
    Rule("fin.closing", ("FIN-WAIT-1",), "fin", "FIN", ACK_NOW, "CLOSING", do="RCV.NXT := RCV.NXT + 1",
         text="eighth, FIN-WAIT-1 with our FIN not yet acknowledged: acknowledge the FIN, enter CLOSING (a segment "
              "that acknowledges our FIN took the connection to FIN-WAIT-2 in the fifth check, and its FIN to "
              "TIME-WAIT here)"),
    Rule("fin.fin-wait-2", ("FIN-WAIT-2",), "fin", "FIN", ACK_NOW, "TIME-WAIT", do="RCV.NXT := RCV.NXT + 1",
         text="eighth, FIN-WAIT-2: acknowledge the FIN, enter TIME-WAIT"),
    Rule("fin.again", _AFTER_FIN, "fin", "FIN", ACK_NOW, do="RCV.NXT := RCV.NXT + 1",
         text="eighth, after the peer's FIN: advance RCV.NXT over the FIN and acknowledge it; the state stays "
              "(TIME-WAIT restarts its 2 MSL timeout)"),
)

ROWS = {r.id: r for r in RULES}
assert len(ROWS) == len(RULES), "row ids are unique"


# --- the notation ------------------------------------------------------------------------------

_VAR = re.compile(r"\b(MAX\.SND\.WND|SEG\.(?:SEQ|ACK|LEN|WND)|SND\.(?:UNA|NXT|WND)|RCV\.(?:NXT|WND))\b")
_FIELD = re.compile(r"<(SEQ|ACK|CTL)=([^>]*)>")
_CTL = {"SYN": "S", "RST": "R", "FIN": "F", "ACK": "A"}


def _python(text: str) -> str:
    """RFC notation to a Python expression: dotted names, =< and =."""
    text = _VAR.sub(lambda m: m.group(1).replace(".", "_"), text)
    text = text.replace("=<", "<=").replace("=>", ">=")
    return re.sub(r"(?<![<>=!:])=(?!=)", "==", text)


def _diff(a: int, b: int) -> int:
    d = (a - b) % MOD
    return d - MOD if d >= MOD // 2 else d


class NotationError(ValueError):
    """A condition, assignment or answer that is not the table's notation."""


class Expr:
    """A condition or number in the RFC's notation, evaluated over the
    connection's variables; comparisons are sequence-space comparisons."""

    _OPS = {ast.Eq: lambda d: d == 0, ast.NotEq: lambda d: d != 0, ast.Lt: lambda d: d < 0,
            ast.LtE: lambda d: d <= 0, ast.Gt: lambda d: d > 0, ast.GtE: lambda d: d >= 0}

    def __init__(self, text: str):
        self.text = text
        try:
            self.tree = ast.parse(_python(text), mode="eval").body
        except SyntaxError as e:
            raise NotationError(f"cannot read {text!r}: {e.msg}") from None
        self._check(self.tree)

    def _check(self, node) -> None:
        allowed = (ast.BoolOp, ast.And, ast.Or, ast.UnaryOp, ast.Not, ast.USub, ast.Compare, ast.BinOp, ast.Add,
                   ast.Sub, ast.FloorDiv, ast.Name, ast.Load, ast.Constant, *self._OPS)
        for n in ast.walk(node):
            if not isinstance(n, allowed):
                raise NotationError(f"{self.text!r}: {type(n).__name__} is not part of the notation")

    def __call__(self, env: dict):
        return self._eval(self.tree, env)

    def _eval(self, n, env):
        if isinstance(n, ast.Constant):
            return n.value
        if isinstance(n, ast.Name):
            if n.id not in env:
                raise NotationError(f"{self.text!r}: unknown variable {n.id.replace('_', '.')}")
            v = env[n.id]
            if v is None:
                raise NotationError(f"{self.text!r}: {n.id.replace('_', '.')} is not defined in this state")
            return v
        if isinstance(n, ast.BoolOp):
            vals = (self._eval(v, env) for v in n.values)
            return all(vals) if isinstance(n.op, ast.And) else any(vals)
        if isinstance(n, ast.UnaryOp):
            v = self._eval(n.operand, env)
            return (not v) if isinstance(n.op, ast.Not) else (-v) % MOD
        if isinstance(n, ast.BinOp):
            a, b = self._eval(n.left, env), self._eval(n.right, env)
            if isinstance(n.op, ast.Add):
                return (a + b) % MOD
            if isinstance(n.op, ast.Sub):
                return (a - b) % MOD
            return a // b
        left = self._eval(n.left, env)
        for op, comp in zip(n.ops, n.comparators):
            right = self._eval(comp, env)
            if not self._OPS[type(op)](_diff(int(left), int(right))):
                return False
            left = right
        return True


@dataclass(frozen=True)
class Answer:
    """A segment the rules say to send: its control bits and, where the
    rules fix them, SEQ and ACK (None: any value, e.g. a new ISS)."""

    ctl: frozenset
    seq: int | None = None
    ack: int | None = None
    delayed: bool = field(default=False, compare=False)   # may wait for the delayed-ACK timer

    def text(self) -> str:
        parts = [f"<SEQ={self.seq}>" if self.seq is not None else "<SEQ=new ISS>"]
        if self.ack is not None:
            parts.append(f"<ACK={self.ack}>")
        names = [n for n, c in _CTL.items() if c in self.ctl]      # RFC order: SYN, RST, FIN, ACK
        return "".join(parts) + f"<CTL={','.join(names)}>"


def parse_answer(text: str) -> list:
    """`nothing`, or <SEQ=..><ACK=..><CTL=..>, or several such segments sent
    one after the other, joined by ` then ` -> [(ctl, seq Expr, ack Expr)]."""
    if text == NOTHING:
        return []
    return [_parse_segment(part, text) for part in text.split(" then ")]


def _parse_segment(part: str, text: str) -> tuple:
    fields = dict(_FIELD.findall(part))
    if not fields or _FIELD.sub("", part).strip() or "CTL" not in fields:
        raise NotationError(f"an answer is `nothing` or <SEQ=..><ACK=..><CTL=..> (several joined by ` then `), "
                            f"not {text!r}")
    ctl = set()
    for name in fields["CTL"].split(","):
        if name.strip() not in _CTL:
            raise NotationError(f"{text!r}: unknown control bit {name!r}")
        ctl.add(_CTL[name.strip()])
    return (frozenset(ctl), Expr(fields["SEQ"]) if "SEQ" in fields else None,
            Expr(fields["ACK"]) if "ACK" in fields else None)


def parse_do(text: str) -> list:
    """`X := expr; Y := expr` -> [(variable, Expr)]; `TRIM` trims the
    segment's old part (see _trim)."""
    out = []
    for part in filter(None, (p.strip() for p in text.split(";"))):
        if part == "TRIM":
            out.append(("TRIM", None))
            continue
        name, sep, expr = part.partition(":=")
        if not sep:
            raise NotationError(f"an assignment is `VARIABLE := expression`, not {part!r}")
        out.append((_python(name.strip()), Expr(expr.strip())))
    return out


# --- the connection and the segment -----------------------------------------------------------

@dataclass
class Segment:
    """The arriving segment: control bits, SEG.SEQ, SEG.ACK, octets of text."""

    flags: frozenset
    seq: int = 0
    ack: int = 0
    text: int = 0

    @property
    def len(self) -> int:
        return self.text + ("S" in self.flags) + ("F" in self.flags)


def environment(state: str, tcb: dict, seg: Segment, tests: dict | None = None) -> dict:
    """The names the notation knows, for one segment arriving on one TCB.
    `tcb` holds ISS, IRS, SND_UNA, SND_NXT, RCV_NXT, RCV_WND, MAX_SND_WND,
    PASSIVE (opened from LISTEN) and NEW (an ISS the stack chooses: None)."""
    env = {"ISS": None, "IRS": None, "SND_UNA": None, "SND_NXT": None, "RCV_NXT": None, "RCV_WND": None,
           "MAX_SND_WND": None, "PASSIVE": False, "NEW": None, "True": True, "False": False, **tcb,
           "SEG_SEQ": seg.seq % MOD, "SEG_ACK": seg.ack % MOD, "SEG_LEN": seg.len, "TEXT": seg.text,
           "SYN": "S" in seg.flags, "ACK": "A" in seg.flags, "FIN": "F" in seg.flags, "RST": "R" in seg.flags,
           "URG": "U" in seg.flags, "STATE": state, "TRIMMED": False}
    env["TESTS"] = tests or {}
    _accept(env)
    return env


_TABLE6 = {row: (Expr(case), Expr(test)) for row, (case, test) in TABLE6.items()}


def acceptable(env: dict) -> bool:
    """Table 6: the segment is acceptable (a profile's test where it has one)."""
    for row, (case, test) in _TABLE6.items():
        if case(env):
            return bool(env.get("TESTS", {}).get(row, test)(env))
    raise AssertionError("Table 6 covers every case")


def _accept(env: dict) -> None:
    if env["STATE"] in SYNCHRONIZED and env.get("RCV_NXT") is not None:
        env["ACCEPTABLE"] = acceptable(env)


def _trim(env: dict) -> None:
    """Keep the part of the segment from RCV.NXT on: the old octets go, the
    SYN's first (it comes first in sequence space), then text, then the FIN.
    The SYN bit itself stays: the fourth check looks at it "irrespective of
    the sequence number" (RFC 9293 §3.10.7.4, RFC 5961 §4.2); a row that
    drops it says so (`SYN := False`)."""
    old = _diff(env["RCV_NXT"], env["SEG_SEQ"])
    if old <= 0:
        return
    if env["SYN"]:
        old -= 1
    cut = min(old, env["TEXT"])
    env["TEXT"], old = env["TEXT"] - cut, old - cut
    if old > 0 and env["FIN"]:
        env["FIN"] = False
    env["SEG_SEQ"] = env["RCV_NXT"]
    env["SEG_LEN"] = env["TEXT"] + env["SYN"] + env["FIN"]
    env["TRIMMED"] = True


def reset_state(state: str, passive: bool) -> str:
    for s, cond, after in RESETS:
        if s == state and Expr(cond)({"PASSIVE": passive, "True": True}):
            return after
    return "CLOSED"


# --- stacks' documented departures ---------------------------------------------------------------

@dataclass(frozen=True)
class Override:
    """A stack's own row for `row` (a RULES id): in `states` (default: the
    row's), for the segments of the row that `when` also picks (default:
    all of them), it does this instead. For a Table 6 row (`table6.*`),
    `when` is the stack's test in place of the RFC's. `source` is where the
    stack says so (its code or documentation)."""

    row: str
    answer: str = NOTHING
    next: str = SAME
    then: str = RETURN
    do: str = ""
    states: tuple = ()
    when: str = ""
    source: str = ""

    def rule(self) -> Rule:
        base = ROWS[self.row]
        when = f"({base.when}) and ({self.when})" if self.when else base.when
        return replace(base, id=f"{self.row}@stack", states=self.states or base.states, when=when,
                       answer=self.answer, next=self.next, then=self.then, do=self.do, level="MUST",
                       text=f"documented: {self.source}")


def check_override(o: Override) -> None:
    """Raise NotationError unless `o` names a row and speaks the notation."""
    if o.row in TABLE6:
        if not o.when:
            raise NotationError(f"{o.row} is a test of Table 6: give the stack's test as `when`")
        Expr(o.when)
        return
    if o.row not in ROWS:
        raise NotationError(f"no row {o.row!r} in harness/rules.py (rows: {', '.join([*TABLE6, *ROWS])})")
    bad = sorted(set(o.states) - set(ROWS[o.row].states))
    if bad:
        raise NotationError(f"row {o.row!r} does not apply in {bad[0]}")
    if o.then not in (RETURN, CONTINUE):
        raise NotationError(f"then is {RETURN!r} or {CONTINUE!r}, not {o.then!r}")
    if o.next not in (SAME, RESET, *STATES):
        raise NotationError(f"next is a state, {SAME!r} or {RESET!r}, not {o.next!r}")
    parse_answer(o.answer)
    parse_do(o.do)
    if o.when:
        Expr(o.when)


# --- the oracle -------------------------------------------------------------------------------------

@dataclass
class Outcome:
    """What the rules say a segment draws: `answers` (segments, in order),
    whether they may be left out (`optional`: a MAY), the `next` state, the
    rows that fired and the variables after processing."""

    answers: list
    optional: bool
    next: str
    rows: list
    tcb: dict = field(default_factory=dict)

    @property
    def decided_by(self) -> Rule:
        """The row that ended processing (or the last that fired)."""
        return self.rows[-1]

    def same(self, other: "Outcome") -> bool:
        return self.answers == other.answers and self.next == other.next

    def allows(self, other: "Outcome") -> bool:
        """`other` is one of the outcomes these rules allow (a MAY answer
        may be left out)."""
        return self.same(other) or (self.optional and not other.answers and self.next == other.next)

    def describe(self) -> str:
        said = " then ".join(a.text() for a in self.answers) or "nothing"
        return f"{said}{' (MAY)' if self.optional else ''}, then {self.next}"


def _compiled(rule: Rule) -> tuple:
    return rule, Expr(rule.when), parse_answer(rule.answer), parse_do(rule.do)


_COMPILED = {r.id: _compiled(r) for r in RULES}


def arrive(state: str, tcb: dict, seg: Segment, overrides=()) -> Outcome:
    """What `seg` arriving in `state` draws, by the tables (and a stack's
    `overrides`, each tried just before the row it replaces)."""
    if state not in STATES:
        raise NotationError(f"unknown state {state!r}")
    stack, tests = {}, {}
    for o in overrides:
        if o.row in TABLE6:
            tests[o.row] = Expr(o.when)
        else:
            stack.setdefault(o.row, []).append(_compiled(o.rule()))
    env = environment(state, dict(tcb), seg, tests)
    answers, fired, ack, delayed = [], [], None, False      # ack: None, "MAY" or "MUST"
    for step in STEPS[state]:
        rows = [x for r in RULES if r.step == step for x in (*stack.get(r.id, ()), _COMPILED[r.id])]
        for rule, when, answer, do in rows:
            if env["STATE"] not in rule.states or not when(env):
                continue
            fired.append(rule)
            for name, expr in do:
                if name == "TRIM":
                    _trim(env)
                else:
                    env[name] = _value(expr, env)
                    if name in ("TEXT", "SYN", "FIN"):
                        env["SEG_LEN"] = env["TEXT"] + env["SYN"] + env["FIN"]
            if do:
                _accept(env)
            for ctl, seq, ackno in answer:
                if ctl == frozenset("A"):          # every ACK the checks send is one ACK, sent last
                    ack = "MUST" if rule.level != "MAY" or ack == "MUST" else "MAY"
                    delayed = delayed or rule.delayed
                else:
                    answers.append(Answer(ctl, _value(seq, env) if seq else None, _value(ackno, env) if ackno else None))
            if rule.next != SAME:
                env["STATE"] = reset_state(env["STATE"], env["PASSIVE"]) if rule.next == RESET else rule.next
            if rule.then == RETURN:
                return _outcome(answers, ack, delayed, fired, env)
            break
    return _outcome(answers, ack, delayed, fired, env)


def _value(expr: Expr, env: dict):
    try:
        return expr(env)
    except NotationError:
        return None                    # a value the stack chooses (a new ISS): not checked


_NOT_TCB = {"SYN", "ACK", "FIN", "RST", "URG", "TEXT", "STATE", "ACCEPTABLE", "TESTS", "TRIMMED", "True", "False"}


def _outcome(answers, ack, delayed, fired, env) -> Outcome:
    if ack:
        answers.append(Answer(frozenset("A"), env["SND_NXT"], env["RCV_NXT"], delayed))
    tcb = {k: v for k, v in env.items() if not k.startswith("SEG_") and k not in _NOT_TCB}
    return Outcome(answers, ack == "MAY" and len(answers) == 1, env["STATE"], fired, tcb)


@dataclass(frozen=True)
class Judgement:
    """The RFC's outcome, the stack's documented one, and whether the stack
    departs from the RFC (and from which rows) in this cell."""

    rfc: Outcome
    documented: Outcome
    departs: tuple                  # RULES rows the documented outcome replaced; () if it follows the RFC

    @property
    def requirement(self) -> str:
        return self.rfc.decided_by.source


def judge(state: str, tcb: dict, seg: Segment, overrides=()) -> Judgement:
    rfc = arrive(state, tcb, seg)
    if not overrides:
        return Judgement(rfc, rfc, ())
    documented = arrive(state, tcb, seg, overrides)
    if rfc.allows(documented):
        return Judgement(rfc, documented, ())
    replaced = tuple(ROWS[r.id.split("@")[0]] for r in documented.rows if r.id.endswith("@stack"))
    return Judgement(rfc, documented, replaced or (rfc.decided_by,))


def documented_text(j: Judgement, overrides=()) -> str:
    """Where the stack says so, for a judgement that departs: the sources
    of the overrides that fired (and of its Table 6 tests)."""
    fired = [r.text[len("documented: "):] for r in j.documented.rows if r.id.endswith("@stack")]
    tests = [o.source for o in overrides if o.row in TABLE6]
    return "; ".join(dict.fromkeys(fired or tests))
