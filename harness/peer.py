"""The Peer: the tester's TCP endpoint, played by hand, one segment at a time.

Rules of this file:
- The Peer keeps the RFC 9293 send and receive variables of its side of one
  connection (ISS, SND.UNA, SND.NXT; IRS, RCV.NXT) and fills them in as the
  case sends and expects segments, so a case reads like an RFC figure:
  `peer.send("S")`, `peer.expect("SA", ack=peer.iss + 1)`.
- It never answers anything on its own. Every segment the SUT sees is one
  the case sent; every segment the SUT sends is matched by the case.
- `expect` returns the next segment of this connection if it matches and
  fails the case if it does not (expected beside seen, the requirement
  named). Segments of other connections are left for their own Peers: all
  Peers of a case read the one Trace, each with its own cursor.
- Every segment the SUT sends is checksum-verified (RFC 9293 MUST-2).
- Matching asserts the requirement, not incidentals: the control bits SYN,
  ACK, FIN and RST must be exactly as given; PSH, URG, ECE and CWR are
  checked only when the expectation names them.
"""
from __future__ import annotations

import random
import time

from scapy.layers.inet import IP, TCP
from scapy.layers.inet6 import IPv6

from . import steps
from .link import Link
from .segment import MOD, Segment, flags_of, seq_add, seq_diff, tcpdump_flags
from .verdict import ConformanceFailure, require_expiry

CONTROL = frozenset("SAFR")
ANSWER_WITHIN = 0.5          # seconds: an immediate answer, well inside the 1 s initial RTO
# What a current Linux or BSD client puts on its SYN.
DEFAULT_SYN_OPTIONS = (("MSS", 1460), ("SAckOK", b""), ("Timestamp", (0, 0)), ("NOP", None), ("WScale", 7))


def _scapy_flags(flags: frozenset) -> str:
    return "".join(f for f in "FSRPAUEC" if f in flags)


