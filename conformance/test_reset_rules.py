"""Resets the RFC numbers (RFC 9293 §3.5, §3.5.3, §3.4, §3.6): a RST in
SYN-RECEIVED returns a passive open to LISTEN and refuses an active one
(MUST-11); a RST may carry data (SHLD-2); a zero receive window does not
stop a RST (MUST-66). The application's side is read through the app
control: what a call on the reset connection returns (MUST-12)."""
import pytest

from harness.agent import AppError
from harness.flow import established, fill_window
from harness.verdict import require

RESET_ERRORS = ("ECONNRESET", "EPIPE", "ECONNABORTED")


def _call_error(call) -> str | None:
    """The errno name the call fails with (None: it returned)."""
    try:
        call()
    except AppError as e:
        return e.error
    return None


def _closed(peer, requirement: str, what: str, **probe) -> None:
    """The 4-tuple is CLOSED: a segment with ACK draws a reset at SEG.ACK
    (<SEQ=SEG.ACK><CTL=RST>, §3.10.7.1; whether the reset also carries ACK
    is the reset cases' business, not this check's)."""
    __tracebackhide__ = True
    sent = peer.send("A", **probe)
    seg = peer.next_segment(within=0.5)
    require(seg is not None and seg.rst and seg.seq == sent.ack, requirement,
            f"{what}: the 4-tuple is CLOSED, a segment to it draws a reset <SEQ=SEG.ACK><CTL=RST>",
            f"Flags [R], seq {peer.rel_sut(sent.ack)}", peer.describe(seg) if seg else "nothing")


def _reset(stack, peer, app, conn, requirement: str, what: str) -> None:
    """The connection is gone: a later segment draws a RST, and the
    application is told the connection was reset."""
    _closed(peer, requirement, what, data=b"anyone there?")
    err = _call_error(lambda: app.recv(conn, timeout=0.2)) or _call_error(lambda: app.send(conn, b"x"))
    require(err in RESET_ERRORS, "RFC9293/MUST-12", f"{what}: the application is told the connection was reset",
            " or ".join(RESET_ERRORS), err or "the call succeeded")


# --- MUST-11 -------------------------------------------------------------------------------

@pytest.mark.case("reset.syn-received-origin")
@pytest.mark.requires("app")
def test_rst_in_passive_syn_received_returns_to_listen(stack, peer, app):
    """Passive open: a RST in SYN-RECEIVED drops the half-open connection and the listener keeps listening."""
    listener = app.listen(peer.sut_port)
    peer.send("S")
    peer.expect("SA", ack=peer.iss + 1, what="LISTEN: a SYN draws a SYN-ACK (SYN-RECEIVED)")
    peer.send("R", seq=peer.iss + 1)
    peer.expect_none(within=0.2, requirement="RFC9293/MUST-11", what="the RST is not answered")
    if "state" in stack.capabilities:
        states = [s["state"] for s in stack.states(peer.sut_port)]
        require(states == ["LISTEN"], "RFC9293/MUST-11",
                "a RST in a passive SYN-RECEIVED returns to LISTEN: only the listener is left",
                "LISTEN", ", ".join(states) or "no socket")
    err = _call_error(lambda: app.accept(listener, timeout=0.1))
    require(err == "EAGAIN", "RFC9293/MUST-11", "the reset half-open connection is not handed to the application",
            "nothing to accept (EAGAIN)", err or "a connection was accepted")
    peer.iss = peer.snd_una = peer.snd_nxt = (peer.iss + 1_000_000) % (1 << 32)
    peer.send("S")
    peer.expect("SA", ack=peer.iss + 1, requirement="RFC9293/MUST-11",
                what="the listener still listens: a new SYN draws a SYN-ACK")
    peer.send("A")
    app.accept(listener)


@pytest.mark.case("reset.syn-received-origin")
@pytest.mark.requires("app")
def test_rst_in_active_syn_received_refuses_the_connection(stack, peer, app, profile):
    """Active open through simultaneous open: a RST in SYN-RECEIVED closes it and the application is refused."""
    b = profile.behaviour("syn-received.active-open-reset")
    conn = app.connect(peer.addr, peer.port, bind_port=peer.sut_port)
    syn = peer.expect("S", requirement="RFC9293/3.10.1", what="the SUT's active open sends a SYN")
    peer.send("S")                               # crossing SYN: the SUT enters SYN-RECEIVED
    peer.expect("SA", seq=syn.seq, ack=peer.iss + 1, requirement="RFC9293/MUST-10",
                what="SYN-SENT and a SYN: SYN-RECEIVED, <SEQ=ISS><ACK=RCV.NXT><CTL=SYN,ACK>")
    peer.send("R", seq=peer.iss + 1)
    peer.expect_none(within=0.2, requirement="RFC9293/MUST-11", what="the RST is not answered")
    if "state" in stack.capabilities:
        state = stack.state_of(peer.sut_port, peer.port)
        require(state in (None, "CLOSED"), "RFC9293/MUST-11",
                "an active SYN-RECEIVED and a RST: CLOSED (not LISTEN: there was no passive open)",
                "CLOSED (the application still holds the socket) or no socket", state)
    _closed(peer, "RFC9293/MUST-11", "an active SYN-RECEIVED and a RST", seq=peer.iss + 1, ack=syn.seq + 1)
    err = app.error(conn)
    require(err == b["answer"], b["rule"],
            f"the application is told the connection was refused; documented: {err} ({b['note']})",
            b["answer"], err or "no error")
    profile.conclude(b)


# --- SHLD-2 --------------------------------------------------------------------------------

@pytest.mark.case("reset.with-data")
@pytest.mark.requires("app")
def test_rst_carrying_data_resets(stack, peer, app):
    """A RST at RCV.NXT that carries data (a diagnostic text) resets the connection."""
    listener, conn = established(peer, app)
    peer.send("RA", data=b"connection reset: the peer gave up")
    peer.expect_none(within=0.2, requirement="RFC9293/SHLD-2", what="the RST is not answered")
    _reset(stack, peer, app, conn, "RFC9293/SHLD-2", "a RST with data at RCV.NXT is accepted")


# --- MUST-66 -------------------------------------------------------------------------------

@pytest.mark.case("reset.zero-window")
@pytest.mark.requires("app")
def test_rst_processed_with_zero_window(stack, peer, app, observed):
    """The SUT's receive window is zero (its application reads nothing): a RST at RCV.NXT still resets."""
    listener = app.listen(peer.sut_port)
    try:
        app.setsockopt(listener, "SO_RCVBUF", 4096)   # a small buffer closes the window sooner
    except AppError as e:
        if e.error != "EOPNOTSUPP":
            raise
    peer.connect()
    conn = app.accept(listener)
    fill_window(peer, "RFC9293/MUST-66", "the SUT's window closes while its application reads nothing")
    observed["octets_to_close_the_window"] = (peer.snd_nxt - peer.iss - 1) % (1 << 32)
    peer.send("R")
    peer.expect_none(within=0.2, requirement="RFC9293/MUST-66", what="the RST is not answered")
    _reset(stack, peer, app, conn, "RFC9293/MUST-66", "a RST at RCV.NXT is processed at a zero window")
