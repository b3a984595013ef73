"""ICMP errors about a connection (RFC 9293 §3.9.2.2, §3.9.1.8).

Each error quotes a data segment the SUT has in flight (its sequence number
between SND.UNA and SND.NXT, so that no stack can discard it as a forgery,
RFC 5927): a soft error reaches the connection it names and no other
(MUST-54), a source quench changes nothing (MUST-55), a soft error never
aborts the connection (MUST-56) and reaches the application when it asks
for such reports (MUST-47, SHLD-25) and not when it does not (SHLD-20), a
hard error aborts it (SHLD-26, as the profile documents)."""
import pytest

from harness import icmp
from harness.agent import AppError
from harness.flow import another, established
from harness.verdict import require



def _in_flight(peer, app, conn, data: bytes = b"unacknowledged for now"):
    """The SUT sends `data`; the peer holds its ACK. The segment."""
    app.send(conn, data)
    return peer.expect("A", seq=peer.rcv_nxt, ack=peer.snd_nxt, what="the SUT sends data")


def _carries_on(peer, app, conn, requirement: str, what: str) -> None:
    """The connection still works both ways: the held data is acknowledged,
    data goes each way."""
    peer.send("A")
    peer.send("PA", data=b"ping")
    seg = peer.next_segment(within=1.0)
    while seg is not None and seg.payload and not seg.rst:      # retransmissions of what we had
        seg = peer.next_segment(within=1.0)
    require(seg is not None and not seg.rst and seg.ack == peer.snd_nxt, requirement,
            f"{what}: the connection goes on, our data is acknowledged",
            f"an ACK of {peer.rel_peer(peer.snd_nxt)}", peer.describe(seg) if seg else "nothing")
    require(app.recv_exactly(conn, 4) == b"ping", requirement, f"{what}: the application still reads",
            "b'ping'", "other data")
    app.send(conn, b"pong")
    peer.expect("A", seq=peer.rcv_nxt, data=b"pong", requirement=requirement,
                what=f"{what}: the application still sends", skip=lambda s: not s.payload)
    peer.send("A")


# --- MUST-54: demultiplexing -----------------------------------------------------------------

RECVERR = {"ipv4": "IP_RECVERR", "ipv6": "IPV6_RECVERR"}
# A soft error per family, and the errno a socket reports for it.
SOFT_ERRNO = {"ipv4": ("host-unreachable", "EHOSTUNREACH"), "ipv6": ("no-route", "ENETUNREACH")}


def _recv_error(app, conn) -> str | None:
    """The errno a receive fails with now (EAGAIN: nothing to read, no error)."""
    try:
        app.recv(conn, timeout=0.05)
    except AppError as e:
        return e.error
    return None


@pytest.mark.case("icmp.demultiplexed")
@pytest.mark.requires("app")
def test_soft_error_reaches_its_connection_only(stack, peer, app, profile, rng):
    """Two connections on one port; a soft error quotes a segment of the first: the first's socket holds the
    error, the second's does not."""
    b = profile.behaviour("icmp.soft-error-available")
    listener, conn = established(peer, app)
    other = another(stack, peer, peer.port + 1 if peer.port < 60999 else peer.port - 1, rng)
    other.connect()
    conn2 = app.accept(listener)
    error, errno_name = SOFT_ERRNO[stack.family]
    seg = _in_flight(peer, app, conn)
    _in_flight(other, app, conn2)
    peer.link.send(icmp.error(seg, error))
    peer.expect_none(within=0.1, skip=lambda s: s.payload and not s.rst)
    mine, theirs = app.error(conn), app.error(conn2)
    want = errno_name if b["answer"] == "available" else None
    require(mine == want, "RFC9293/MUST-54" if want else b["rule"],
            f"the error is directed to the connection whose segment it quotes ({b['note'][:80]}...)",
            want or "no error", mine or "no error")
    require(theirs is None, "RFC9293/MUST-54", "the other connection on the same port gets nothing",
            "no error", theirs)
    _carries_on(peer, app, conn, "RFC9293/MUST-56", f"after the {error} error")
    profile.conclude(b)


# --- MUST-55: source quench --------------------------------------------------------------------

@pytest.mark.case("icmp.source-quench")
@pytest.mark.requires("app")
def test_source_quench_is_ignored(stack, peer, app):
    """An ICMP source quench about the connection changes nothing: the next flight is not cut to one segment."""
    if stack.family != "ipv4":
        pytest.skip("ICMPv6 has no source quench (RFC 4443)")
    listener, conn = established(peer, app)
    seg = _in_flight(peer, app, conn)
    peer.link.send(icmp.error(seg, "source-quench"))
    peer.send("A")
    mss = peer.sut_mss or 536
    app.send(conn, bytes(4 * mss))
    flight = []
    nxt = peer.next_segment(within=0.5)
    while nxt is not None:
        if nxt.payload:
            flight.append(nxt)
        nxt = peer.next_segment(within=0.05)
    require(len(flight) >= 2, "RFC9293/MUST-55",
            "a source quench is silently discarded: after it the SUT still sends more than one segment per flight",
            "at least 2 segments before any ACK", f"{len(flight)} segment(s)")


# --- MUST-56: soft errors --------------------------------------------------------------------

SOFT = {f: icmp.names(f, "soft") for f in ("ipv4", "ipv6")}


