"""The window, both ways (RFC 9293 §3.1, §3.8.6): its field is unsigned and
its arithmetic 32-bit; the SUT as sender copes with a window the peer
shrinks, avoids silly windows and holds a zero window as long as its probes
are answered; as receiver it never shrinks its own window, may keep it
closed while its application reads nothing, and opens it in worthwhile
steps (receiver-side SWS avoidance).

The SUT's data is acknowledged by the peer burst by burst (an ACK as soon as
no segment follows within BURST_GAP), so that nothing looks like a loss to
the SUT and its congestion window grows until the window alone stops it."""
import time

import pytest

from harness.agent import AppError
from harness.flow import established, full_segment, fill_window, right_edge, stale
from harness.segment import seq_add, seq_diff
from harness.verdict import require

FEED = 256 << 10                # octets handed to the SUT's application at a time
BURST_GAP = 0.01                # a slow SUT's flight comes with gaps of some milliseconds
# No window scale, and no SACK-permitted: a tail loss probe (RFC 8985 §7,
# SACK-based) fires 2 SRTT after a flight, sooner than the peer answers on a
# busy machine, and the congestion window would shrink for a loss that never was.
NO_WSCALE = [("MSS", 1460), ("NOP", None), ("NOP", None), ("EOL", None)]
SWS_OVERRIDE_MIN = 0.1          # RFC 9293 §3.8.6.2.1: the override timeout, 0.1 to 1.0 s
SWS_WINDOW = 5 * 1460           # five full segments: the first flight fills it
READS = 160                     # reads of 100 octets, before larger ones, while the SUT reopens its window


def _open(peer, app, options, window: int, sndbuf: int | None = None):
    """A connection the SUT accepted, our SYN with `options`, our window
    field `window` from the start: its id."""
    listener = app.listen(peer.sut_port)
    mss = dict(peer.syn_options).get("MSS")     # the peer's own: what an MTU of 1500 carries in its family
    peer.syn_options = [("MSS", mss) if kind == "MSS" and mss else (kind, value) for kind, value in options]
    peer.window = window
    peer.connect()
    conn = app.accept(listener)
    if sndbuf:
        try:
            app.setsockopt(conn, "SO_SNDBUF", sndbuf)
        except AppError as e:
            if e.error != "EOPNOTSUPP":
                raise
    return conn


def _offered(peer) -> int:
    """The window the SUT sees from our window field: scaled by the shift
    of our SYN when both SYNs carried one."""
    shift = next((v for n, v in peer.syn_options if n == "WScale"), None)
    return peer.window << (min(shift, 14) if shift is not None and peer.sut_wscale is not None else 0)


def _widest_flight(peer, app, conn, total: int, enough: int, requirement: str, what: str) -> int:
    """The SUT sends up to `total` octets (fed as its buffer takes them); the
    peer acknowledges each burst. Returns the most octets the SUT had beyond
    an ACK at once, as soon as that exceeds `enough`; fails if a segment ends
    beyond the window offered."""
    __tracebackhide__ = True
    window = _offered(peer)
    end = seq_add(peer.rcv_nxt, total)
    queued = app.send(conn, bytes(min(total, FEED)), timeout=0.2)
    acked, widest = peer.rcv_nxt, 0
    while seq_diff(end, peer.rcv_nxt) > 0 and widest <= enough:
        pending, had = peer.rcv_nxt != acked, peer.rcv_nxt
        seg = peer.next_segment(within=BURST_GAP if pending else 1.5)
        if seg is None:
            require(pending, requirement, f"{what}: the SUT keeps sending while the window is open",
                    f"data up to {peer.rel_sut(end)}", f"nothing for 1.5 s after the ACK of {peer.rel_sut(acked)}")
            peer.send("A")
            acked = peer.rcv_nxt
            if queued < total:
                queued += app.send(conn, bytes(min(total - queued, FEED)), timeout=0.05)
            continue
        if not seg.payload:
            continue
        if seq_diff(seg.end, had) <= 0:           # data we had, again: our ACK never reached the SUT
            peer.send("A")
            acked = peer.rcv_nxt
            continue
        reach = seq_diff(seg.end, acked)
        require(reach <= window, requirement, f"{what}: no segment ends beyond SEG.ACK + SEG.WND",
                f"at most {window} octets beyond the ACK of {peer.rel_sut(acked)}", f"{peer.describe(seg)}: {reach}")
        widest = max(widest, reach)
    return widest


