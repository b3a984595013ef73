"""Pictures of a Trace: the RFC 9293 ladder and an SVG sequence diagram.

Rules of this file:
- Pure: a Trace in, a string out. No IO, no clocks, no Scapy beyond the
  Segments the Trace already holds.
- Everything both pictures say comes from `exchange(trace)`: one Step per
  packet, with its fate, its <SEQ=..><ACK=..><CTL=..> text and the state of
  each side after it. The pictures only lay Steps out.
- The states are inferred from the segments alone, by the small RFC 9293
  state machine below (Figure 5 of the RFC, §3.10.7 for what is acceptable).
  It is a model of two RFC endpoints, not a reading of the SUT: where the
  tester plays tricks (an old duplicate, a forged ACK) the tester's column is
  what an RFC endpoint sending those segments would be in.
- Protocol facts live in the tables SEND and RECEIVE; code only classifies a
  segment into an event and looks the transition up.

The notation is RFC 9293's (Figure 6 onwards), as the seed note explains it:

    -->   sent by the tester (TCP Peer A, left) and received by the SUT (right)
    <--   sent by the SUT and received by the tester
    ...   delayed: it arrives late or out of order (an old duplicate); where
          two FINs cross (RFC 9293 Figure 13), a FIN is drawn where it leaves
          with `...` at its receiver, and again where it arrives
    XXX   lost or rejected: the link lost it (a fault), or the case says the
          receiver dropped it
    (..)  a comment; each side's state is the one AFTER the segment

Sequence and acknowledgment numbers are relative to each side's ISN (the
seq of its SYN on that connection; without a SYN, its first segment), so
the tester's SYN is <SEQ=0> and the SUT's answer acknowledges 1. They are
signed: an old duplicate before the ISN shows as <SEQ=-100000>. A new
connection on the same ports starts numbering again from its own ISNs, so a
late segment of the earlier connection shows negative numbers.

A segment that a check of the case judged (harness.steps) carries its
number, `#3`, as the report's steps do; `#7 ✗` is the check that failed.
"""
from __future__ import annotations

from dataclasses import dataclass
from xml.sax.saxutils import escape

from .segment import CTL_NAMES, Segment, options_text, seq_add, seq_diff
from .trace import Other, Trace

SIDES = ("peer", "sut")
FAR = 1 << 24                    # relative numbers beyond this are shown absolute
SYNCHRONIZED = ("SYN-RECEIVED", "ESTABLISHED", "FIN-WAIT-1", "FIN-WAIT-2", "CLOSE-WAIT",
                "CLOSING", "LAST-ACK", "TIME-WAIT")

# What sending a segment does to the sender: (state, kind) -> state after.
# Kinds: SYN (no ACK), SYN-ACK, FIN, RST. Anything not listed leaves the
# state as it is (ACKs, data, retransmissions). A SYN that opens a new
# connection puts its sender in SYN-SENT whatever it was in before.
SEND = {
    ("CLOSED", "SYN"): "SYN-SENT",
    ("LISTEN", "SYN-ACK"): "SYN-RECEIVED",
    ("SYN-SENT", "SYN-ACK"): "SYN-RECEIVED",     # simultaneous open
    ("SYN-RECEIVED", "FIN"): "FIN-WAIT-1",
    ("ESTABLISHED", "FIN"): "FIN-WAIT-1",
    ("CLOSE-WAIT", "FIN"): "LAST-ACK",
}