@pytest.mark.case("icmp.soft-errors")
@pytest.mark.requires("app")
@pytest.mark.parametrize("error", sorted(set(SOFT["ipv4"]) | set(SOFT["ipv6"])))
def test_soft_error_does_not_abort(stack, peer, app, error):
    """A soft ICMP error about a segment in flight: the connection is not aborted."""
    if error not in SOFT[stack.family]:
        pytest.skip(f"{error} is an ICMP error of {'IPv6' if stack.family == 'ipv4' else 'IPv4'} only")
    listener, conn = established(peer, app)
    seg = _in_flight(peer, app, conn)
    peer.link.send(icmp.error(seg, error))
    peer.expect_none(within=0.2, requirement="RFC9293/MUST-56", what=f"a {error} error draws no reset",
                     skip=lambda s: s.payload and not s.rst)
    _carries_on(peer, app, conn, "RFC9293/MUST-56", f"a {error} error is soft")


# --- MUST-47, SHLD-25, SHLD-20: reporting soft errors ----------------------------------------------

@pytest.mark.case("icmp.soft-error-reported")
@pytest.mark.requires("app")
def test_soft_error_reported_when_asked(stack, peer, app):
    """With error reports on (IP_RECVERR), a soft error about the connection is reported to the application."""
    listener, conn = established(peer, app)
    app.setsockopt(conn, RECVERR[stack.family], 1)
    error, errno_name = SOFT_ERRNO[stack.family]
    seg = _in_flight(peer, app, conn)
    peer.link.send(icmp.error(seg, error))
    peer.expect_none(within=0.1, skip=lambda s: s.payload and not s.rst)
    got = _recv_error(app, conn)
    if got != errno_name:                # not raised on the next call: the socket's pending error
        got = app.error(conn)
    require(got == errno_name, "RFC9293/MUST-47",
            f"the soft error is reported to the application that asked for reports ({RECVERR[stack.family]}): "
            "on its next call or as the socket's pending error", errno_name, got or "no error")
    _carries_on(peer, app, conn, "RFC9293/MUST-56", "after the reported soft error")


@pytest.mark.case("icmp.soft-error-silenced")
@pytest.mark.requires("app")
def test_soft_error_not_reported_when_off(stack, peer, app, profile):
    """With error reports off (the default) a soft error does not fail the application's calls; it stays
    available as the socket's pending error, as the profile documents."""
    b = profile.behaviour("icmp.soft-error-available")
    listener, conn = established(peer, app)
    error, errno_name = SOFT_ERRNO[stack.family]
    seg = _in_flight(peer, app, conn)
    peer.link.send(icmp.error(seg, error))
    peer.expect_none(within=0.1, skip=lambda s: s.payload and not s.rst)
    got = _recv_error(app, conn)
    require(got == "EAGAIN", "RFC9293/SHLD-20",
            "with reports off the soft error is not reported: a receive with nothing to read just times out",
            "EAGAIN", got or "data")
    pending = app.error(conn)
    want = errno_name if b["answer"] == "available" else None
    require(pending == want, b["rule"], f"documented: the socket's pending error is {want or 'empty'} ({b['note']})",
            want or "no error", pending or "no error")
    _carries_on(peer, app, conn, "RFC9293/MUST-56", "after the soft error")
    profile.conclude(b)


# --- SHLD-26: hard errors ------------------------------------------------------------------------

HARD = {f: icmp.names(f, "hard") for f in ("ipv4", "ipv6")}


@pytest.mark.case("icmp.hard-errors")
@pytest.mark.requires("app")
@pytest.mark.parametrize("error", sorted(set(HARD["ipv4"]) | set(HARD["ipv6"])))
def test_hard_error_in_established(stack, peer, app, profile, error):
    """A hard ICMP error (protocol or port unreachable) about a segment in flight, as the profile documents."""
    if error not in HARD[stack.family]:
        pytest.skip(f"{error} is an ICMP error of {'IPv6' if stack.family == 'ipv4' else 'IPv4'} only")
    b = profile.behaviour("icmp.hard-error-established")
    listener, conn = established(peer, app)
    seg = _in_flight(peer, app, conn)
    peer.link.send(icmp.error(seg, error, source=peer.addr))
    peer.expect_none(within=0.1, skip=lambda s: s.payload and not s.rst)
    if b["answer"] == "abort":
        got = None
        try:
            app.recv(conn, timeout=0.2)
        except AppError as e:
            got = e.error
        require(got in ("ECONNREFUSED", "EHOSTUNREACH", "ENOPROTOOPT", "ECONNRESET"), b["rule"],
                f"a {error} error aborts the connection", "an error on the next call", got or "none")
    else:
        _carries_on(peer, app, conn, b["rule"], f"documented: a {error} error in ESTABLISHED is kept as a soft "
                                                f"error ({b['note'][:60]}...)")
    profile.conclude(b)


@pytest.mark.case("icmp.hard-errors")
@pytest.mark.requires("app")
def test_port_unreachable_aborts_an_active_open(stack, peer, app, profile):
    """A port unreachable about the SUT's SYN: the connection attempt is aborted."""
    b = profile.behaviour("icmp.hard-error-syn-sent")
    conn = app.connect(peer.addr, peer.port, bind_port=peer.sut_port)
    syn = peer.expect("S", requirement="RFC9293/3.10.1", what="the SUT's active open sends a SYN")
    peer.link.send(icmp.error(syn, "port-unreachable", source=peer.addr))
    got = None
    for _ in range(20):
        got = app.error(conn)
        if got:
            break
        peer.expect_none(within=0.01)
    if b["answer"] == "abort":
        require(got is not None, b["rule"], "a port unreachable aborts the connection attempt",
                "an error (ECONNREFUSED)", "no error")
        peer.expect_none(within=1.2, requirement=b["rule"], what="no SYN is retransmitted after the abort")
    else:
        peer.expect("S", seq=syn.seq, within=profile.value("initial_rto") * 1.2 + 0.5, requirement=b["rule"],
                    what=f"documented: the SYN is retransmitted ({b['note']})")
    profile.conclude(b)