def _first_flight(peer, start: int) -> int:
    """Read the flight the SUT sends at once (unacknowledged); its end."""
    end = start
    seg = peer.next_segment(within=1.0)
    while seg is not None:
        if seg.payload and seq_diff(seg.end, end) > 0:
            end = seg.end
        seg = peer.next_segment(within=0.05)
    return end


# --- MUST-1, REC-1 --------------------------------------------------------------------------

@pytest.mark.case("window.unsigned")
@pytest.mark.requires("app")
def test_window_above_32767_is_unsigned(stack, peer, app, profile, observed):
    """No window scaling, a window field of 60000: the SUT keeps more than 32767 octets in flight."""
    if profile.has("send_buffer") and profile.value("send_buffer") <= 32768:
        pytest.skip(f"stack {stack.name} has a send buffer of {profile.value('send_buffer')} octets, fixed: it "
                    f"cannot keep more than 32767 octets in flight, so a window's sign cannot show")
    conn = _open(peer, app, NO_WSCALE, 60000, sndbuf=1 << 20)
    widest = _widest_flight(peer, app, conn, 16 * 60000, 32767, "RFC9293/MUST-1", "a window field of 60000")
    observed["widest_flight"] = widest
    require(widest > 32767, "RFC9293/MUST-1",
            "the window field is unsigned: with 60000 offered the SUT has more than 32767 octets in flight",
            "more than 32767 octets beyond an ACK", f"at most {widest}")


@pytest.mark.case("window.32-bit")
@pytest.mark.requires("app")
def test_window_of_exactly_65536(stack, peer, app, observed):
    """Window scale 14 and a field of 4: a window of exactly 65536 octets, which is 0 in 16 bits. The SUT
    sends its data at once, and never beyond the window."""
    conn = _open(peer, app, [("MSS", 1460), ("NOP", None), ("WScale", 14)], 4, sndbuf=1 << 20)
    require(peer.sut_wscale is not None, "RFC9293/REC-1", "the SUT answers the window scale option",
            "wscale on the SYN-ACK", "none")
    data = bytes(range(256)) * 512                    # 131072 octets: more than the window
    app.send(conn, data, timeout=0.2)
    start = peer.rcv_nxt
    first = peer.next_segment(within=1.0)
    require(first is not None and first.payload, "RFC9293/REC-1",
            "the window of 65536 octets is kept in 32 bits: the SUT sends at once (in 16 bits it would read 0 "
            "and only probe)", "data at once", peer.describe(first) if first else "nothing")
    end = _first_flight(peer, start)
    observed["first_flight"] = seq_diff(end, start)
    require(seq_diff(end, start) <= 65536, "RFC9293/REC-1", "no data beyond the window of 65536 octets",
            "at most 65536 octets", f"{seq_diff(end, start)} octets")


# --- MUST-34, SHLD-15, SHLD-16, MAY-7: the peer shrinks its window ----------------------------

