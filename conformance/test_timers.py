"""The timers of a connection: retransmission, persist, keep-alive, TIME-WAIT.

Every timer is judged from the wire: the receive timestamps of the SUT's
segments (`seg.t`), against the stack's documented numbers (the profile) with
the run's timing tolerance. The SUT is the server of the connection; the peer
stays silent where the timer has to act.
"""
import time

import pytest

from harness import plot
from harness.agent import AppError
from harness.verdict import require, require_expiry, require_interval

TWO_HOURS = 2 * 3600            # RFC 9293 MUST-28: the least default keep-alive idle time
MIN_RTO_CAP = 60                # RFC 6298 §2.5: a maximum RTO, if any, is at least 60 s
# What each documented form of a zero-window probe looks like, given SND.UNA
# and the data queued behind the zero window: a segment the receiver cannot
# accept (SEG.SEQ = SND.UNA - 1, no data), or the next octet of the queued
# data (RFC 9293 §3.8.6.1).
PERSIST_PROBES = {
    "zero-length": lambda peer, una, queued: dict(flags="A", seq=una - 1, ack=peer.snd_nxt, data=b""),
    "one-octet": lambda peer, una, queued: dict(flags="A", seq=una, ack=peer.snd_nxt, data=queued[:1]),
}


def _established(peer, app):
    """A connection the SUT accepted; returns (connection id, our SYN, our
    third ACK)."""
    listener = app.listen(peer.sut_port)
    syn = peer.send("S")
    peer.expect("SA", ack=peer.iss + 1, what="a listening SUT answers a SYN with a SYN-ACK")
    third = peer.send("A")
    return app.accept(listener), syn, third


def _rtt(app, conn, syn, third) -> float:
    """The RTT the SUT measured in the handshake, from its SYN-ACK going out
    to our third ACK coming in: as the SUT reports it (TCP_INFO) where its
    app control can, since a SUT that is slow to take our ACK in (a user-mode
    kernel on a busy machine) measures more than the wire shows. Else from
    the wire: a write on the TUN device runs the SUT's input path before it
    returns, so the SYN-ACK leaves before our SYN's timestamp is taken, and
    the RTT is at most third.t - syn.t (it is that when we are slow to read
    the SYN-ACK)."""
    info = app.tcp_info(conn)
    return info["rtt"] / 1e6 if info is not None else third.t - syn.t


# The RTO after the handshake's one RTT sample R, for each documented way a
# stack bounds it below (the profile's behaviour "rto.minimum").
RTO_AFTER_HANDSHAKE = {
    "rto_min": lambda floor, rtt: rtt + max(2 * rtt, floor),  # SRTT + max(mdev = 2 R, rto_min) (Linux)
    "rto_min-floor": lambda floor, rtt: max(floor, 3 * rtt),  # SRTT + 4 RTTVAR = 3 R (RFC 6298 §2.2), raised to it
}


def _rto(profile, rtt: float) -> float:
    """The SUT's RTO after the handshake, from rto_min and the RTT as its
    profile documents them."""
    b = profile.behaviour("rto.minimum")
    return RTO_AFTER_HANDSHAKE[b["answer"]](profile.value("rto_min") / 1e6, rtt)


# --- retransmission (S2) ------------------------------------------------------------------

@pytest.mark.case("timers.retransmission-backoff")
@pytest.mark.requires("app")
@pytest.mark.parametrize("rto_max_ms, count", [pytest.param(1000, 6, id="rto-max-1s"),
                                               pytest.param(None, 9, id="default", marks=pytest.mark.slow)])