# What receiving an acceptable segment does to the receiver:
# (state, event) -> state after. Events (see _event): SYN, SYN-ACK, ACK-SYN
# (acknowledges our SYN), ACK-FIN (acknowledges our FIN), FIN (in order),
# and their sums "ACK-SYN+FIN", "ACK-FIN+FIN". RST: see AFTER_RST.
RECEIVE = {
    (None, "SYN"): "SYN-RECEIVED",
    ("LISTEN", "SYN"): "SYN-RECEIVED",
    ("TIME-WAIT", "SYN"): "SYN-RECEIVED",        # a new incarnation (seq beyond RCV.NXT)
    ("SYN-SENT", "SYN-ACK"): "ESTABLISHED",
    ("SYN-SENT", "SYN"): "SYN-RECEIVED",         # simultaneous open
    ("SYN-RECEIVED", "SYN"): "LISTEN",           # in the window: passive back to LISTEN (active: CLOSED)
    ("SYN-RECEIVED", "ACK-SYN"): "ESTABLISHED",
    ("SYN-RECEIVED", "ACK-SYN+FIN"): "CLOSE-WAIT",
    ("ESTABLISHED", "FIN"): "CLOSE-WAIT",
    ("FIN-WAIT-1", "ACK-FIN"): "FIN-WAIT-2",
    ("FIN-WAIT-1", "FIN"): "CLOSING",
    ("FIN-WAIT-1", "ACK-FIN+FIN"): "TIME-WAIT",
    ("FIN-WAIT-2", "FIN"): "TIME-WAIT",
    ("CLOSING", "ACK-FIN"): "TIME-WAIT",
    ("LAST-ACK", "ACK-FIN"): "CLOSED",
}
# A RST sent or accepted ends the connection (CLOSED); a passive
# SYN-RECEIVED goes back to LISTEN (RFC 9293 §3.10.7.4), a LISTEN stays.
AFTER_RST = {"LISTEN": "LISTEN", "SYN-RECEIVED/passive": "LISTEN"}

# RFC 9293 writes the control bits in this order: <CTL=SYN,ACK>, <CTL=FIN,ACK>.
CTL_ORDER = ("S", "R", "F", "P", "U", "E", "C", "A")


@dataclass
class Endpoint:
    """One side of one connection, as the model sees it."""

    state: str | None = None      # None: not known from the segments
    passive: bool = False         # opened from LISTEN
    iss: int | None = None
    snd_nxt: int | None = None
    fin_seq: int | None = None    # SEG.SEQ of our FIN
    fin_acked: bool = False       # our FIN has been acknowledged
    rcv_nxt: int | None = None
    wnd: int = 0                  # last window we advertised (octets)
    wscale: int | None = None     # shift offered on our SYN
    last_ack: int | None = None   # SEG.ACK of the last segment we received
    syn_kind: str | None = None   # our last SYN: "SYN" or "SYN-ACK"
    base: int | None = None       # relative numbers start here (the ISN)
    before_fin: str | None = None  # our state before the FIN that put us in CLOSE-WAIT

    def after_rst(self) -> str:
        key = "SYN-RECEIVED/passive" if self.state == "SYN-RECEIVED" and self.passive else self.state
        return AFTER_RST.get(key, "CLOSED")

    def reopen(self) -> None:
        """A new incarnation of the connection starts: forget the old one."""
        self.iss = self.snd_nxt = self.fin_seq = self.base = self.rcv_nxt = None
        self.fin_acked = False


@dataclass
class Step:
    """One packet of the exchange, as both pictures show it."""

    t: float                      # seconds since the trace started
    sent_by: str                  # "peer" or "sut"
    text: str                     # <SEQ=..><ACK=..><CTL=..><DATA=n>, or a summary
    fate: str                     # "delivered", "delayed" or "lost"
    note: str                     # comment, e.g. "retransmission"
    states: dict                  # {"peer": state, "sut": state} after the packet
    conn: int                     # 1, 2, ...: which connection of the trace (0: not TCP)
    ctl: frozenset = frozenset()
    checks: tuple = ()            # the checks that judged it: "#3", "#7 ✗"
    detail: str = ""              # what the ladder leaves out: window, options
    arrival_of: int | None = None  # this row is where step N (a crossing FIN) arrives


@dataclass
class Exchange:
    steps: list
    connections: list             # per connection: {"peer": (addr, port), "sut": (addr, port),
                                  #  "isn": {side: int}, "initial": {side: state}}


def _kind(seg: Segment) -> str | None:
    if seg.rst:
        return "RST"
    if seg.syn:
        return "SYN-ACK" if seg.has_ack else "SYN"
    return "FIN" if seg.fin else None


def _in_window(seq: int, rcv: Endpoint) -> bool:
    return rcv.rcv_nxt is not None and 0 <= seq_diff(seq, rcv.rcv_nxt) < max(rcv.wnd, 1)


def _opens(seg: Segment, rcv: Endpoint) -> bool:
    """A SYN (no ACK) that starts a new connection at the receiver: one in
    LISTEN or CLOSED, or in TIME-WAIT with a sequence number beyond RCV.NXT."""
    if rcv.state in (None, "CLOSED", "LISTEN"):
        return True
    return rcv.state == "TIME-WAIT" and rcv.rcv_nxt is not None and seq_diff(seg.seq, rcv.rcv_nxt) > 0