@pytest.mark.case("window.shrunk-by-peer")
@pytest.mark.requires("app")
def test_sender_copes_with_a_shrunk_window(stack, peer, app, profile, tolerance, observed):
    """The peer moves its right edge left over data already sent: no new data beyond it, in-window data
    retransmitted, the connection survives and completes when the window opens."""
    b = profile.behaviour("window.shrunk-beyond-edge")
    conn = _open(peer, app, NO_WSCALE, 8000, sndbuf=1 << 20)
    data = bytes(range(256)) * 80                     # 20480 octets
    data = data[:app.send(conn, data)]
    begin = start = peer.rcv_nxt
    flight_end = _first_flight(peer, start)          # up to the window of 8000, not acknowledged
    # A small initial window (slirp's two segments, lwIPv6's one) holds less:
    # whole flights are acknowledged, the window still 8000, until slow start
    # has grown one past 4000 octets.
    for _ in range(3):
        if seq_diff(flight_end, start) > 4000:
            break
        peer.rcv_nxt = start = flight_end
        peer.send("A")
        flight_end = _first_flight(peer, start)
    require(seq_diff(flight_end, start) > 4000, "RFC9293/MUST-34", "the SUT sends a flight of more than 4000 "
            "octets into a window of 8000 (growing it from its initial window by acknowledging whole flights)",
            "more than 4000 octets", f"{seq_diff(flight_end, start)}")
    sent_max = flight_end
    # Acknowledge the first segment with a window of 2000: the right edge
    # moves from start+8000 to about start+3500, over data already sent.
    first = next(e for e in peer.trace.entries if peer.mine(e) and e.payload and e.seq == start)
    ack = first.end
    edge = seq_add(ack, 2000)
    peer.rcv_nxt = ack
    peer.send("A", window=2000)
    observed["right_edge_moved_by"] = seq_diff(seq_add(start, 8000), edge)
    # Watch the SUT until it has retransmitted the in-window data twice, without acknowledging anything.
    retransmitted, beyond = [], []
    deadline = time.monotonic() + tolerance.latest(3 * profile.value("initial_rto")) + 1.0
    while len(retransmitted) < 2 and time.monotonic() < deadline:
        seg = peer.next_segment(within=max(0.0, deadline - time.monotonic()))
        if seg is None:
            break
        require(not seg.rst, "RFC9293/MUST-34", "the SUT survives a window that shrank: no reset",
                "retransmissions", peer.describe(seg))
        if not seg.payload:
            continue
        require(seq_diff(seg.seq, sent_max) < 0, "RFC9293/SHLD-15",
                "after the window shrank, no new data is sent beyond the new right edge",
                f"no segment starting at or beyond {peer.rel_sut(sent_max)} (right edge {peer.rel_sut(edge)})",
                peer.describe(seg))
        if seq_diff(seg.seq, edge) < 0:
            retransmitted.append(seg)
        else:
            beyond.append(seg)
    observed["retransmitted_in_window"] = len(retransmitted)
    observed["retransmitted_beyond_edge"] = len(beyond)
    require(len(retransmitted) >= 2 or (retransmitted and beyond), "RFC9293/SHLD-16",
            "unacknowledged data inside the shrunk window keeps being retransmitted",
            f"retransmissions of {peer.rel_sut(ack)} onwards", f"{len(retransmitted)} in the window")
    want_beyond = b["answer"] == "retransmits"
    if not want_beyond:
        require(not beyond, b["rule"], f"documented: nothing beyond the new right edge is retransmitted ({b['note']})",
                "no retransmission beyond the edge", "; ".join(peer.describe(s) for s in beyond))
    # Open the window (acknowledging what came in order meanwhile): everything arrives.
    peer.window = 65535
    peer.send("A")
    got = receive_rest(peer, seq_add(begin, len(data)))
    require(got, "RFC9293/MUST-34", "the window opened again: the transfer completes",
            f"data up to {peer.rel_sut(seq_add(begin, len(data)))}", f"data up to {peer.rel_sut(peer.rcv_nxt)}")
    profile.conclude(b)


def receive_rest(peer, end: int, within: float = 4.0) -> bool:
    """Acknowledge the SUT's data until RCV.NXT reaches `end`; False if it stops."""
    while seq_diff(end, peer.rcv_nxt) > 0:
        seg = peer.next_segment(within=within)
        if seg is None:
            return False
        if seg.payload:
            peer.send("A")
    return True


# --- MUST-38: sender-side silly window avoidance ---------------------------------------------