def test_data_retransmission_backs_off(stack, peer, app, profile, tolerance, observed, figures, rto_max_ms, count):
    """Data that is never acknowledged is retransmitted, the RTO doubling up to rto_max."""
    if rto_max_ms is not None:
        profile.set("rto_max", rto_max_ms)
    cap = profile.value("rto_max") / 1000
    tlp = profile.behaviour("retransmission.tail-loss-probe")
    conn, syn, third = _established(peer, app)
    rto = _rto(profile, _rtt(app, conn, syn, third))
    data = b"retransmit me, nobody listens"
    app.send(conn, data)
    first = peer.expect("A", seq=peer.rcv_nxt, ack=peer.snd_nxt, data=data, what="the application's data")
    # (interval before the retransmission, requirement, what it is)
    schedule = [(rto, tlp["rule"], "tail loss probe, one PTO (= RTO for a lone segment) after it")] \
        if tlp["answer"] == "tlp" else []
    for k in range(count):
        interval = min(rto * 2 ** k, cap)
        schedule.append((interval, "RFC6298/2.5" if interval == cap else "RFC6298/5.5",
                         f"RTO {k + 1}: {rto:.3f} s doubled {k} times, at most rto_max {cap:g} s"))
    previous = first
    observed["retransmission_times"] = []         # seconds after the original segment
    observed["retransmission_intervals"] = []
    try:
        for n, (interval, requirement, what) in enumerate(schedule[:count], 1):
            seg = peer.expect("A", seq=first.seq, ack=peer.snd_nxt, data=data,
                              within=tolerance.latest(interval) + 0.1, requirement=requirement,
                              what=f"retransmission {n}: {what}")
            observed["retransmission_times"].append(round(seg.t - first.t, 3))
            observed["retransmission_intervals"].append(round(seg.t - previous.t, 3))
            require_interval(seg.t - previous.t, interval, tolerance, requirement,
                             f"interval before retransmission {n}: {what}")
            previous = seg
    finally:
        figures.append(plot.backoff(f"Data retransmission intervals, RTO {rto:.3f} s doubling up to {cap:g} s",
                                    observed["retransmission_intervals"], [i for i, _, _ in schedule[:count]],
                                    tolerance))
    observed["rto_after_handshake"] = round(rto, 3)
    if rto_max_ms is None:          # the stack's own cap, not one the case set
        require(cap >= MIN_RTO_CAP, "RFC6298/2.5", "a maximum placed on the RTO is at least 60 s",
                f"rto_max >= {MIN_RTO_CAP} s", f"the backoff stops at {cap:g} s ({profile.doc('rto_max')[:80]}...)")


@pytest.mark.case("timers.rto-minimum")
@pytest.mark.requires("app")
def test_first_rto_after_a_tiny_rtt(stack, peer, app, profile, tolerance, observed):
    """The first RTO after a handshake whose RTT is far below 1 s."""
    b = profile.behaviour("rto.minimum")
    floor = profile.value("rto_min") / 1e6
    tlp = profile.behaviour("retransmission.tail-loss-probe")
    conn, syn, third = _established(peer, app)
    rtt = _rtt(app, conn, syn, third)
    rto = _rto(profile, rtt)
    data = b"x"
    app.send(conn, data)
    first = peer.expect("A", seq=peer.rcv_nxt, data=data, what="the application's data")
    if tlp["answer"] == "tlp":      # the probe, then the RTO timer restarts from it
        first = peer.expect("A", seq=first.seq, data=data, within=1.5, requirement=tlp["rule"],
                            what="the tail loss probe of a lone segment")
    seg = peer.expect("A", seq=first.seq, data=data, within=tolerance.latest(rto) + 0.1, requirement=b["rule"],
                      what="the first retransmission by the RTO timer")
    observed["first_rto"] = round(seg.t - first.t, 3)
    observed["handshake_rtt"] = round(rtt, 6)
    require_interval(seg.t - first.t, rto, tolerance, b["rule"],
                     f"documented RTO after an RTT of {rtt * 1000:.1f} ms, bounded by rto_min = {floor:g} s "
                     f"({b['answer']}); RFC 6298 §2.4 rounds it up to 1 s")
    profile.conclude(b)


# --- persist (S3) -------------------------------------------------------------------------

