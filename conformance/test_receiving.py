"""How the SUT acknowledges what it receives (RFC 9293 §3.8.6.3, §3.10.7.4):
delayed ACKs below half a second, an ACK at least every second full-sized
segment, fewer ACKs than segments for a burst, out-of-order segments held
and acknowledged at once.

The peer sends; the SUT's application reads everything at the end, where
the case checks that the data arrived whole and in order."""
import time

import pytest

from harness.flow import established, full_segment
from harness.segment import seq_add, seq_diff
from harness.verdict import TimingFailure, require

ACK_DELAY_LIMIT = 0.5           # RFC 9293 §3.8.6.3 (MUST-40)
SMALL = 100                     # octets of a small segment
SPACING = 0.02                  # between segments the SUT must treat one by one


def _acks_of(peer, sent_seg, within: float):
    """Wait for the ACK that covers `sent_seg`; the time the SUT held it
    (the round trip of a path the link adds is not the SUT's)."""
    end = sent_seg.end
    deadline = time.monotonic() + within
    while True:
        seg = peer.next_segment(within=max(0.0, deadline - time.monotonic()))
        if seg is None:
            return None
        if seg.has_ack and seq_diff(seg.ack, end) >= 0:
            return seg.t - sent_seg.t - peer.link.path_time(sent_seg.raw, "peer") - peer.link.path_time(seg.raw, "sut")



def _read_all(app, conn, data: bytes, requirement: str) -> None:
    got = app.recv_exactly(conn, len(data), timeout=2.0)
    require(got == data, requirement, "the application reads every octet, in order",
            f"{len(data)} octets as sent", f"{len(got)} octets" + (" (other data)" if data[:len(got)] != got else ""))


# --- SHLD-18, MUST-40 ------------------------------------------------------------------------

@pytest.mark.case("ack.delayed")
@pytest.mark.requires("app")
def test_lone_segments_are_acknowledged_within_half_a_second(stack, peer, app, profile, tolerance, observed):
    """Small segments one at a time: each is acknowledged within 0.5 s, and (past any quick-ACK start) with a delay."""
    b = profile.behaviour("ack.delayed")
    listener, conn = established(peer, app)
    delays = []
    data = b""
    for n in range(24):
        chunk = bytes([n]) * SMALL
        sent = peer.send("PA", data=chunk)
        data += chunk
        delay = _acks_of(peer, sent, tolerance.latest(ACK_DELAY_LIMIT))
        require(delay is not None, "RFC9293/MUST-40", f"segment {n + 1} is acknowledged within 0.5 s",
                f"an ACK of {peer.rel_peer(sent.end)} within {ACK_DELAY_LIMIT} s", "none")
        if delay > tolerance.latest(ACK_DELAY_LIMIT):
            raise TimingFailure("RFC9293/MUST-40", f"the ACK of segment {n + 1} comes within 0.5 s",
                                f"<= {ACK_DELAY_LIMIT} s + {tolerance.allowed(ACK_DELAY_LIMIT):.3f} s", f"{delay:.3f} s")
        delays.append(round(delay, 4))
    observed["ack_delays"] = delays
    _read_all(app, conn, data, "RFC9293/MUST-40")
    delayed = [d for d in delays if d >= profile.value("delayed_ack_min") / 2]
    want = b["answer"] == "delayed"
    require(bool(delayed) == want, b["rule"],
            f"documented: {'some ACKs wait for the delayed-ACK timer' if want else 'every segment is acknowledged at once'}"
            f" ({b['note']})", f"ACK delays {'>=' if want else '<'} {profile.value('delayed_ack_min') / 2:g} s",
            f"delays {delays}")
    profile.conclude(b)


# --- SHLD-19 -----------------------------------------------------------------------------------

