"""The state x event matrix: which segments meet which states, and the cases that makes.

Rules of this file:
- Every cell is a state (RFC 9293's eleven), an event (a kind of segment)
  and a position (where its SEG.SEQ or SEG.ACK lies relative to the
  connection's variables). Events and positions are data, in the RFC's
  notation, like the rules they meet (harness/rules.py).
- A cell's case id is `matrix.<state>.<event>.<position>`, stable from run
  to run; its catalog entry (title, RFC sections, requirement ids, level)
  is computed from the rules: the rows that decide the cell on a model
  connection of that state. So a catalog entry can never disagree with the
  table it comes from.
- Positions are the boundaries where implementations go wrong: exactly
  RCV.NXT, inside the window, its last octet, one past it, one before
  RCV.NXT, far outside; acknowledgments at SND.NXT, SND.UNA, below SND.UNA,
  above SND.NXT and below RFC 5961's acceptable range. A position that
  coincides with another in a state (SND.UNA = SND.NXT when nothing is
  outstanding) is generated once.
- Pure: no IO. conformance/test_matrix.py runs the cells; the Connection
  (harness/connection.py) brings the SUT into each state.
"""
from __future__ import annotations

from dataclasses import dataclass

from .rules import ROWS, STATES, Expr, Segment, judge

# Events: the kinds of segment that arrive. (control bits, octets of text, words)
EVENTS = {
    "syn": ("S", 0, "a SYN"),
    "syn-ack": ("SA", 0, "a SYN-ACK"),
    "syn-fin": ("SF", 0, "a SYN with FIN"),
    "ack": ("A", 0, "an ACK"),
    "ack-data": ("PA", 1, "an ACK with one octet of data"),
    "fin": ("F", 0, "a FIN without ACK"),
    "fin-ack": ("FA", 0, "a FIN with ACK"),
    "data-fin-ack": ("FPA", 1, "one octet of data with FIN and ACK"),
    "rst": ("R", 0, "a RST"),
    "rst-ack": ("RA", 0, "a RST with ACK"),
    "no-flags": ("", 0, "a segment without control bits"),
}

# Where SEG.SEQ lies (synchronized states); SEG.ACK is the state's default.
SEQ_POSITIONS = {
    "rcv-nxt": ("RCV.NXT", "SEG.SEQ = RCV.NXT"),
    "in-window": ("RCV.NXT + RCV.WND // 2", "SEG.SEQ = RCV.NXT+RCV.WND/2, inside the window"),
    "window-last": ("RCV.NXT + RCV.WND - 1", "SEG.SEQ = RCV.NXT+RCV.WND-1, the window's last octet"),
    "past-window": ("RCV.NXT + RCV.WND", "SEG.SEQ = RCV.NXT+RCV.WND, one past the window"),
    "before-rcv-nxt": ("RCV.NXT - 1", "SEG.SEQ = RCV.NXT-1, an old duplicate"),
    "far": ("RCV.NXT + 1073741824", "SEG.SEQ = RCV.NXT+2^30, far outside the window"),
}
# Where SEG.ACK lies (SEG.SEQ = RCV.NXT), for events that carry an ACK.
ACK_POSITIONS = {
    "acks-snd-nxt": ("SND.NXT", "SEG.ACK = SND.NXT"),
    "acks-snd-una": ("SND.UNA", "SEG.ACK = SND.UNA"),
    "acks-below-snd-una": ("SND.UNA - 1", "SEG.ACK = SND.UNA-1, a duplicate"),
    "acks-above-snd-nxt": ("SND.NXT + 1", "SEG.ACK = SND.NXT+1, data never sent"),
    "acks-too-old": ("SND.UNA - MAX.SND.WND - 1", "SEG.ACK = SND.UNA-MAX.SND.WND-1, below RFC 5961's range"),
}
# CLOSED and LISTEN have no sequence variables yet: one position.
ANY = ("any", ("IRS", "ANY"), "")


@dataclass(frozen=True)
class Shape:
    """What the matrix needs to know of a state: its slug, the openings it
    is reached by (variants), whether one octet of the SUT's is outstanding
    (its SYN or FIN: SND.UNA = SND.NXT-1), the ACK the peer's segments
    carry by default, and a model connection to compute the rules on."""

    state: str
    variants: tuple = ("",)
    outstanding: bool = False
    default_ack: str = "SND.NXT"


SHAPES = {s.state: s for s in (
    Shape("CLOSED"),
    Shape("LISTEN"),
    Shape("SYN-SENT", outstanding=True),
    Shape("SYN-RECEIVED", ("passive", "simultaneous"), outstanding=True),
    Shape("ESTABLISHED", ("server", "client")),
    Shape("FIN-WAIT-1", outstanding=True, default_ack="SND.UNA"),
    Shape("FIN-WAIT-2"),
    Shape("CLOSE-WAIT"),
    Shape("CLOSING", outstanding=True, default_ack="SND.UNA"),
    Shape("LAST-ACK", outstanding=True, default_ack="SND.UNA"),
    Shape("TIME-WAIT"),
)}


def slug(state: str) -> str:
    return state.lower()