@pytest.mark.case("timers.persist")
@pytest.mark.requires("app")
def test_zero_window_probed_then_transfer_resumes(stack, peer, app, profile, tolerance, observed):
    """The peer's window is zero: probes back off, and the data flows once the window opens."""
    b = profile.behaviour("persist.probe")
    cap = profile.value("rto_max") / 1000
    listener = app.listen(peer.sut_port)
    syn = peer.send("S")
    peer.expect("SA", ack=peer.iss + 1)
    third = peer.send("A", window=0)            # ESTABLISHED with a zero send window
    conn = app.accept(listener)
    rto = _rto(profile, _rtt(app, conn, syn, third))
    una = peer.rcv_nxt                          # the SUT's SND.UNA = SND.NXT: nothing may be sent
    data = bytes(range(256)) * 4
    queued = time.monotonic()
    app.send(conn, data)
    previous, answer, interval = queued, None, rto
    observed["probe_times"] = []                # seconds after the data was queued
    for n in range(1, 5):
        requirement = "RFC9293/SHLD-29" if n == 1 else "RFC9293/SHLD-30"
        probe = peer.expect(**PERSIST_PROBES[b["answer"]](peer, una, data),
                            within=tolerance.doubled(n - 1).latest(interval) + 0.1,
                            requirement="RFC9293/MUST-36", what=f"zero-window probe {n}, {b['answer']} ({b['rule']})")
        observed["probe_times"].append(round(probe.t - queued, 3))
        # The backoff may run from the previous probe or from our answer to
        # it (Linux re-arms the timer on the ACK): either reference passes,
        # so the tester's own reaction time does not count against the stack.
        tol = tolerance.doubled(n - 1)
        seen = probe.t - previous
        if answer is not None and not tol.within(interval, seen) and tol.within(interval, probe.t - answer):
            seen = probe.t - answer
        require_interval(seen, interval, tol, requirement,
                         "the first probe one RTO after the data is queued" if n == 1
                         else f"probe {n}: the interval doubles ({interval:.3f} s)")
        peer.rcv_nxt = una                      # a zero window takes no octet of a probe (§3.10.7.4)...
        answer = peer.send("A", window=0).t     # ...and answers it with its window (§3.8.6.1)
        previous, interval = probe.t, min(2 * interval, cap)
    peer.send("A", window=65535)                # the window opens
    peer.expect("A", seq=una, ack=peer.snd_nxt, data=data, within=0.5, requirement="RFC9293/MUST-36",
                what="the window opened: the queued data is sent at SND.UNA")
    peer.send("A")
    peer.expect_none(within=0.1, what="all data acknowledged")
    profile.conclude(b)


# --- keep-alive (S4) ----------------------------------------------------------------------

def _keepalive(app, conn, idle: int, interval: int, count: int) -> None:
    """Keep-alives on for one connection. SO_KEEPALIVE first: setting the idle
    time afterwards counts it from the last segment received (Linux re-arms
    the timer then), not from whenever the application gets to it."""
    app.setsockopt(conn, "SO_KEEPALIVE", 1)
    for name, value in (("TCP_KEEPIDLE", idle), ("TCP_KEEPINTVL", interval), ("TCP_KEEPCNT", count)):
        app.setsockopt(conn, name, value)


def _recv_error(app, conn) -> str | None:
    """The errno name a receive on the connection fails with (None: it returned)."""
    try:
        app.recv(conn, timeout=0.5)
    except AppError as e:
        return e.error
    return None


def _probe(peer, n: int, within: float, requirement: str = "RFC9293/3.8.4"):
    return peer.expect("A", seq=peer.rcv_nxt - 1, ack=peer.snd_nxt, data=b"", within=within,
                       requirement=requirement,
                       what=f"keep-alive probe {n}: <SEQ=SND.NXT-1><ACK=RCV.NXT><CTL=ACK>, no data (SHLD-12)")