@pytest.mark.case("window.sender-sws")
@pytest.mark.requires("app")
def test_sender_avoids_a_silly_window(stack, peer, app, observed):
    """With much data queued and a usable window of 200 octets, the SUT sends no small segment before the
    override timeout."""
    conn = _open(peer, app, NO_WSCALE, SWS_WINDOW, sndbuf=1 << 20)
    data = bytes(range(256)) * 160                    # 40960 octets
    data = data[:app.send(conn, data)]
    start = peer.rcv_nxt
    sent_max = _first_flight(peer, start)            # the window's worth, not acknowledged
    # Acknowledge 200 octets, window unchanged: a small usable window (200
    # octets and whatever the flight left unused, less than one segment).
    peer.rcv_nxt = seq_add(start, 200)
    small = peer.send("A", window=SWS_WINDOW)
    observed["flight_before"] = seq_diff(sent_max, start)
    deadline = small.t + SWS_OVERRIDE_MIN
    while True:
        seg = peer.next_segment(within=max(0.0, deadline - time.monotonic()))
        if seg is None:
            break
        if seg.payload and seq_diff(seg.end, sent_max) > 0:
            require(len(seg.payload) >= min(peer.sut_mss or 536, SWS_WINDOW // 2), "RFC9293/MUST-38",
                    f"sender SWS avoidance: with a small usable window (the peer once offered {SWS_WINDOW}) no "
                    f"new segment smaller than min(MSS, half the largest window) is sent before {SWS_OVERRIDE_MIN} s",
                    "nothing, or a full-sized segment", peer.describe(seg))
    # The window opens: the rest flows in full-sized segments.
    peer.rcv_nxt = sent_max
    peer.send("A", window=65535)
    require(receive_rest(peer, seq_add(start, len(data))), "RFC9293/MUST-38",
            "the window opened: the transfer completes", "all data", f"data up to {peer.rel_sut(peer.rcv_nxt)}")


@pytest.mark.case("window.sender-sws")
@pytest.mark.requires("app")
def test_sender_does_not_fill_a_window_edge_with_a_small_segment(stack, peer, app, profile, observed):
    """The peer offers five segments and 700 octets; much data is queued: the first flight holds full-sized
    segments, and the 700 octets left at the window's edge go unsent, as the profile documents."""
    b = profile.behaviour("sws.window-edge")
    window = 5 * 1460 + 700
    conn = _open(peer, app, NO_WSCALE, window, sndbuf=1 << 20)
    data = bytes(range(256)) * 160                    # 40960 octets: far more than the window
    data = data[:app.send(conn, data)]
    start = peer.rcv_nxt
    sent_max = _first_flight(peer, start)
    flight = [e for e in peer.trace.entries if peer.mine(e) and e.payload and seq_diff(e.seq, start) >= 0
              and seq_diff(e.end, sent_max) <= 0]
    sizes = [len(e.payload) for e in flight]
    observed["first_flight"] = sizes
    small = [peer.describe(e) for e in flight if len(e.payload) < min(peer.sut_mss or 536, window // 2)]
    want_small = b["answer"] == "fills-edge"
    require(bool(small) == want_small, b["rule"],
            f"sender SWS avoidance: with {len(data)} octets queued, no segment shorter than min(MSS, half the "
            f"window) fills the last 700 octets of the window; documented: {b['note'][:90]}...",
            "full-sized segments only" if not want_small else "a short segment at the edge",
            "; ".join(small) or f"payloads {sizes}")
    peer.rcv_nxt = sent_max
    peer.window = 65535
    peer.send("A")
    require(receive_rest(peer, seq_add(start, len(data))), "RFC9293/MUST-38",
            "the window opened: the transfer completes", "all data", f"data up to {peer.rel_sut(peer.rcv_nxt)}")
    profile.conclude(b)


# --- SHLD-17, MUST-37: a window held shut for longer than R2 -------------------------------

def _short_r2(profile) -> float:
    """R2 (the count of unanswered retransmissions before giving up) made
    small, and the RTO capped at 1 s where the stack can, so that a hold
    longer than R2 is short. Returns how long to wait for the next probe."""
    profile.set("retries2", 1)
    try:
        profile.set("rto_max", 1000)
    except pytest.skip.Exception:     # no tunable cap (Linux 6.1): the probes back off to 3.2 s by then
        pass
    return min(profile.value("rto_max") / 1000, 6.4) * 1.5 + 0.5


@pytest.mark.case("window.zero-held")
@pytest.mark.requires("app")
def test_zero_window_held_longer_than_r2(stack, peer, app, profile, observed):
    """The peer's window is zero while the SUT has data queued; every probe is answered, for more probes
    than R2 allows unanswered retransmissions: the connection stays, and completes when the window opens."""
    gap = _short_r2(profile)
    r2 = profile.value("retries2")
    conn = _open(peer, app, NO_WSCALE, 0)
    una = peer.rcv_nxt
    data = b"held behind a zero window" * 40
    app.send(conn, data)
    probes = 0
    while probes < r2 + 3:
        seg = peer.next_segment(within=gap)
        require(seg is not None and not seg.rst, "RFC9293/MUST-37",
                f"with a zero window and every probe answered the SUT keeps probing (probe {probes + 1})",
                "a zero-window probe", peer.describe(seg) if seg else "nothing")
        probes += 1
        peer.rcv_nxt = una
        peer.send("A", window=0)
    observed["probes_answered"] = probes
    peer.send("A", window=65535)
    require(receive_rest(peer, seq_add(una, len(data))), "RFC9293/MUST-37",
            f"after {probes} answered probes (R2 = {r2} retransmissions) the window opens and the data flows",
            "all data", f"data up to {peer.rel_sut(peer.rcv_nxt)}")


@pytest.mark.case("window.shrunk-held")
@pytest.mark.requires("app")
def test_data_beyond_a_shrunk_edge_does_not_time_out(stack, peer, app, profile, observed):
    """The peer shrinks its window to zero over data already sent and answers every retransmission, for more
    than R2 allows: the connection is not timed out, and completes when the window opens."""
    gap = _short_r2(profile)
    r2 = profile.value("retries2")
    conn = _open(peer, app, NO_WSCALE, 8000)
    data = bytes(range(256)) * 24
    app.send(conn, data)
    start = peer.rcv_nxt
    _first_flight(peer, start)
    answered = 0
    while answered < r2 + 3:
        peer.rcv_nxt = start
        peer.send("A", window=0)
        seg = peer.next_segment(within=gap)
        require(seg is not None and not seg.rst, "RFC9293/SHLD-17",
                "data beyond the right edge left unacknowledged does not time the connection out "
                f"(answer {answered + 1})", "a retransmission or probe",
                peer.describe(seg) if seg else f"nothing for {gap:.1f} s; the application's error: {app.error(conn)}")
        answered += 1
    observed["answers"] = answered
    peer.rcv_nxt = start
    peer.send("A", window=65535)
    require(receive_rest(peer, seq_add(start, len(data))), "RFC9293/SHLD-17",
            f"after {answered} answers (R2 = {r2}) the window opens and the transfer completes",
            "all data", f"data up to {peer.rel_sut(peer.rcv_nxt)}")


# --- the SUT as receiver: SHLD-14, MAY-8, MUST-39 -----------------------------------------------

def _probe(peer):
    """A zero-window probe of one new octet at SND.NXT (RFC 9293 §3.8.6.1):
    the SUT's answer, with the octet counted if it took it."""
    peer.send("A", seq=peer.snd_nxt, data=b"?")
    seg = peer.next_segment(within=0.5)
    if seg is not None and seg.has_ack and seq_diff(seg.ack, peer.snd_nxt) > 0:
        peer.snd_nxt = seg.ack
    return seg



def _reading_sut(peer, app, stack):
    listener = app.listen(peer.sut_port)
    try:
        app.setsockopt(listener, "SO_RCVBUF", 8192)
    except AppError as e:
        if e.error != "EOPNOTSUPP":
            raise
    peer.connect()
    return app.accept(listener)


@pytest.mark.case("window.receiver-never-shrinks")
@pytest.mark.requires("app")
def test_receive_window_closes_without_shrinking_and_stays_closed(stack, peer, app, profile, observed):
    """The SUT's application reads nothing: its window closes without its right edge ever moving left, and it
    stays closed while the peer probes."""
    conn = _reading_sut(peer, app, stack)
    seen = fill_window(peer, "RFC9293/SHLD-14", "the SUT's window closes while its application reads nothing",
                       chunk=full_segment(stack, peer))
    edges = [(s, right_edge(s, peer)) for s in seen if s.has_ack]
    unit = 1 << (peer.sut_wscale or 0)
    back = [f"{peer.describe(s)} (edge {peer.rel_peer(e)} after {peer.rel_peer(p)})"
            for (_, p), (s, e) in zip(edges, edges[1:]) if seq_diff(e, p) <= -unit]
    observed["retractions_within_scaling_granularity"] = sum(1 for (_, p), (s, e) in zip(edges, edges[1:])
                                                             if -unit < seq_diff(e, p) < 0)
    require(not back, "RFC9293/SHLD-14",
            "the receiver never moves its right edge (SEG.ACK + SEG.WND) left (by less than one unit of its window "
            f"scale, {unit} octets, is the scaling's granularity, RFC 7323 §2.4)",
            "right edges that never decrease", "; ".join(back[:3]) + (f" and {len(back) - 3} more" if len(back) > 3 else ""))
    observed["octets_taken"] = seq_diff(peer.snd_nxt, peer.iss + 1)
    for n in range(4):
        seg = _probe(peer)
        require(seg is not None and seg.window == 0 and seg.ack == peer.snd_nxt, "RFC9293/MAY-8",
                f"the window stays closed while the application reads nothing (probe {n + 1})",
                "an ACK of RCV.NXT with window 0", peer.describe(seg) if seg else "nothing")
        peer.expect_none(within=0.2, what="nothing but the answers to the probes")


@pytest.mark.case("window.receiver-sws")
@pytest.mark.requires("app")
def test_window_reopens_in_worthwhile_steps(stack, peer, app, observed):
    """The SUT's window is zero; its application reads 100 octets at a time: every window it then offers is
    zero or at least min(half its buffer, one MSS)."""
    conn = _reading_sut(peer, app, stack)
    fill_window(peer, "RFC9293/MUST-39", "the SUT's window closes while its application reads nothing",
                chunk=full_segment(stack, peer))
    taken = seq_diff(peer.snd_nxt, peer.iss + 1)
    step = min(taken // 2, full_segment(stack, peer))
    offered, read = [], 0
    # Reads of 100 octets, then of 1000 up to all the SUT took: a stack whose
    # application sits behind a proxy's host sockets (slirp) frees its own
    # buffer only once the host's buffers have drained.
    for n in range(READS + taken // 1000 + 1):
        if read >= taken:
            break
        read += len(app.recv(conn, max=100 if n < READS else 1000, timeout=0.5))
        seg = _probe(peer)
        if seg is None:
            continue
        win = seg.window << (peer.sut_wscale or 0)
        if win:
            offered.append(win)
        unit = 1 << (peer.sut_wscale or 0)
        require(win == 0 or win > step - unit, "RFC9293/MUST-39",
                f"receiver SWS avoidance: after {read} octets read, the window offered is zero or at "
                f"least min(half the buffer, one MSS) = {step}", f"0 or >= {step}", peer.describe(seg))
        if win:
            break
    observed["windows_offered"] = offered
    observed["octets_read_before_it_opened"] = read
    require(offered, "RFC9293/MUST-39", "the window opens once the application has read what it was sent",
            "a window of at least one MSS", f"the window stayed closed after {read} of {taken} octets read")