def model_tcb(state: str, variant: str = "") -> dict:
    """A connection of `state` with round numbers: the SUT's ISS 1000 and
    10 octets sent and acknowledged, the peer's ISS 5000, a 64 KB receive
    window and the peer's scaled window (65535 << 7) as MAX.SND.WND."""
    shape = SHAPES[state]
    if state in ("CLOSED", "LISTEN"):
        return {"IRS": 5000, "ANY": 77777, "PASSIVE": True}
    una = 1000 if state in ("SYN-SENT", "SYN-RECEIVED") else 1011
    nxt = una + 1 if shape.outstanding else una
    tcb = {"ISS": 1000, "IRS": 5000, "SND_UNA": una, "SND_NXT": nxt, "RCV_NXT": 5001, "RCV_WND": 65536,
           "MAX_SND_WND": 65535 << 7, "PASSIVE": variant != "simultaneous", "ANY": 77777}
    if state == "SYN-SENT":
        tcb.update(RCV_NXT=None, RCV_WND=None, MAX_SND_WND=None)
    if state == "SYN-RECEIVED":
        tcb.update(MAX_SND_WND=65535)
    if state in ("CLOSE-WAIT", "CLOSING", "LAST-ACK", "TIME-WAIT"):
        tcb["RCV_NXT"] = 5002          # after the peer's FIN
    return tcb


@dataclass(frozen=True)
class Cell:
    """One case of the matrix."""

    state: str
    event: str
    position: str
    seq: str                   # SEG.SEQ, in the notation
    ack: str                   # SEG.ACK, in the notation (ignored without ACK)
    where: str                 # the position in words

    @property
    def id(self) -> str:
        return f"matrix.{slug(self.state)}.{self.event}.{self.position}"

    @property
    def flags(self) -> str:
        return EVENTS[self.event][0]

    @property
    def text(self) -> int:
        return EVENTS[self.event][1]

    def segment(self, tcb: dict) -> Segment:
        """The event's segment on a connection with variables `tcb`."""
        env = {"True": True, "False": False, **tcb}
        seq = Expr(self.seq)(env)
        ack = Expr(self.ack)(env) if "A" in self.flags else 0
        return Segment(frozenset(self.flags), seq, ack, self.text)

    def judge(self, tcb: dict, overrides=()):
        return judge(self.state, tcb, self.segment(tcb), overrides)


def _cells_of(state: str) -> list[Cell]:
    shape = SHAPES[state]
    out = []
    for event, (flags, _, _) in EVENTS.items():
        if state in ("CLOSED", "LISTEN"):
            out.append(Cell(state, event, ANY[0], *ANY[1], "any sequence number"))
            continue
        if state == "SYN-SENT":
            if "A" in flags:
                for pos in ("acks-snd-nxt", "acks-snd-una", "acks-above-snd-nxt"):
                    ack, where = ACK_POSITIONS[pos]
                    out.append(Cell(state, event, pos, "IRS", ack, where))
            else:
                out.append(Cell(state, event, ANY[0], "IRS", "ANY", "any sequence number"))
            continue
        for pos, (seq, where) in SEQ_POSITIONS.items():
            out.append(Cell(state, event, pos, seq, shape.default_ack, where))
        if "A" in flags:
            for pos, (ack, where) in ACK_POSITIONS.items():
                if ack == shape.default_ack or (pos == "acks-snd-una" and not shape.outstanding):
                    continue           # the same SEG.ACK as a cell above
                out.append(Cell(state, event, pos, "RCV.NXT", ack, where))
    return out


CELLS = tuple(c for s in STATES for c in _cells_of(s))
BY_ID = {c.id: c for c in CELLS}


# --- the catalog entries --------------------------------------------------------------------------

def _rfc_ref(source: str) -> str:
    """RFC9293/3.10.7.4 -> 'RFC 9293 §3.10.7.4'; a requirement id (SHLD-31)
    points at the section of the rules, §3.10.7.4."""
    rfc, _, sec = source.partition("/")
    number = rfc[3:]
    if not sec[:1].isdigit():
        sec = "3.10.7.4"
    return f"RFC {number} §{sec}"


def _outcome_words(state: str, j) -> str:
    rows = j.rfc.rows
    answers = [ROWS[r.id].answer for r in rows if ROWS[r.id].answer != "nothing"]
    said = " then ".join(dict.fromkeys(answers)) or "nothing"
    if j.rfc.optional:
        said += " (MAY)"
    after = j.rfc.next
    return f"draws {said}" + (f", enters {after}" if after != state else f", stays in {state}")


def catalog_entry(cell: Cell) -> dict:
    """The cell's catalog entry, from the rows that decide it on a model
    connection (RFC 9293's rules with RFC 5961, no stack's overrides)."""
    variant = SHAPES[cell.state].variants[0]
    j = cell.judge(model_tcb(cell.state, variant))
    rows = j.rfc.rows
    sources = list(dict.fromkeys([j.rfc.decided_by.source, *(r.source for r in rows),
                                  *(a for r in rows for a in r.also)]))
    level = j.rfc.decided_by.level
    event = EVENTS[cell.event][2]
    where = f" with {cell.where}" if cell.where != "any sequence number" else ""
    title = f"{cell.state}, {event}{where}: {_outcome_words(cell.state, j)}"
    description = "\n".join(f"- {r.id}: {r.text} ({r.source})" for r in rows)
    return {"id": cell.id, "title": title, "rfc": list(dict.fromkeys(_rfc_ref(s) for s in sources)),
            "requirements": sources, "seed": [], "level": level,
            "description": f"Generated from harness/rules.py; the rows that decide this cell:\n{description}"}


def catalog_entries() -> list[dict]:
    return [catalog_entry(c) for c in CELLS]