@pytest.mark.case("timers.keepalive.unanswered")
@pytest.mark.requires("app")
def test_keepalive_unanswered_drops_connection(stack, peer, app, profile, tolerance, observed):
    """Keep-alive probes nobody answers: after the idle time, every interval, then the connection is dropped."""
    idle, interval, count = 1, 1, 3
    b = profile.behaviour("keepalive.dead-connection")
    conn, syn, last = _established(peer, app)
    _keepalive(app, conn, idle, interval, count)
    previous, wait, after = last, idle, "TCP_KEEPIDLE after the last segment received"
    observed["probe_times"] = []                 # seconds after the last segment the SUT received
    for n in range(1, count + 1):
        probe = _probe(peer, n, tolerance.latest(wait) + 0.1)
        observed["probe_times"].append(round(probe.t - last.t, 3))
        require_interval(probe.t - previous.t, wait, tolerance, "RFC9293/MUST-27", f"probe {n}: {after}")
        previous, wait, after = probe, interval, "TCP_KEEPINTVL after the previous probe"
    # Dropped one interval after the last probe, with the documented answer on the wire.
    within = tolerance.latest(interval) + 0.1
    gone = f"after TCP_KEEPCNT = {count} unanswered probes the connection is dropped"
    if b["answer"] == "rst":
        dropped = peer.expect("RA", seq=peer.rcv_nxt, ack=peer.snd_nxt, within=within, requirement=b["rule"],
                              what=f"{gone}; documented: with <SEQ=SND.NXT><ACK=RCV.NXT><CTL=RST,ACK>").t
    elif "state" in stack.capabilities:
        dropped = stack.wait_for_state(peer.sut_port, peer.port, None, within=within)
        require(dropped is not None, b["rule"], gone, "CLOSED (no socket)", stack.state_of(peer.sut_port, peer.port))
        peer.expect_none(until=dropped + 0.1, requirement=b["rule"], what=f"{gone}; documented: silently ({b['note'][:60]}...)")
    else:
        dropped = None
        peer.expect_none(within=within, requirement=b["rule"], what=f"{gone}; documented: silently")
    if dropped is not None:
        observed["dropped_after"] = round(dropped - last.t, 3)
        require_interval(dropped - previous.t, interval, tolerance, "RFC9293/MUST-27",
                         "the connection is dropped one TCP_KEEPINTVL after the last probe")
    error = _recv_error(app, conn)
    require(error == "ETIMEDOUT", "RFC9293/3.8.4", "the application learns the connection timed out",
            "recv fails with ETIMEDOUT", error or "recv returned")
    if "state" in stack.capabilities:
        require(stack.state_of(peer.sut_port, peer.port) is None, "RFC9293/3.8.4", "the connection is gone",
                "CLOSED", stack.state_of(peer.sut_port, peer.port))


@pytest.mark.case("timers.keepalive.answered")
@pytest.mark.requires("app")
def test_keepalive_survives_a_missed_probe(stack, peer, app, tolerance):
    """The first probe goes unanswered, the second is answered: the connection lives on."""
    idle, interval, count = 1, 1, 2
    conn, syn, last = _established(peer, app)
    _keepalive(app, conn, idle, interval, count)
    _probe(peer, 1, tolerance.latest(idle) + 0.1)                  # lost
    _probe(peer, 2, tolerance.latest(interval) + 0.1)
    answer = peer.send("A")                                          # the peer is alive after all
    probe = _probe(peer, 3, tolerance.latest(idle) + 0.1, requirement="RFC9293/MUST-29")
    require_interval(probe.t - answer.t, idle, tolerance, "RFC9293/MUST-27",
                     "after an answer the connection is idle again: the next probe TCP_KEEPIDLE later")
    if "state" in stack.capabilities:
        require(stack.state_of(peer.sut_port, peer.port) == "ESTABLISHED", "RFC9293/MUST-29",
                "one missed probe does not make the connection dead", "ESTABLISHED",
                stack.state_of(peer.sut_port, peer.port))


@pytest.mark.case("timers.keepalive.peer-rebooted")
@pytest.mark.requires("app")
def test_keepalive_answered_by_reset(stack, peer, app, tolerance):
    """A rebooted peer answers the first probe with a RST: the connection is reset."""
    idle, interval, count = 1, 1, 3
    conn, syn, last = _established(peer, app)
    _keepalive(app, conn, idle, interval, count)
    probe = peer.expect("A", seq=peer.rcv_nxt - 1, data=b"", within=tolerance.latest(idle) + 0.1,
                        requirement="RFC9293/3.8.4", what="a keep-alive probe")
    peer.send("R", seq=probe.ack)                  # no connection here: <SEQ=SEG.ACK><CTL=RST>
    peer.expect_none(within=tolerance.latest(interval) + 0.1, requirement="RFC9293/3.10.7.4",
                     what="a RST with SEQ = RCV.NXT resets the connection: no more probes")
    error = _recv_error(app, conn)
    require(error == "ECONNRESET", "RFC9293/MUST-12", "the application is told the connection was reset",
            "recv fails with ECONNRESET", error or "recv returned")