def _event(seg: Segment, rcv: Endpoint) -> str | None:
    """The event an arriving segment is for the receiver; None if the
    receiver finds it unacceptable or it changes nothing."""
    state = rcv.state
    acks_syn = seg.has_ack and rcv.iss is not None and seg.ack == seq_add(rcv.iss, 1)
    if seg.rst:
        if state == "SYN-SENT":
            return "RST" if acks_syn else None
        return "RST" if state in SYNCHRONIZED and seg.seq == rcv.rcv_nxt else None
    if seg.syn and not seg.has_ack:
        if state in (None, "CLOSED", "LISTEN", "SYN-SENT") or (state == "TIME-WAIT" and _opens(seg, rcv)):
            return "SYN"
        return "SYN" if state != "TIME-WAIT" and _in_window(seg.seq, rcv) else None
    if seg.syn:
        if state == "SYN-SENT" and acks_syn:
            return "SYN-ACK"
        return "ACK-SYN" if state == "SYN-RECEIVED" and acks_syn else None     # Figure 7, line 6
    if state not in SYNCHRONIZED:
        return None
    parts = []
    if state == "SYN-RECEIVED" and acks_syn:
        parts.append("ACK-SYN")
    elif rcv.fin_seq is not None and not rcv.fin_acked and seg.has_ack and seg.ack == seq_add(rcv.fin_seq, 1):
        parts.append("ACK-FIN")
    if seg.fin and seg.seq == rcv.rcv_nxt:
        parts.append("FIN")
    return "+".join(parts) or None


def _send(seg: Segment, snd: Endpoint, rcv: Endpoint, fate: str | None) -> tuple[str, str | None]:
    """The sender's side of a segment: its ISN, SND.NXT, FIN and state.
    Returns (note, fate): retransmissions, old duplicates, out of order."""
    note = ""
    kind = _kind(seg)
    if seg.syn:
        if snd.iss is None or (fate != "delayed" and seg.seq != snd.iss and kind == "SYN" and _opens(seg, rcv)):
            if snd.iss is not None:
                note = "a new connection: new ISN"
            rcv_nxt = snd.rcv_nxt
            snd.reopen()
            if kind == "SYN-ACK":                # it answers the SYN it received
                snd.rcv_nxt = rcv_nxt
            snd.iss = snd.base = seg.seq
            snd.snd_nxt = seg.end
            snd.syn_kind = kind
            snd.wscale = seg.option("WScale")
            if kind == "SYN":
                snd.state, snd.passive = "SYN-SENT", False
        elif seg.seq == snd.iss and kind == snd.syn_kind:
            note = "retransmission"
        elif seg.seq == snd.iss:
            snd.syn_kind = kind                  # SYN, then SYN-ACK: a simultaneous open
        else:
            note, fate = "old duplicate SYN", fate or "delayed"
    elif snd.snd_nxt is None:                    # no SYN seen from this side
        snd.base = seg.seq if snd.base is None else snd.base
        snd.snd_nxt = seg.end
    elif seg.seg_len and not seg.rst:
        d = seq_diff(seg.seq, snd.snd_nxt)
        if d < 0 and snd.iss is not None and seq_diff(seg.seq, snd.iss) < 0:
            note = "a segment of the earlier connection"         # numbers relative to the new ISNs: negative
        elif d < 0:
            note = "retransmission"
        elif d > 0:
            note, fate = "out of order", fate or "delayed"
    if fate != "delayed":
        if seq_diff(seg.end, snd.snd_nxt) > 0:
            snd.snd_nxt = seg.end
        if seg.fin and snd.fin_seq is None:
            snd.fin_seq = seq_add(seg.seq, len(seg.payload))
    shift = snd.wscale if (snd.wscale is not None and rcv.wscale is not None and not seg.syn) else 0
    snd.wnd = seg.window << min(shift, 14)
    if kind == "RST":
        if snd.state in ("SYN-SENT", "SYN-RECEIVED") and not seg.has_ack and seg.seq == snd.last_ack:
            pass                                 # <SEQ=SEG.ACK><CTL=RST>: an unacceptable ACK refused
        else:
            snd.state = snd.after_rst()
    elif kind != "SYN":
        snd.state = SEND.get((snd.state, kind), snd.state)
    return note, fate


