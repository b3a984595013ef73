"""The Trace: every packet both ways, in order, with its timestamp.

Rules of this file:
- The Trace is the single record of a case. Links append to it; Peers read
  from it (each Peer keeps its own cursor, so several connections share one
  Trace); renderers turn it into text, pictures and pcaps. Nothing else keeps
  a copy of the packets.
- Pure: no IO except writing the pcap file a caller asks for.
- Timestamps are the Link's (monotonic seconds); t0 is when the case started.
- What the link lost is kept apart (`dropped`): a packet a link filter
  removed never reached the tester, so Peers, tcpdump views and pcaps do not
  see it; the ladder and the diagram show it as lost (XXX). A case may mark a
  segment it knows more about (`mark`: delayed, lost, a note); the checks of
  harness.steps number the segments they judged (`checked`).

Views of a trace: `tcpdump(relative=True)` (tcpdump's default relative
sequence numbers), `tcpdump(relative=False)` (as `tcpdump -S`), `pcap()`,
and the RFC ladder and SVG diagram in `harness.render`.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

from scapy.layers.inet import IP
from scapy.layers.inet6 import IPv6
from scapy.utils import PcapWriter

from .segment import Segment, tcpdump_line

LINKTYPE_RAW = 101  # raw IPv4/IPv6, no link-layer header (pcap-linktype(7))


@dataclass(frozen=True)
class Other:
    """A packet that carries no TCP segment (ICMP, neighbour discovery...)."""

    raw: bytes
    t: float
    sent_by: str

    def summary(self) -> str:
        if not self.raw:
            return "empty packet"
        version = self.raw[0] >> 4
        pkt = IP(self.raw) if version == 4 else IPv6(self.raw) if version == 6 else None
        return pkt.summary() if pkt is not None else f"{len(self.raw)} bytes, not IP"


class Trace:
    def __init__(self, t0: float | None = None):
        self.t0 = time.monotonic() if t0 is None else t0
        self.entries: list[Segment | Other] = []
        self.names: dict = {}        # (addr, port) -> display name, optional
        self.dropped: list[tuple[int, Segment | Other]] = []   # (position in entries, packet)
        self.marks: dict[int, tuple[str | None, str]] = {}    # entry index -> (fate, note)
        self.checks: dict[int, list[str]] = {}                # entry index -> the checks that judged it ("#3")

    def add(self, raw: bytes, t: float, sent_by: str) -> Segment | Other:
        entry = Segment.parse(raw, t, sent_by) or Other(raw, t, sent_by)
        self.entries.append(entry)
        return entry

    def drop(self, raw: bytes, t: float, sent_by: str) -> None:
        """A packet the link lost before the tester saw it (a link fault)."""
        self.dropped.append((len(self.entries), Segment.parse(raw, t, sent_by) or Other(raw, t, sent_by)))

    def mark(self, entry, fate: str | None = None, note: str = ""):
        """Say what the case knows about a packet: fate "delayed" (it arrives
        late or out of order, e.g. an old duplicate) or "lost" (the receiver
        dropped or rejected it), and a note for the ladder. Returns the entry."""
        if fate not in (None, "delayed", "lost"):
            raise ValueError(f"fate is 'delayed', 'lost' or None, not {fate!r}")
        for i, e in enumerate(self.entries):
            if e is entry:
                self.marks[i] = (fate, note)
                return entry
        raise ValueError("mark: not an entry of this trace")

    def checked(self, entry, label: str) -> None:
        """A check of the case (harness.steps) judged this packet: the ladder
        and the diagram mark it with the check's label ("#3", "#7 ✗")."""
        for i in range(len(self.entries) - 1, -1, -1):
            if self.entries[i] is entry:
                self.checks.setdefault(i, []).append(label)
                return

    def __len__(self) -> int:
        return len(self.entries)

    def segments(self) -> list[Segment]:
        return [e for e in self.entries if isinstance(e, Segment)]

    # --- relative numbering, as tcpdump does it ---------------------------------
    def bases(self) -> list[tuple[int | None, int | None]]:
        """For each entry, the (seq_base, ack_base) tcpdump would use: the first
        segment of each direction of a connection is printed absolute and sets
        that direction's base; later ones are relative to it (ack relative to
        the reverse direction's base)."""
        first_seq: dict[tuple, int] = {}
        out = []
        for e in self.entries:
            if not isinstance(e, Segment):
                out.append((None, None))
                continue
            key = e.tuple()
            rev = (key[2], key[3], key[0], key[1])
            if key not in first_seq:
                first_seq[key] = e.seq
                out.append((None, None))
                continue
            out.append((first_seq[key], first_seq.get(rev)))
        return out

    def isn(self, sent_by: str, key: tuple | None = None) -> int | None:
        """The ISN of the first SYN sent by `sent_by` (on connection `key`)."""
        for e in self.entries:
            if isinstance(e, Segment) and e.sent_by == sent_by and e.syn and (key is None or e.tuple() == key):
                return e.seq
        return None

    # --- views ------------------------------------------------------------------------
    def line(self, e, relative: bool = True, bases=None) -> str:
        if isinstance(e, Other):
            return f"{e.t - self.t0:10.6f} {'>' if e.sent_by == 'peer' else '<'} {e.summary()}"
        sb, ab = bases if (relative and bases) else (None, None)
        return tcpdump_line(e, self.t0, sb, ab, self.names)

    def tcpdump(self, relative: bool = True) -> str:
        bases = self.bases() if relative else [None] * len(self.entries)
        return "\n".join(self.line(e, relative, b) for e, b in zip(self.entries, bases))

    def text(self) -> str:
        """Both views, as printed under a failed case."""
        if not self.entries:
            return "(no packets)"
        return ("relative sequence numbers (tcpdump):\n" + self.tcpdump(True)
                + "\n\nabsolute sequence numbers (tcpdump -S):\n" + self.tcpdump(False))

    def pcap(self, path: str) -> str:
        """Write the trace as a pcap (raw IP link type) with the real
        timestamps; Wireshark and Scapy's rdpcap read it."""
        wall = time.time() - time.monotonic()   # monotonic -> wall clock
        with PcapWriter(path, linktype=LINKTYPE_RAW, sync=False) as w:
            w.write_header(None)
            for e in self.entries:
                ts = e.t + wall
                sec = int(ts)
                w.write_packet(e.raw, sec=sec, usec=min(999999, int((ts - sec) * 1e6)))
        return path
