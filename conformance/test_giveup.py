"""Excessive retransmissions (RFC 9293 §3.8.1, §3.8.3): the RTO follows the
measured RTT (MUST-18); a retransmission may reuse the IP identification
(MAY-4); unanswered data is given up after R2 (MUST-20), which is at least
100 s (SHLD-11) and which the application can set (MUST-21); unanswered
SYNs follow the same procedure (MUST-22) for at least 3 minutes (MUST-23).

The long waits (R2 and the SYN's give-up with the defaults) are marked
slow; each has a quick variant that shortens R2 where the stack can."""
import time

import pytest
from scapy.layers.inet import IP

from harness.agent import AppError
from harness.flow import established
from harness.verdict import Tolerance, TimingFailure, require, require_interval

R2_AT_LEAST = 100.0              # RFC 9293 §3.8.3 (SHLD-11)
SYN_R2_AT_LEAST = 180.0          # RFC 9293 §3.8.3 (MUST-23): 3 minutes
HANDSHAKE_RTT = 0.8              # below every initial RTO (1 s), far above every RTO floor


POLL = 0.05                      # how often the application's error is read while a timer runs


def _gave_up(peer, app, conn, within: float) -> tuple[str | None, float]:
    """Read the socket's error every POLL s (tracing the link meanwhile)
    until the connection is given up: (the errno, the monotonic time it was
    first seen), or (None, now) after `within` s."""
    deadline = time.monotonic() + within
    while True:
        err = app.error(conn)
        if err:
            return err, time.monotonic()
        if time.monotonic() >= deadline:
            return None, time.monotonic()
        peer.link.poll(min(deadline, time.monotonic() + POLL))


def _retransmissions(peer, first, until: float):
    """Every retransmission of `first` until the monotonic time `until`
    (nothing of ours is sent meanwhile): their receive times."""
    times = []
    while True:
        seg = peer.next_segment(within=max(0.0, until - time.monotonic()))
        if seg is None:
            return times
        if seg.seq == first.seq and seg.payload == first.payload:
            times.append(seg.t)


# --- MUST-18 -----------------------------------------------------------------------------------

@pytest.mark.case("retransmission.rto-follows-rtt")
@pytest.mark.requires("app")
def test_rto_after_a_long_handshake_rtt(stack, peer, app, profile, tolerance, observed):
    """The SUT opens a connection whose SYN-ACK comes 0.8 s late: its first data retransmission waits at least
    1.5 times that RTT (RFC 6298: RTO = SRTT + 4 RTTVAR = 3 R after one sample)."""
    conn = app.connect(peer.addr, peer.port, bind_port=peer.sut_port)
    syn = peer.expect("S", within=2.0, requirement="RFC9293/MUST-18", what="the SUT's active open sends a SYN")
    peer.expect_none(until=syn.t + HANDSHAKE_RTT, what="the SYN is not retransmitted before its initial RTO")
    peer.send("SA")
    third = peer.expect("A", seq=peer.rcv_nxt, ack=peer.snd_nxt, requirement="RFC9293/MUST-18",
                        what="the SUT completes the handshake")
    rtt = third.t - syn.t
    info = app.tcp_info(conn)
    if info is not None:
        rtt = info["rtt"] / 1e6
    app.send(conn, b"measure my RTO")
    first = peer.expect("A", seq=peer.rcv_nxt, requirement="RFC9293/MUST-18", what="the application's data")
    again = peer.expect("A", seq=first.seq, data=first.payload, within=3 * rtt + profile.value("initial_rto") + 1,
                        requirement="RFC9293/MUST-18", what="the data is retransmitted")
    waited = again.t - first.t
    observed["handshake_rtt"] = round(rtt, 4)
    observed["first_retransmission_after"] = round(waited, 4)
    if waited < 1.5 * rtt - tolerance.allowed(1.5 * rtt):
        raise TimingFailure("RFC9293/MUST-18", f"the RTO follows the measured RTT ({rtt:.3f} s): the first "
                            "retransmission (a tail loss probe at 2 SRTT or the RTO at 3 SRTT) comes no sooner "
                            "than 1.5 RTT", f">= {1.5 * rtt:.3f} s", f"{waited:.3f} s")


# --- MAY-4 -------------------------------------------------------------------------------------