def _timer_expired(seg: Segment, snd: Endpoint) -> bool:
    """A RST <SEQ=SEG.ACK> without ACK answering the last segment, from a
    side the model has in a synchronized state past SYN-RECEIVED: there an
    acceptable ACK never draws a RST, so a timer (invisible on the wire) had
    ended the connection."""
    return (seg.rst and not seg.has_ack and snd.last_ack is not None and seg.seq == snd.last_ack
            and snd.state in SYNCHRONIZED and snd.state != "SYN-RECEIVED")


def _receive(seg: Segment, rcv: Endpoint) -> None:
    """The receiver's side of a segment that reached it."""
    rcv.last_ack = seg.ack if seg.has_ack else None
    event = _event(seg, rcv)
    before = rcv.state
    if event == "RST":
        rcv.state = rcv.after_rst()
        return
    if event is not None:
        rcv.fin_acked = rcv.fin_acked or "ACK-FIN" in event
        rcv.state = RECEIVE.get((before, event), before)
        if rcv.state == "CLOSE-WAIT" and before != "CLOSE-WAIT":
            rcv.before_fin = before
        if event == "SYN" and before == "SYN-RECEIVED" and not rcv.passive:
            rcv.state = "CLOSED"
    if event == "SYN" and rcv.state == "SYN-RECEIVED":
        if before in (None, "LISTEN", "TIME-WAIT"):
            rcv.reopen()
            rcv.passive = True
        rcv.rcv_nxt = seq_add(seg.seq, 1)        # data on a SYN is not accepted before ESTABLISHED
    elif event == "SYN-ACK":
        rcv.rcv_nxt = seq_add(seg.seq, 1)
    elif rcv.rcv_nxt is not None and seg.seq == rcv.rcv_nxt and rcv.state in SYNCHRONIZED:
        rcv.rcv_nxt = seg.end
    elif rcv.rcv_nxt is None and before is None:
        rcv.rcv_nxt = seg.end                    # joined in the middle: follow the sender


def _crosses(seg: Segment, snd: Endpoint, rcv: Endpoint) -> bool:
    """A FIN sent before the FIN that the model has already delivered to
    its sender: SEG.ACK stops just short of the other side's FIN. The two
    FINs crossed (RFC 9293 Figure 13, simultaneous close): the sender was
    not in CLOSE-WAIT but closing too."""
    return (seg.fin and not seg.rst and seg.has_ack and snd.state == "CLOSE-WAIT" and rcv.fin_seq is not None
            and seg.ack == rcv.fin_seq and snd.rcv_nxt == seq_add(rcv.fin_seq, 1))


def _ctl(flags: frozenset) -> str:
    return ",".join(CTL_NAMES[f] for f in CTL_ORDER if f in flags)


def _rel(n: int, base: int | None) -> str:
    """n relative to base; a number far from it (e.g. the SEQ=0 of a RST
    answering a SYN) is shown absolute, marked `abs`."""
    if base is None:
        return str(n)
    d = seq_diff(n, base)
    return str(d) if abs(d) < FAR else f"{n} abs"


def segment_text(seg: Segment, seq_base: int | None, ack_base: int | None) -> str:
    """<SEQ=..><ACK=..><CTL=..><DATA=n>, numbers relative to the bases."""
    out = f"<SEQ={_rel(seg.seq, seq_base)}>"
    if seg.has_ack:
        out += f"<ACK={_rel(seg.ack, ack_base)}>"
    ctl = _ctl(seg.flags)
    if ctl:
        out += f"<CTL={ctl}>"
    if seg.payload:
        out += f"<DATA={len(seg.payload)}>"
    return out


def _conn_key(seg: Segment) -> tuple:
    a, b = (seg.src, seg.sport), (seg.dst, seg.dport)
    return (a, b) if seg.sent_by == "peer" else (b, a)      # (tester end, SUT end)


def _initial(first: Segment, later: list) -> dict:
    """Each side's state before the first segment of a connection: the side
    that sends a SYN was CLOSED; the other was LISTEN, or CLOSED when its
    first answer is a RST or a SYN of its own (a simultaneous open).
    Otherwise unknown (None)."""
    states = {s: None for s in SIDES}
    if first.syn and not first.has_ack:
        other = "sut" if first.sent_by == "peer" else "peer"
        answer = next((s for s in later if s.sent_by == other), None)
        states[first.sent_by] = "CLOSED"
        states[other] = "CLOSED" if answer is not None and (answer.rst or answer.flags == first.flags) else "LISTEN"
    return states