@pytest.mark.case("ack.every-second-segment")
@pytest.mark.requires("app")
def test_full_segments_are_acknowledged_at_least_every_second(stack, peer, app, observed):
    """Full-sized segments one by one: no ACK covers more than two of them."""
    listener, conn = established(peer, app)
    mss = full_segment(stack, peer)
    data, sent = b"", []
    for n in range(16):
        chunk = bytes([n]) * mss
        sent.append(peer.send("A", data=chunk))
        data += chunk
        peer.expect_none(within=SPACING, skip=lambda s: not s.payload)   # the SUT's ACKs are read below
    peer.expect_none(within=0.3, skip=lambda s: not s.payload)          # and a delayed last one
    acks = [e.ack for e in peer.trace.entries if peer.mine(e) and e.has_ack and not e.syn and not e.payload]
    start = sent[0].seq
    covered = [seq_diff(a, start) // mss for a in acks if seq_diff(a, start) > 0]
    steps = [b - a for a, b in zip([0] + covered, covered)]
    observed["segments_per_ack"] = steps
    require(covered and covered[-1] == len(sent), "RFC9293/SHLD-19", "every full-sized segment is acknowledged",
            f"an ACK of all {len(sent)} segments", f"ACKs up to segment {covered[-1] if covered else 0}")
    require(max(steps) <= 2, "RFC9293/SHLD-19",
            "an ACK is sent for at least every second full-sized segment",
            "each ACK covers at most 2 new full-sized segments", f"segments per ACK {steps}")
    _read_all(app, conn, data, "RFC9293/SHLD-19")


# --- MUST-58, MUST-59 ---------------------------------------------------------------------------

@pytest.mark.case("ack.aggregated")
@pytest.mark.requires("app")
def test_a_burst_draws_fewer_acks_than_segments(stack, peer, app, profile, observed):
    """Full-sized segments back to back: the SUT acknowledges the burst with fewer ACKs than segments."""
    b = profile.behaviour("ack.burst")
    listener, conn = established(peer, app)
    mss = full_segment(stack, peer)
    warm = profile.value("quickack_segments")
    data = b""
    for n in range(warm + 20):
        chunk = bytes([n & 0xFF]) * mss
        peer.send("A", data=chunk)
        data += chunk
    last = peer.snd_nxt
    acks = []
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        seg = peer.next_segment(within=max(0.0, deadline - time.monotonic()))
        if seg is None:
            break
        if seg.has_ack and not seg.payload:
            acks.append(seg)
            if seg.ack == last:
                break
    burst = [a for a in acks if seq_diff(a.ack, seq_add(peer.iss + 1, warm * mss)) > 0]
    observed["acks_for_the_last_20_segments"] = len(burst)
    require(acks and acks[-1].ack == last, "RFC9293/MUST-58", "the burst is acknowledged in full",
            f"an ACK of {peer.rel_peer(last)}", peer.describe(acks[-1]) if acks else "no ACK")
    most = 19 if b["answer"] == "fewer" else 20
    require(len(burst) <= most, b["rule"],
            f"ACKs are aggregated: 20 full segments back to back (after the {warm} of a quick-ACK start) draw "
            f"at most {most} ACKs ({b['note']})", f"at most {most} ACKs", f"{len(burst)} ACKs")
    _read_all(app, conn, data, "RFC9293/MUST-59")
    profile.conclude(b)


# --- SHLD-31, MAY-13 ----------------------------------------------------------------------------

@pytest.mark.case("ack.out-of-order")
@pytest.mark.requires("app")
def test_out_of_order_segment_is_held_and_acknowledged_at_once(stack, peer, app, profile):
    """The second segment first: an immediate duplicate ACK; then the first: one ACK covers both."""
    b = profile.behaviour("ack.out-of-order")
    listener, conn = established(peer, app)
    one, two = b"first segment, sent second. ", b"second segment, sent first."
    start = peer.snd_nxt
    peer.send("PA", seq=seq_add(start, len(one)), data=two)
    if b["answer"] == "dup-ack":
        peer.expect("A", seq=peer.rcv_nxt, ack=start, requirement=b["rule"],
                    what=f"an out-of-order segment draws an immediate ACK of RCV.NXT ({b['note']})")
    else:
        peer.expect_none(within=0.2, requirement=b["rule"], what=f"documented: no ACK yet ({b['note']})")
    peer.send("A", data=one)
    peer.snd_nxt = seq_add(start, len(one) + len(two))
    peer.expect("A", seq=peer.rcv_nxt, ack=peer.snd_nxt, requirement="RFC9293/SHLD-31",
                what="the out-of-order segment was held: the hole filled, one ACK covers both",
                skip=lambda s: s.has_ack and s.ack == start and not s.payload)
    _read_all(app, conn, one + two, "RFC9293/SHLD-31")
    profile.conclude(b)


# --- MAY-12 --------------------------------------------------------------------------------------

@pytest.mark.case("ack.blind-data-injection")
@pytest.mark.requires("app")
def test_data_with_an_ack_far_below_snd_una(stack, peer, app, profile):
    """Data whose SEG.ACK lies far below SND.UNA (a blind injection, RFC 5961 §5.2): dropped and answered with
    an ACK, as the profile documents; the same data with an acceptable ACK is then delivered once."""
    b = profile.behaviour("ack.below-window")
    listener, conn = established(peer, app)
    data = b"injected by someone who cannot see the connection"
    start = peer.snd_nxt
    peer.send("PA", data=data, ack=peer.rcv_nxt - 100_000)
    seg = peer.expect("A", seq=peer.rcv_nxt, requirement=b["rule"],
                      what=f"an ACK outside SND.UNA - MAX.SND.WND .. SND.NXT draws an ACK ({b['note'][:60]}...)")
    if b["answer"] == "challenge":
        require(seg.ack == start, b["rule"], "the segment is dropped: the ACK does not cover its data",
                f"ack {peer.rel_peer(start)}", peer.describe(seg))
        peer.snd_nxt = start
        peer.send("PA", data=data)
        peer.expect("A", seq=peer.rcv_nxt, ack=peer.snd_nxt, requirement=b["rule"],
                    what="the same data with an acceptable ACK is acknowledged")
    else:
        require(seg.ack == peer.snd_nxt, b["rule"], f"documented: the data is accepted all the same ({b['note']})",
                f"ack {peer.rel_peer(peer.snd_nxt)}", peer.describe(seg))
    _read_all(app, conn, data, b["rule"])
    profile.conclude(b)