@pytest.mark.case("retransmission.ip-identification")
@pytest.mark.requires("app")
def test_retransmission_ip_identification(stack, peer, app, profile, observed):
    """A retransmission's IPv4 identification: the original's or a new one, as the profile documents."""
    if stack.family != "ipv4":
        pytest.skip("IPv6 has no identification field outside a fragment header")
    b = profile.behaviour("retransmission.ip-id")
    listener, conn = established(peer, app)
    app.send(conn, b"identify me")
    first = peer.expect("A", seq=peer.rcv_nxt, what="the application's data")
    again = peer.expect("A", seq=first.seq, data=first.payload, within=profile.value("initial_rto") * 4,
                        requirement=b["rule"], what="the data is retransmitted")
    ids = (first.pkt[IP].id, again.pkt[IP].id)
    observed["ip_ids"] = list(ids)
    same = ids[0] == ids[1]
    require(same == (b["answer"] == "same"), b["rule"],
            f"documented: a retransmission {'reuses' if b['answer'] == 'same' else 'does not reuse'} the IP "
            f"identification ({b['note']})", b["answer"], f"ids {ids[0]} then {ids[1]}")
    peer.send("A")
    profile.conclude(b)


# --- MUST-20, SHLD-11, MUST-21 --------------------------------------------------------------------

@pytest.mark.case("giveup.data")
@pytest.mark.requires("app")
def test_unanswered_data_is_given_up_after_r2(stack, peer, app, profile, observed):
    """With R2 set to 1 retransmission, data never acknowledged: the SUT stops retransmitting, tells the
    application ETIMEDOUT, and the 4-tuple is closed."""
    profile.set("retries2", 1)
    listener, conn = established(peer, app)
    app.send(conn, b"nobody will ever acknowledge this")
    first = peer.expect("A", seq=peer.rcv_nxt, what="the application's data")
    err, at = _gave_up(peer, app, conn, within=40.0)
    times = [round(t - first.t, 3) for t in _retransmissions(peer, first, time.monotonic())]
    observed["retransmissions_after"] = times
    observed["given_up_after"] = round(at - first.t, 3)
    require(err == "ETIMEDOUT", "RFC9293/MUST-20",
            "after R2 (1 retransmission) the connection is given up and the application told: ETIMEDOUT",
            "ETIMEDOUT", err or f"no error after {at - first.t:.1f} s")
    peer.expect_none(within=0.5, what="nothing is retransmitted once the connection is given up",
                     requirement="RFC9293/MUST-20", skip=lambda s: s.rst)
    probe = peer.send("A", data=b"still there?")
    seg = peer.next_segment(within=0.5)
    require(seg is not None and seg.rst and seg.seq == probe.ack, "RFC9293/MUST-20",
            "the given-up connection is closed: a segment to it draws a reset",
            "<SEQ=SEG.ACK><CTL=RST>", peer.describe(seg) if seg else "nothing")


@pytest.mark.case("giveup.r2-at-least-100s")
@pytest.mark.requires("app")
@pytest.mark.slow
def test_r2_lasts_at_least_100_seconds(stack, peer, app, profile, observed):
    """With the stack's defaults, data never acknowledged is still retransmitted more than 100 s after it was
    first sent."""
    listener, conn = established(peer, app)
    app.send(conn, b"retransmit me for at least 100 s")
    first = peer.expect("A", seq=peer.rcv_nxt, what="the application's data")
    late, err = None, None
    deadline = first.t + 4 * R2_AT_LEAST
    while late is None and err is None and time.monotonic() < deadline:
        seg = peer.next_segment(within=min(2.0, max(0.0, deadline - time.monotonic())))
        if seg is not None and seg.rst:
            break
        if seg is not None and seg.seq == first.seq and seg.t - first.t > R2_AT_LEAST:
            late = seg
        err = app.error(conn)
    observed["retransmitting_after"] = round(late.t - first.t, 3) if late else None
    require(late is not None, "RFC9293/SHLD-11",
            "R2 corresponds to at least 100 s: the data is still retransmitted more than 100 s after it was sent",
            "a retransmission later than 100 s",
            f"given up ({err}) after {time.monotonic() - first.t:.1f} s" if err else "the retransmissions stopped")