def _packets(trace: Trace) -> list:
    """Every packet in order with its index in trace.entries; the link's
    losses at their place, with index None."""
    dropped = sorted(trace.dropped, key=lambda d: d[0])
    out, k = [], 0
    for i, e in enumerate(trace.entries):
        while k < len(dropped) and dropped[k][0] <= i:
            out.append((dropped[k][1], None))
            k += 1
        out.append((e, i))
    out += [(d[1], None) for d in dropped[k:]]
    return out


def exchange(trace: Trace) -> Exchange:
    """The exchange step by step: fates, texts, and both sides' states."""
    packets = _packets(trace)
    segs = [e for e, _ in packets if isinstance(e, Segment)]
    conns: dict = {}
    infos: list = []
    steps: list = []
    for pos, (e, index) in enumerate(packets):
        marked = index in trace.marks
        fate, note = trace.marks.get(index, (None, "")) if index is not None else ("lost", "lost on the link")
        # a packet stamped later than the next one arrived late (a delay on the link)
        if fate is None and pos + 1 < len(packets) and e.t > packets[pos + 1][0].t:
            fate = "delayed"
        if isinstance(e, Other):
            steps.append(Step(e.t - trace.t0, e.sent_by, e.summary(), fate or "delivered", note,
                              {s: None for s in SIDES}, 0, checks=tuple(trace.checks.get(index, ()))))
            continue
        key = _conn_key(e)
        if key not in conns:
            init = _initial(e, [s for s in segs if _conn_key(s) == key and s is not e])
            conns[key] = {s: Endpoint(state=init[s]) for s in SIDES}
            infos.append({"peer": key[0], "sut": key[1], "isn": {}, "initial": init})
        ends = conns[key]
        num = list(conns).index(key) + 1
        snd, rcv = ends[e.sent_by], ends["sut" if e.sent_by == "peer" else "peer"]
        crossing = None
        if _crosses(e, snd, rcv):
            # the other side's FIN had not arrived when this one left: it
            # is drawn in flight where it left, and arriving after this one
            crossing = next(i for i in range(len(steps) - 1, -1, -1)
                            if steps[i].conn == num and steps[i].sent_by != e.sent_by and "F" in steps[i].ctl)
            snd.state = snd.before_fin or "ESTABLISHED"
            steps[crossing].states[e.sent_by] = snd.state
            steps[crossing].fate = "in flight"
            steps[crossing].note = "; ".join(x for x in (steps[crossing].note, "the FINs cross") if x)
        if e.sent_by == "sut" and _timer_expired(e, snd):
            # <SEQ=SEG.ACK><CTL=RST> answers an ACK only in LISTEN or CLOSED:
            # a timer ended the connection before that ACK arrived
            snd.state = "LISTEN" if snd.passive else "CLOSED"
            for prev in reversed(steps):
                if prev.conn == num and prev.sent_by != e.sent_by:
                    prev.states[e.sent_by] = snd.state
                    prev.note = "; ".join(x for x in (prev.note, "arrives after a timer ended the connection") if x)
                    break
        auto, fate = _send(e, snd, rcv, fate)
        if e.syn and snd.iss == e.seq:
            infos[num - 1]["isn"].setdefault(e.sent_by, e.seq)
        fate = fate or "delivered"
        if fate != "lost":
            _receive(e, rcv)
        text = segment_text(e, snd.base, rcv.base)
        note = note if marked else "; ".join(x for x in (note, auto) if x)
        steps.append(Step(e.t - trace.t0, e.sent_by, text, fate, note,
                          {s: ends[s].state for s in SIDES}, num, e.flags, tuple(trace.checks.get(index, ())),
                          _details(e)))
        if crossing is not None:
            # the crossing FIN arrives now: FIN-WAIT-1 and a FIN -> CLOSING
            snd.state = RECEIVE.get((snd.state, "FIN"), snd.state)
            other = steps[crossing]
            steps.append(Step(e.t - trace.t0, other.sent_by, other.text, "delayed",
                              f"the FIN of line {crossing + 1} arrives", {e.sent_by: snd.state, other.sent_by: None},
                              num, other.ctl, arrival_of=crossing))
    return Exchange(steps, infos)


# --- the ladder ----------------------------------------------------------------------------------

