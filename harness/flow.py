"""Exchanges a case makes of many segments: an established connection, data
moved either way, a second endpoint on the same link.

Rules of this file:
- Built only on the Peer and the App: every segment is still one the case
  sends or one it matches, and a wrong answer fails with the requirement the
  case names.
- The peer acknowledges the SUT's data as a plain receiver does (each
  segment in order at once, an old or out-of-order one with RCV.NXT again),
  so that nothing looks like a loss to the SUT.
"""
from __future__ import annotations

import time

from .peer import Peer
from .segment import Segment, seq_diff
from .verdict import ConformanceFailure


def established(peer: Peer, app, requirement: str | None = None, **listen_options) -> tuple[int, int]:
    """The SUT listens and accepts a connection the peer opens: (listener id, connection id)."""
    listener = app.listen(peer.sut_port, **listen_options)
    peer.connect(requirement=requirement)
    return listener, app.accept(listener)


def another(stack, peer: Peer, port: int, rng=None) -> Peer:
    """A second peer endpoint on the same link, addresses and SUT port: it
    reads the trace from now on."""
    p = Peer(stack.link, stack.family, stack.peer_addr, stack.sut_addr, port, peer.sut_port, rng, peer.requirement)
    p.cursor = len(stack.trace.entries)
    return p


def receive(peer: Peer, nbytes: int, requirement: str, what: str, within: float = 2.0,
            window: int | None = None) -> list[Segment]:
    """Take `nbytes` octets of the SUT's data from RCV.NXT on, acknowledging
    every segment (with our window, or `window`); returns the segments that
    carried new data, in order. Fails if the data stops for `within` s."""
    __tracebackhide__ = True
    end = (peer.rcv_nxt + nbytes) % (1 << 32)
    got: list[Segment] = []
    while seq_diff(end, peer.rcv_nxt) > 0:
        had = peer.rcv_nxt
        seg = peer.next_segment(within=within)
        if seg is None:
            raise ConformanceFailure(requirement, what, f"{nbytes} octets of data",
                                     f"{seq_diff(peer.rcv_nxt, (end - nbytes) % (1 << 32))} octets, then nothing "
                                     f"for {within:g} s")
        if not seg.payload:
            continue
        if peer.rcv_nxt != had:
            got.append(seg)
        peer.send("A", window=window)
    return got


def full_segment(stack, peer: Peer) -> int:
    """The payload of a full-sized segment of ours, RFC 9293 §3.7.1's
    Eff.snd.MSS: the SUT's MSS (536 without its option), bounded by what our
    link carries (MMS_S, where the stack knows its MTU), less our timestamp
    option (RFC 6691)."""
    mss = peer.sut_mss or 536
    if stack.mtu:
        mss = min(mss, stack.mtu - (20 if peer.family == "ipv4" else 40) - 20)
    return mss - (12 if peer.ts_on else 0)


def stale(peer: Peer):
    """A `skip` predicate for Peer.expect: a segment that only repeats data
    the peer has (a retransmission, e.g. a tail loss probe sent before our
    last ACK reached the SUT)."""
    return lambda seg: bool(seg.payload) and not seg.fin and seq_diff(seg.end, peer.rcv_nxt) <= 0


def deliver(peer: Peer, data: bytes, requirement: str, what: str, mss: int = 1000, **send) -> None:
    """Send `data` in segments of at most `mss` octets (PSH on the last) and
    expect the SUT to acknowledge all of it (within ANSWER_WITHIN of the last)."""
    __tracebackhide__ = True
    for i in range(0, len(data), mss):
        chunk = data[i:i + mss]
        peer.send("PA" if i + mss >= len(data) else "A", data=chunk, **send)
    deadline = time.monotonic() + 1.0
    while True:
        seg = peer.next_segment(within=max(0.0, deadline - time.monotonic()))
        if seg is None:
            raise ConformanceFailure(requirement, what, f"an ACK of SND.NXT (ack {peer.rel_peer(peer.snd_nxt)})",
                                     "nothing")
        if seg.rst:
            raise ConformanceFailure(requirement, what, f"an ACK of SND.NXT (ack {peer.rel_peer(peer.snd_nxt)})",
                                     peer.describe(seg))
        if seg.has_ack and seg.ack == peer.snd_nxt:
            return


def right_edge(seg: Segment, peer: Peer) -> int:
    """SEG.ACK + SEG.WND of a segment of the SUT's (scaled as agreed)."""
    shift = peer.sut_wscale if (peer.sut_wscale is not None and not seg.syn) else 0
    return (seg.ack + (seg.window << min(shift, 14))) % (1 << 32)


def fill_window(peer: Peer, requirement: str, what: str, chunk: int = 1000, limit: int = 4 << 20,
                within: float = 1.0) -> list[Segment]:
    """Send data up to the SUT's latest right edge until it acknowledges all
    of it with a zero window (its application reads nothing meanwhile), or
    acknowledges part with a zero window and nothing more comes (the rest
    fell beyond a right edge that scaling granularity moved back: SND.NXT
    returns to SEG.ACK). Returns the SUT's segments seen on the way. Fails
    if the window does not close within `limit` octets, or if the SUT stops
    answering for `within` s."""
    __tracebackhide__ = True
    seen: list[Segment] = []
    edge = (peer.snd_una + (peer.sut_window or 0)) % (1 << 32)
    sent = 0
    last = None
    while True:
        room = seq_diff(edge, peer.snd_nxt)
        if room > 0:
            if sent >= limit:
                raise ConformanceFailure(requirement, what, "the window closes (SEG.WND = 0)",
                                         f"still {room} octets of window after {sent} octets")
            n = min(chunk, room)
            peer.send("A", data=bytes((sent + i) & 0xFF for i in range(n)))
            sent += n
            seg = peer.next_segment(within=0.0)
        else:
            seg = peer.next_segment(within=within)
            if seg is None and last is not None and last.window == 0:
                peer.snd_nxt = last.ack           # what we sent past a zero window was dropped
                return seen
            if seg is None:
                raise ConformanceFailure(requirement, what, "an ACK of all our data",
                                         f"nothing for {within:g} s with {seq_diff(peer.snd_nxt, peer.snd_una)} "
                                         "octets unacknowledged")
        if seg is None:
            continue
        seen.append(seg)
        if seg.has_ack:
            last = seg
            edge = right_edge(seg, peer)          # the latest right edge, as any sender keeps to
            if seg.ack == peer.snd_nxt and seg.window == 0:
                return seen