class Peer:
    def __init__(self, link: Link, family: str, addr: str, sut_addr: str, port: int,
                 sut_port: int | None, rng: random.Random | None = None, requirement: str = "RFC9293"):
        self.link = link
        self.trace = link.trace
        self.family = family
        self.addr, self.port = addr, port
        self.sut_addr, self.sut_port = sut_addr, sut_port
        self.requirement = requirement
        rng = rng or random.Random()
        # Send sequence variables (RFC 9293 §3.3.1)
        self.iss = rng.getrandbits(32)
        self.snd_una = self.snd_nxt = self.iss
        self.window = 65535
        # Receive sequence variables
        self.irs: int | None = None
        self.rcv_nxt: int | None = None
        # What the SUT announced
        self.sut_window = None
        self.sut_mss = None
        self.sut_wscale = None
        self.sack_ok = False
        # Options of our SYN, and what was agreed
        # our MSS is what an MTU of 1500 carries (MMS_R - 20, MUST-67): 1440 over IPv6
        self.syn_options = [("MSS", 1440) if o[0] == "MSS" and family == "ipv6" else o for o in DEFAULT_SYN_OPTIONS]
        self.ts_on = False
        self.ts_recent = 0
        self._ts_base = rng.getrandbits(31)
        self._t0 = time.monotonic()
        self._offered: set = set()
        self._sut_syn: Segment | None = None
        self.cursor = 0

    # --- variables -----------------------------------------------------------------
    def tsval(self) -> int:
        return (self._ts_base + int((time.monotonic() - self._t0) * 1000)) % MOD

    def advance_ts_clock(self, ms: int) -> None:
        """Move the peer's timestamp clock `ms` milliseconds ahead (a host
        that kept running, a newer incarnation): every later TSval is newer."""
        self._ts_base = (self._ts_base + ms) % MOD

    def rel_sut(self, n: int) -> int:
        """A sequence number of the SUT's, relative to IRS."""
        return (n - self.irs) % MOD if self.irs is not None else n

    def rel_peer(self, n: int) -> int:
        """A sequence number of ours, relative to ISS."""
        return (n - self.iss) % MOD

    # --- sending ----------------------------------------------------------------------
    def packet(self, flags: str = "A", seq: int | None = None, ack: int | None = None, data: bytes = b"",
               window: int | None = None, options=None, urgptr: int = 0):
        """The segment `send` would send, as a Scapy packet (not sent)."""
        fl = flags_of(flags)
        if seq is None:
            seq = self.snd_nxt
        if ack is None:
            ack = self.rcv_nxt if ("A" in fl and self.rcv_nxt is not None) else 0
        if options is None:
            options = self._syn_options("A" in fl) if "S" in fl else []
        options = list(options)
        if self.ts_on and "R" not in fl and not any(n == "Timestamp" for n, _ in options):
            options += [("NOP", None), ("NOP", None), ("Timestamp", (self.tsval(), self.ts_recent))]
        ip = (IP(src=self.addr, dst=self.sut_addr) if self.family == "ipv4"
              else IPv6(src=self.addr, dst=self.sut_addr))
        tcp = TCP(sport=self.port, dport=self.sut_port, flags=_scapy_flags(fl), seq=seq % MOD,
                  ack=ack % MOD, window=self.window if window is None else window, options=options,
                  urgptr=urgptr)
        return ip / tcp / data if data else ip / tcp

    def _syn_options(self, synack: bool) -> list:
        """Our SYN's options; on a SYN-ACK, TSecr echoes the SUT's SYN (RFC 7323 §3.2)."""
        out = []
        for name, value in self.syn_options:
            if name == "Timestamp":
                value = (self.tsval(), self.ts_recent if synack else 0)
            out.append((name, value))
        return out

    def send(self, flags: str = "A", seq: int | None = None, ack: int | None = None, data: bytes = b"",
             window: int | None = None, options=None, urgptr: int = 0) -> Segment:
        """Send one segment. With `seq` omitted it is sent at SND.NXT, which
        then advances by SEG.LEN; with `seq` given (an old duplicate, a probe)
        no variable changes. `ack` defaults to RCV.NXT when ACK is set."""
        advance = seq is None
        pkt = self.packet(flags, seq, ack, data, window, options, urgptr)
        tcp = pkt[TCP]
        if "S" in str(tcp.flags):
            self._offered = {n for n, _ in tcp.options}
            if "A" in str(tcp.flags):            # our SYN-ACK settles what the SUT's SYN offered
                self._agree(self._sut_syn)
        seg = self.link.send(bytes(pkt))
        if advance:
            self.snd_nxt = seq_add(tcp.seq, len(data) + ("S" in str(tcp.flags)) + ("F" in str(tcp.flags)))
        return seg

    # --- receiving ----------------------------------------------------------------------
    def mine(self, e) -> bool:
        """`e` is a segment the SUT sent on this connection."""
        return (isinstance(e, Segment) and e.sent_by == "sut" and e.src == self.sut_addr
                and e.dst == self.addr and e.dport == self.port
                and (self.sut_port is None or e.sport == self.sut_port))

    def _next(self, deadline: float) -> Segment | None:
        """The next segment the SUT sent on this connection, waiting until
        `deadline` for it; None if none came."""
        while True:
            entries = self.trace.entries
            while self.cursor < len(entries):
                e = entries[self.cursor]
                self.cursor += 1
                if self.mine(e):
                    if not e.checksum_ok:
                        raise ConformanceFailure("RFC9293/MUST-2", "the SUT sent a segment with a wrong TCP checksum",
                                                 "a checksum that verifies", self.describe(e))
                    if self.sut_port is None:
                        self.sut_port = e.sport
                    return e
            if not self.link.poll(deadline):
                return None

    @steps.check(steps.expectation)
    def expect(self, flags: str, seq: int | None = None, ack: int | None = None, data: bytes | None = None,
               within: float = ANSWER_WITHIN, requirement: str | None = None, what: str | None = None,
               skip=None) -> Segment:
        """Wait up to `within` seconds for the SUT's next segment on this
        connection and check it: control bits, and seq, ack and payload where
        given. Segments for which `skip(seg)` is true are passed over, and so
        is a retransmission of a segment the SUT sent before (its SYN, FIN or
        data again) that is not the one expected: a tester slowed down by a
        busy machine may answer later than the SUT's retransmission timer.

        The default suits an answer the stack gives at once: it is shorter
        than any initial RTO, so a timer's retransmission cannot pass for
        the answer. A case that waits on a timer gives `within`."""
        __tracebackhide__ = True
        want = flags_of(flags)
        deadline = time.monotonic() + within
        requirement = requirement or self.requirement
        expected = self.describe_expected(want, seq, ack, data)
        while True:
            seg = self._next(deadline)
            if seg is None:
                raise ConformanceFailure(requirement, what or f"no segment from the SUT within {within:g} s",
                                         expected, "nothing")
            problems = self.mismatch(seg, want, seq, ack, data)
            if (skip is not None and skip(seg)) or (problems and self.retransmitted(seg)):
                self._learn(seg)
                continue
            if problems:
                raise ConformanceFailure(requirement, what or "the SUT sent another segment than required",
                                         expected, f"{self.describe(seg)}   <- {'; '.join(problems)}")
            self._learn(seg)
            return seg

    @steps.check(steps.silence)
    def expect_none(self, within: float | None = None, requirement: str | None = None, what: str | None = None,
                    skip=None, until: float | None = None) -> None:
        """Assert that the SUT sends nothing on this connection for `within`
        seconds (or until the monotonic time `until`)."""
        __tracebackhide__ = True
        deadline = until if until is not None else time.monotonic() + within
        within = max(0.0, deadline - time.monotonic())
        while True:
            seg = self._next(deadline)
            if seg is None:
                return
            if skip is not None and skip(seg):
                continue
            raise ConformanceFailure(requirement or self.requirement,
                                     what or f"the SUT sent a segment where it must stay silent for {within:g} s",
                                     f"nothing for {within:g} s", self.describe(seg))

    def next_segment(self, within: float = 1.0, skip=None) -> Segment | None:
        """The SUT's next segment on this connection, unchecked (None if none
        came within `within` seconds); segments for which `skip(seg)` is true
        are passed over."""
        deadline = time.monotonic() + within
        while True:
            seg = self._next(deadline)
            if seg is not None:
                self._learn(seg)
            if seg is None or skip is None or not skip(seg):
                return seg

    def retransmitted(self, seg: Segment) -> bool:
        """`seg` repeats a segment the SUT sent before on this connection
        that occupies sequence space (its SYN, FIN or data, same SEG.SEQ,
        control bits and text): a retransmission timer's, not an answer."""
        if not (seg.syn or seg.fin or seg.payload):
            return False
        for e in self.trace.entries:
            if e is seg:
                return False
            if (self.mine(e) and e.seq == seg.seq and e.payload == seg.payload
                    and e.flags & CONTROL == seg.flags & CONTROL):
                return True
        return False

    @staticmethod
    def mismatch(seg: Segment, want: frozenset, seq=None, ack=None, data=None) -> list[str]:
        problems = []
        got = seg.flags
        if (got & CONTROL) != (want & CONTROL) or not (want - CONTROL) <= got:
            problems.append(f"flags [{tcpdump_flags(got)}] instead of [{tcpdump_flags(want)}]")
        if seq is not None and seg.seq != seq % MOD:
            problems.append(f"SEG.SEQ off by {seq_diff(seg.seq, seq):+d}")
        if ack is not None and seg.ack != ack % MOD:
            problems.append(f"SEG.ACK off by {seq_diff(seg.ack, ack):+d}")
        if data is not None and seg.payload != data:
            problems.append(f"payload {seg.payload[:32]!r} ({len(seg.payload)} octets) instead of "
                            f"{data[:32]!r} ({len(data)} octets)")
        return problems

    def _learn(self, seg: Segment) -> None:
        advances = seg.syn or (seg.seg_len > 0 and seg.seq == self.rcv_nxt)
        if seg.syn:
            self.irs = seg.seq
            self.rcv_nxt = seq_add(seg.seq, 1)
            self.sut_mss = seg.option("MSS")
            self._sut_syn = seg
            ts = seg.option("Timestamp")
            if ts is not None:
                self.ts_recent = ts[0]
            if seg.has_ack:                      # the SUT's SYN-ACK settles what our SYN offered
                self._agree(seg)
        elif self.rcv_nxt is not None and seg.seq == self.rcv_nxt:
            self.rcv_nxt = seq_add(self.rcv_nxt, len(seg.payload) + seg.fin)
        if seg.has_ack and 0 < seq_diff(seg.ack, self.snd_una) <= seq_diff(self.snd_nxt, self.snd_una):
            self.snd_una = seg.ack
        # TS.Recent echoes the segment that advanced the left edge (RFC 7323
        # §4.3): pure ACKs, duplicates and out-of-order segments do not count.
        ts = seg.option("Timestamp")
        if self.ts_on and ts is not None and advances:
            self.ts_recent = ts[0]
        shift = self.sut_wscale if (self.sut_wscale is not None and not seg.syn) else 0
        self.sut_window = seg.window << min(shift, 14)

    def _agree(self, syn: Segment | None) -> None:
        """Window scale, SACK and timestamps are on when both SYNs carried them."""
        if syn is None:
            return
        ws = syn.option("WScale")
        self.sut_wscale = ws if (ws is not None and "WScale" in self._offered) else None
        self.sack_ok = syn.has_option("SAckOK") and "SAckOK" in self._offered
        self.ts_on = syn.has_option("Timestamp") and "Timestamp" in self._offered

    # --- composite exchanges ---------------------------------------------------------------
    def connect(self, requirement: str | None = None) -> Segment:
        """Active open from the peer: SYN, the SUT's SYN-ACK, the third ACK."""
        __tracebackhide__ = True
        self.send("S")
        synack = self.expect("SA", ack=self.iss + 1, requirement=requirement,
                             what="a listening SUT answers a SYN with a SYN-ACK")
        self.send("A")
        return synack

    def accept(self, requirement: str | None = None, within: float = 2.0) -> Segment:
        """Passive open at the peer: the SUT's SYN, our SYN-ACK, the SUT's ACK."""
        __tracebackhide__ = True
        syn = self.expect("S", within=within, requirement=requirement, what="the SUT's SYN of an active open")
        self.send("SA")
        self.expect("A", seq=self.rcv_nxt, ack=self.snd_nxt, requirement=requirement,
                    what="the SUT completes the handshake with an ACK")
        return syn

    def probe_while(self, send, flags: str, seq: int | None = None, ack: int | None = None, *,
                    start: float, expected: float, tolerance, requirement: str, what: str) -> tuple[float, Segment]:
        """Watch a state that a timer ends, `expected` seconds after the
        monotonic time `start`, from the wire: call `send()` (it sends one
        probe segment and returns it) every quarter of the tolerance for as
        long as the SUT answers each probe with the segment given (flags,
        seq, ack) and sends nothing else. Fails (require_expiry) when the
        state is still there later than the tolerance allows. Returns
        (alive, probe): how long after `start` the last probe answered so
        was sent (0 if none was), and the probe that was answered otherwise,
        or not at all (within ANSWER_WITHIN: a slow SUT's late answer is
        still an answer); that answer is left unread, so the case's next
        `expect` judges it, and require_expiry(alive, its time - start, ...)
        when the timer ended."""
        __tracebackhide__ = True
        want = flags_of(flags)
        every = tolerance.allowed(expected) / 4
        until = start + expected + 2 * tolerance.allowed(expected)
        alive = start
        while True:
            probe = send()
            mark = self.cursor
            seg = self._next(probe.t + max(every, ANSWER_WITHIN))
            if seg is None or self.mismatch(seg, want, seq, ack) or seg.t >= until:
                self.cursor = mark
                require_expiry(alive - start, None, expected, tolerance, requirement, what)
                return alive - start, probe
            self._learn(seg)
            alive = probe.t
            self.expect_none(until=probe.t + every, what="nothing but the answer to each probe")

    # --- rendering ----------------------------------------------------------------------------
    def describe(self, seg: Segment) -> str:
        """A segment in tcpdump notation, relative numbers (ISS/IRS based),
        with the absolute ones after it."""
        mine = seg.sent_by == "peer"
        seq_base = self.iss if mine else self.irs
        ack_base = self.irs if mine else self.iss
        parts = [f"Flags [{tcpdump_flags(seg.flags)}]"]
        absparts = []
        n = len(seg.payload)
        if n or seg.syn or seg.fin or seg.rst:
            s = (seg.seq - seq_base) % MOD if seq_base is not None else seg.seq
            parts.append(f"seq {s}:{s + n}" if n else f"seq {s}")
            absparts.append(f"seq {seg.seq}")
        if seg.has_ack:
            a = (seg.ack - ack_base) % MOD if ack_base is not None else seg.ack
            parts.append(f"ack {a}")
            absparts.append(f"ack {seg.ack}")
        parts.append(f"win {seg.window}")
        parts.append(f"length {n}")
        who = "peer > sut" if mine else "sut > peer"
        return f"{seg.t - self.trace.t0:.6f} {who}: {', '.join(parts)}  (-S: {', '.join(absparts) or 'no seq/ack'})"

    def describe_expected(self, want: frozenset, seq=None, ack=None, data=None) -> str:
        parts = [f"Flags [{tcpdump_flags(want)}]"]
        absparts = []
        if seq is not None:
            parts.append(f"seq {self.rel_sut(seq)}" if self.irs is not None else f"seq {seq % MOD}")
            absparts.append(f"seq {seq % MOD}")
        if ack is not None:
            parts.append(f"ack {self.rel_peer(ack)}")
            absparts.append(f"ack {ack % MOD}")
        if data is not None:
            parts.append(f"length {len(data)}")
        return f"sut > peer: {', '.join(parts)}" + (f"  (-S: {', '.join(absparts)})" if absparts else "")
