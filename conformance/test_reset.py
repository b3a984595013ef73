"""Resets (RFC 9293 §3.5.2): when the stack sends one, and with which numbers.

A reset answers a segment that does not belong to an existing connection:
<SEQ=SEG.ACK><CTL=RST> when the segment carries an ACK, otherwise
<SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>.
"""
import pytest

from harness.verdict import require


@pytest.mark.case("reset.syn-to-closed-port")
def test_syn_to_closed_port(peer):
    """A SYN to a port with no listener is refused with a RST."""
    syn = peer.send("S")
    peer.expect("RA", seq=0, ack=syn.seq + 1, requirement="RFC9293/3.10.7.1",
                what="CLOSED: a segment without ACK draws <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>")


@pytest.mark.case("reset.half-open-dropped")
@pytest.mark.requires("app")
def test_data_to_dropped_half_open_connection(stack, peer, app, profile, tolerance):
    """The third ACK was lost and the server gave up; the client's data draws a RST."""
    profile.set("synack_retries", 0)
    rto = profile.value("initial_rto")
    # A request lives RTO * (2^(retries+1) - 1) after its first SYN-ACK (see handshake.lost-third-ack).
    expiry = rto * (2 ** (profile.value("synack_retries") + 1) - 1)
    app.listen(peer.sut_port)
    peer.send("S")
    synack = peer.expect("SA", ack=peer.iss + 1, what="a listening SUT answers a SYN with a SYN-ACK")
    # Our third ACK is lost: the server drops the half-open connection.
    if "state" in stack.capabilities:
        gone = stack.wait_for_state(peer.sut_port, peer.port, None, within=tolerance.latest(expiry) + 1.0)
        require(gone is not None, "RFC9293/3.10.7.2", "the server drops the half-open connection",
                f"no connection {expiry:g} s after the SYN-ACK", stack.state_of(peer.sut_port, peer.port))
    else:
        peer.expect_none(until=synack.t + tolerance.latest(expiry) + tolerance.allowed(expiry))
    data = peer.send("PA", data=b"are you there?")       # ESTABLISHED at our end
    peer.expect("R", seq=data.ack, requirement="RFC9293/3.10.7.2",
                what="LISTEN: an ACK-bearing segment draws <SEQ=SEG.ACK><CTL=RST>")
    peer.expect_none(within=0.1, what="one RST, nothing else")