def _arrows(step: Step) -> tuple[str, str]:
    """(left arrow, right arrow) of a line."""
    if step.sent_by == "peer":
        return {"delivered": ("-->", "-->"), "delayed": ("...", "-->"), "lost": ("-->", "XXX"),
                "in flight": ("-->", "...")}[step.fate]
    return {"delivered": ("<--", "<--"), "delayed": ("<--", "..."), "lost": ("XXX", "<--"),
            "in flight": ("...", "<--")}[step.fate]


def _endpoint(trace: Trace, end: tuple) -> str:
    return trace.names.get(end, f"{end[0]}.{end[1]}")


TAIL = 4            # packets shown at the end of an exchange that is cut short


def shown_steps(ex: Exchange, keep: int | None) -> set | None:
    """The packets a picture shows when it may show `keep` of them: the
    first keep-TAIL and the last TAIL (None: all). A case of 200 handshakes
    reads from a few; its attachments keep them all."""
    n = len(ex.steps)
    if keep is None or n <= keep:
        return None
    return set(range(keep - TAIL)) | set(range(n - TAIL, n))


def _left_out(n: int) -> str:
    return f"{n} more packet{'s' if n > 1 else ''} like these left out here"


def _note(step: Step, lines: dict) -> str:
    note = f"the FIN of line {lines[step.arrival_of]} arrives" if step.arrival_of is not None else step.note
    return "; ".join(x for x in (" ".join(step.checks), note) if x)


LEGEND = ("      (each side's state is the one after the segment; numbers relative to the ISNs of each connection;",
          "       -->/<-- sent and received, ... delayed or in flight, XXX lost or rejected; #n the segment check #n",
          "       of the report judged; time in seconds at the right)")


def ladder(trace: Trace, sut: str = "SUT", keep: int | None = None, width: int | None = None) -> str:
    """The exchange in RFC 9293 notation (Figure 6 style), one line per packet:
    line number, tester's state, arrow, segment, arrow, SUT's state, time and
    a note. `keep`: show at most that many packets (shown_steps); `width`:
    a line longer than that puts its note on a line of its own."""
    ex = exchange(trace)
    if not ex.steps:
        return "(no packets)"
    shown = shown_steps(ex, keep)
    texts = [s.text for i, s in enumerate(ex.steps) if s.conn and (shown is None or i in shown)]
    seg_width = max(24, *(len(t) for t in texts)) if texts else 24
    rows = []

    def row(num: str, left: str | None, la: str, text: str, ra: str, right: str | None, t: str = "", note: str = ""):
        line = f"{num:>4}  {left or '':<12} {la:<3} {text:<{seg_width}} {ra:<3} {right or '':<12}{t}".rstrip()
        if note and width and len(line) + len(note) + 3 > width:
            rows.append(line)
            rows.append(f"{'':6}{'':12} {'':3} ({note})")
        else:
            rows.append(f"{line} ({note})" if note else line)

    first = ex.connections[0] if ex.connections else None
    head_l = f"tester (TCP Peer A) {_endpoint(trace, first['peer'])}" if first else "tester (TCP Peer A)"
    head_r = f"{sut} (TCP Peer B) {_endpoint(trace, first['sut'])}" if first else f"{sut} (TCP Peer B)"
    pad = 4 + 2 + 12 + 1 + 3 + 1 + seg_width + 1 + 3 + 1
    lines = [f"{'':6}{head_l:<{pad - 6}}{head_r}", *LEGEND]
    n = 0
    numbers: dict = {}                 # step index -> ladder line number
    started: set = set()
    hidden = 0
    for i, step in enumerate(ex.steps):
        if shown is not None and i not in shown:
            started.add(step.conn)
            hidden += 1
            continue
        if hidden:
            rows.append("")
            rows.append(f"      ({_left_out(hidden)})")
            hidden = 0
        if step.conn and step.conn not in started:
            started.add(step.conn)
            c = ex.connections[step.conn - 1]
            isn = ", ".join(f"{'tester' if s == 'peer' else sut} {c['isn'][s]}" for s in SIDES if s in c["isn"])
            rows.append("")
            if len(ex.connections) > 1 or step.conn > 1:
                rows.append(f"      (connection {step.conn}: tester {_endpoint(trace, c['peer'])}, "
                            f"{sut} {_endpoint(trace, c['sut'])})")
            if isn:
                rows.append(f"      (ISN: {isn})")
            n += 1
            row(f"{n}.", c["initial"]["peer"], "", "", "", c["initial"]["sut"])
        n += 1
        numbers[i] = n
        la, ra = _arrows(step)
        t = f"  {'':10}" if step.arrival_of is not None else f"  {step.t:10.6f}"
        if step.conn:
            # a delayed segment is drawn when it arrives: its sender's column
            # stays empty, as in RFC 9293 Figures 7 and 8
            left = "" if step.fate == "delayed" and step.sent_by == "peer" else step.states["peer"]
            right = "" if step.fate == "delayed" and step.sent_by == "sut" else step.states["sut"]
            row(f"{n}.", left, la, step.text, ra, right, t, _note(step, numbers))
        else:
            row(f"{n}.", "", la, f"({step.text})", ra, "", t, _note(step, numbers))
    return "\n".join(lines + rows)