@pytest.mark.case("giveup.user-timeout")
@pytest.mark.requires("app")
def test_application_sets_r2(stack, peer, app, profile, tolerance, observed):
    """The application sets R2 to 1 s (TCP_USER_TIMEOUT): unacknowledged data is given up about 1 s after it
    was sent."""
    listener, conn = established(peer, app)
    app.setsockopt(conn, "TCP_USER_TIMEOUT", 1000)
    app.send(conn, b"give up on me after one second")
    first = peer.expect("A", seq=peer.rcv_nxt, what="the application's data")
    err, at = _gave_up(peer, app, conn, within=10.0)
    observed["given_up_after"] = round(at - first.t, 3)
    require(err == "ETIMEDOUT", "RFC9293/MUST-21", "the application's R2 ends the connection: ETIMEDOUT",
            "ETIMEDOUT", err or "no error")
    late = profile.value("user_timeout_late")
    polled = Tolerance(tolerance.absolute + POLL + 0.05, tolerance.relative, tolerance.granularity)
    waited = at - first.t
    if not polled.within(1.0, waited) and waited > 1.0:     # checked when the stack's timer next fires
        waited = max(1.0, waited - late)
    require_interval(waited, 1.0, polled, "RFC9293/MUST-21",
                     f"the connection is given up R2 = 1 s after the data was first sent (read every {POLL:g} s, "
                     f"and up to {late:g} s later when the stack's timer next fires: {profile.doc('user_timeout_late')})")


# --- MUST-22, MUST-23 ---------------------------------------------------------------------------

@pytest.mark.case("giveup.syn")
@pytest.mark.requires("app")
def test_unanswered_syn_backs_off_then_gives_up(stack, peer, app, observed):
    """SYN retransmissions limited (TCP_SYNCNT 1): the SYN is retransmitted by its timer, then the open fails
    with ETIMEDOUT and no SYN follows."""
    conn = app.connect(peer.addr, peer.port, bind_port=peer.sut_port, TCP_SYNCNT=1)
    syn = peer.expect("S", within=2.0, requirement="RFC9293/MUST-22", what="the SUT's active open sends a SYN")
    peer.expect("S", seq=syn.seq, within=4.0, requirement="RFC9293/MUST-22",
                what="the unanswered SYN is retransmitted by its timer")
    err, at = _gave_up(peer, app, conn, within=8.0)
    syns = [e.t - syn.t for e in stack.trace.entries if peer.mine(e) and e.syn]
    observed["syn_times"] = [round(t, 3) for t in syns]
    observed["given_up_after"] = round(at - syn.t, 3)
    require(err == "ETIMEDOUT", "RFC9293/MUST-22",
            "after its SYN retransmissions (R2 for a SYN, TCP_SYNCNT 1) the open fails: ETIMEDOUT",
            "ETIMEDOUT", err or f"no error after {at - syn.t:.1f} s")
    peer.expect_none(within=1.0, requirement="RFC9293/MUST-22", what="no SYN after the open was given up",
                     skip=lambda s: s.t < at)


@pytest.mark.case("giveup.syn-three-minutes")
@pytest.mark.requires("app")
@pytest.mark.slow
def test_syn_retransmitted_for_three_minutes(stack, peer, app, profile, observed):
    """With the stack's defaults an unanswered SYN is retransmitted for at least 3 minutes before the open
    fails, as the profile documents."""
    b = profile.behaviour("syn.give-up")
    conn = app.connect(peer.addr, peer.port, bind_port=peer.sut_port)
    syn = peer.expect("S", within=2.0, requirement="RFC9293/MUST-23", what="the SUT's active open sends a SYN")
    last, err = syn, None
    deadline = syn.t + SYN_R2_AT_LEAST + 5
    while err is None and time.monotonic() < deadline:
        seg = peer.next_segment(within=min(2.0, max(0.0, deadline - time.monotonic())))
        if seg is not None and seg.syn:
            last = seg
        err = app.error(conn)
    span = (time.monotonic() if err is None else last.t) - syn.t
    observed["syn_retransmitted_for"] = round(last.t - syn.t, 3)
    observed["open_failed"] = err
    still = err is None
    require(still == (b["answer"] == "at-least-3-min"), b["rule"],
            f"documented: an unanswered SYN is {'retransmitted for at least 3 minutes' if still else 'given up'} "
            f"({b['note']})", "still opening after 180 s" if b["answer"] == "at-least-3-min" else "given up",
            f"{'still opening' if still else f'given up ({err})'} after {span:.1f} s")
    profile.conclude(b)