@pytest.mark.case("timers.keepalive.default-idle")
@pytest.mark.requires("app")
def test_keepalive_default_idle(stack, peer, app, profile, observed):
    """Keep-alives are off on a new connection, and would wait two hours or more."""
    conn, syn, last = _established(peer, app)
    require(app.getsockopt(conn, "SO_KEEPALIVE") == 0, "RFC9293/MUST-25", "keep-alives default to off",
            "SO_KEEPALIVE 0", f"SO_KEEPALIVE {app.getsockopt(conn, 'SO_KEEPALIVE')}")
    idle = profile.value("keepalive_time")
    observed["keepalive_time"] = idle
    observed["keepalive_intvl"] = profile.value("keepalive_intvl")
    observed["keepalive_probes"] = profile.value("keepalive_probes")
    require(idle >= TWO_HOURS, "RFC9293/MUST-28", "the default keep-alive idle time is at least two hours",
            f">= {TWO_HOURS} s", f"{idle} s ({profile.doc('keepalive_time')})")
    socket_idle = app.getsockopt(conn, "TCP_KEEPIDLE")
    require(socket_idle == idle, "RFC9293/MUST-28", "a new connection uses the default idle time",
            f"TCP_KEEPIDLE {idle}", f"TCP_KEEPIDLE {socket_idle}")


# --- TIME-WAIT (S5) -----------------------------------------------------------------------

# Old duplicates that probe TIME-WAIT without restarting its timer, by the
# stack's documented answer (profile behaviour "time-wait.probe"): how to send
# one (given the SUT's FIN), what answers it once TIME-WAIT is over and the
# listener gets it, and what that shows.
TIME_WAIT_PROBES = {
    "old-syn": (lambda peer, fin: peer.send("S", seq=peer.iss, options=[("MSS", 1460)]),
                lambda probe: dict(flags="SA", ack=probe.seq + 1), "old SYN reaches the listener (SYN-ACK)"),
    "old-data": (lambda peer, fin: peer.send("PA", seq=peer.iss + 1, ack=fin.seq, data=b"x"),
                 lambda probe: dict(flags="R", seq=probe.ack), "old data reaches the listener (<SEQ=SEG.ACK><CTL=RST>)"),
}

@pytest.mark.case("timers.time-wait-duration")
@pytest.mark.requires("app")
@pytest.mark.slow
def test_time_wait_duration(stack, peer, app, profile, tolerance, observed):
    """The SUT closes first; old duplicate SYNs find TIME-WAIT until its timer ends."""
    b = profile.behaviour("time-wait.duration")
    expected = profile.value(b["answer"])
    peer.syn_options = [o for o in peer.syn_options if o[0] != "Timestamp"]   # the sequence rule only
    conn, syn, third = _established(peer, app)
    app.close(conn)
    fin = peer.expect("FA", seq=peer.rcv_nxt, ack=peer.snd_nxt, what="CLOSE sends a FIN (FIN-WAIT-1)")
    peer.send("A")
    peer.send("FA")
    entered = peer.expect("A", seq=fin.seq + 1, ack=peer.snd_nxt, requirement="RFC9293/3.10.7.4",
                          what="our FIN is acknowledged: TIME-WAIT")
    if "state" in stack.capabilities:
        require(stack.state_of(peer.sut_port, peer.port) == "TIME-WAIT", "RFC9293/3.10.7.4",
                "the SUT is in TIME-WAIT", "TIME-WAIT", stack.state_of(peer.sut_port, peer.port))
    send, after, name = TIME_WAIT_PROBES[profile.behaviour("time-wait.probe")["answer"]]
    what = f"TIME-WAIT lasts the documented {expected:g} s ({profile.doc(b['answer'])[:40]}...)"
    alive, probe = peer.probe_while(lambda: send(peer, fin), "A", seq=fin.seq + 1, ack=peer.snd_nxt,
                                    start=entered.t, expected=expected, tolerance=tolerance,
                                    requirement=b["rule"], what=what)
    observed["time_wait_still_there_at"] = round(alive, 3)
    answer = peer.expect(**after(probe), within=tolerance.allowed(expected) / 4, requirement="RFC9293/MUST-13",
                         what=f"TIME-WAIT has ended: the {name}; "
                              "until then it is answered with an ACK of the old connection")
    observed["time_wait"] = round(answer.t - entered.t, 3)
    require_expiry(alive, answer.t - entered.t, expected, tolerance, b["rule"], what)
    profile.conclude(b)