# --- the SVG diagram ---------------------------------------------------------------------------

LEFT, RIGHT, WIDTH = 230, 770, 1000
TOP, ROW, SEPARATOR = 74, 50, 34
DETAIL = 88                      # characters of the line under an arrow
COLOURS = {"peer": "#1c5fb8", "sut": "#c2410c", "rst": "#b91c1c", "lost": "#6b7280"}


def _details(seg: Segment) -> str:
    """What the ladder leaves out: window and options, tcpdump-style."""
    opts = options_text(seg)
    return f"win {seg.window}" + (f", options [{opts}]" if opts else "")


def svg(trace: Trace, sut: str = "SUT", keep: int | None = None) -> str:
    """The exchange as an SVG sequence diagram: the tester's lifeline on the
    left, the SUT's on the right, one arrow per packet with its segment text
    (window, options and the checks that judged it below it), time at the
    far left, each side's state after the packet beside its lifeline.
    Dashed: delayed; ending in a cross: lost; two FINs that cross are drawn
    crossing. `keep`: at most that many packets (shown_steps)."""
    ex = exchange(trace)
    shown = shown_steps(ex, keep)
    rows, started, hidden = [], set(), 0
    for i, step in enumerate(ex.steps):
        if shown is not None and i not in shown:
            started.add(step.conn)
            hidden += 1
            continue
        if hidden:
            rows.append(("hidden", hidden, i))
            hidden = 0
        if step.conn and step.conn not in started:
            started.add(step.conn)
            rows.append(("connection", step.conn, i))
        rows.append(("step", step, i))
    height = TOP + sum(ROW if kind == "step" else SEPARATOR for kind, _, _ in rows) + 24
    first = ex.connections[0] if ex.connections else None
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
           f'viewBox="0 0 {WIDTH} {height}" font-family="DejaVu Sans Mono, Menlo, Consolas, monospace" font-size="12">',
           "<title>TCP exchange between the tester and the stack under test</title>",
           "<defs>"]
    for name, colour in COLOURS.items():
        out.append(f'<marker id="head-{name}" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" '
                   f'markerHeight="8" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="{colour}"/></marker>')
    out.append("</defs>")
    out.append(f'<rect x="0" y="0" width="{WIDTH}" height="{height}" fill="#ffffff"/>')
    for x, who, end, colour in ((LEFT, "tester (TCP Peer A)", first and first["peer"], COLOURS["peer"]),
                                (RIGHT, f"{sut} (TCP Peer B)", first and first["sut"], COLOURS["sut"])):
        out.append(f'<rect x="{x - 120}" y="8" width="240" height="40" rx="6" fill="#f8fafc" stroke="{colour}"/>')
        out.append(f'<text x="{x}" y="25" text-anchor="middle" font-weight="bold" fill="{colour}">{escape(who)}</text>')
        if end:
            out.append(f'<text x="{x}" y="41" text-anchor="middle" fill="#334155">{escape(_endpoint(trace, end))}</text>')
        out.append(f'<line x1="{x}" y1="48" x2="{x}" y2="{height - 8}" stroke="{colour}" stroke-width="2"/>')
    out.append('<text x="8" y="64" fill="#64748b">time (s)</text>')
    out.append(f'<text x="{LEFT - 10}" y="64" text-anchor="end" fill="#64748b">state after</text>')
    out.append(f'<text x="{RIGHT + 10}" y="64" fill="#64748b">state after</text>')
    y = TOP
    left_at: dict = {}                 # step index of a FIN in flight -> (x, y) where it left
    for kind, item, index in rows:
        if kind != "step":
            if kind == "hidden":
                label = _left_out(item)
            else:
                c = ex.connections[item - 1]
                label = f"connection {item}: tester {_endpoint(trace, c['peer'])}, {sut} {_endpoint(trace, c['sut'])}"
            out.append(f'<line x1="8" y1="{y + 4}" x2="{WIDTH - 8}" y2="{y + 4}" stroke="#cbd5e1" '
                       'stroke-dasharray="2 3"/>')
            out.append(f'<text x="{(LEFT + RIGHT) / 2:.0f}" y="{y + 18}" text-anchor="middle" font-size="11" '
                       f'fill="#64748b">{escape(label)}</text>')
            if kind == "connection":
                for x, side, anchor in ((LEFT - 10, "peer", "end"), (RIGHT + 10, "sut", "start")):
                    state = ex.connections[item - 1]["initial"][side]
                    if state:
                        out.append(f'<text x="{x}" y="{y + 18}" text-anchor="{anchor}" fill="#64748b">'
                                   f'{escape(state)}</text>')
            y += SEPARATOR
            continue
        step = item
        y += 16
        x1, x2 = (LEFT, RIGHT) if step.sent_by == "peer" else (RIGHT, LEFT)
        colour = COLOURS["lost"] if step.fate == "lost" else COLOURS["rst"] if "R" in step.ctl else COLOURS[step.sent_by]
        head = "rst" if "R" in step.ctl else step.sent_by
        if step.arrival_of is None:
            out.append(f'<text x="8" y="{y + 4}" fill="#334155">{step.t:.6f}</text>')
        if step.fate == "in flight":
            left_at[index] = (x1, y)       # drawn where it arrives
        elif step.arrival_of is not None:
            sx, sy = left_at.get(step.arrival_of, (x1, y))
            out.append(f'<line x1="{sx}" y1="{sy}" x2="{x2}" y2="{y + 14}" stroke="{colour}" stroke-width="1.6" '
                       f'marker-end="url(#head-{head})"/>')
        elif step.fate == "lost":
            dash = ' stroke-dasharray="6 4"'
            xm, ym = x1 + (x2 - x1) * 0.62, y + 14 * 0.62
            out.append(f'<line x1="{x1}" y1="{y}" x2="{xm:.1f}" y2="{ym:.1f}" stroke="{colour}" '
                       f'stroke-width="1.6"{dash}/>')
            out.append(f'<path d="M{xm - 7:.1f},{ym - 7:.1f} L{xm + 7:.1f},{ym + 7:.1f} M{xm - 7:.1f},{ym + 7:.1f} '
                       f'L{xm + 7:.1f},{ym - 7:.1f}" stroke="{COLOURS["rst"]}" stroke-width="2.5"/>')
        else:
            dash = ' stroke-dasharray="6 4"' if step.fate != "delivered" else ""
            out.append(f'<line x1="{x1}" y1="{y}" x2="{x2}" y2="{y + 14}" stroke="{colour}" stroke-width="1.6"{dash} '
                       f'marker-end="url(#head-{head})"/>')
        label = step.text if step.conn else f"({step.text})"
        if step.arrival_of is not None:
            out.append(f'<text x="{(LEFT + RIGHT) / 2:.0f}" y="{y + 22}" text-anchor="middle" font-size="10" '
                       f'fill="#64748b">the FINs crossed: this one arrives now</text>')
        else:
            out.append(f'<text x="{(LEFT + RIGHT) / 2:.0f}" y="{y - 4}" text-anchor="middle" fill="{colour}">'
                       f'{escape(label)}</text>')
        fate = "" if step.fate in ("delivered", "in flight") or step.fate in step.note else step.fate
        under = "; ".join(x for x in (" ".join(step.checks), step.detail, fate, step.note)
                          if x and step.arrival_of is None)
        if len(under) > DETAIL:             # it stays between the lifelines
            under = under[:DETAIL - 1] + "…"
        if under:
            out.append(f'<text x="{(LEFT + RIGHT) / 2:.0f}" y="{y + 22}" text-anchor="middle" font-size="10" '
                       f'fill="#64748b">{escape(under)}</text>')
        if step.conn:
            for x, side, anchor in ((LEFT - 10, "peer", "end"), (RIGHT + 10, "sut", "start")):
                state = step.states[side]
                if state:
                    out.append(f'<text x="{x}" y="{y + 4}" text-anchor="{anchor}" fill="#0f172a">{escape(state)}</text>')
        y += ROW - 16
    out.append("</svg>")
    return "\n".join(out)
