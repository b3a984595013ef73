"""Establishing a connection (RFC 9293 §3.5).

The peer is TCP Peer A of the RFC's figures, the stack under test TCP Peer B
(or A, where it opens actively). Sequence numbers are written as the RFC
writes them: relative to ISS (ours) and IRS (the SUT's).
"""
import pytest

from harness import plot
from harness.peer import ANSWER_WITHIN
from harness.verdict import require, require_interval

# What each documented answer to a SYN arriving in a passive SYN-RECEIVED
# looks like on the wire, segment by segment. `synack` is the SUT's SYN-ACK,
# `syn` the SYN sent.
SYN_RECEIVED_ANSWERS = {
    "synack": lambda peer, synack, syn: [dict(flags="SA", seq=synack.seq, ack=peer.iss + 1)],
    "ack": lambda peer, synack, syn: [dict(flags="A", seq=synack.seq + 1, ack=peer.iss + 1)],
    "rst": lambda peer, synack, syn: [dict(flags="RA", seq=0, ack=syn.seq + syn.seg_len)],
    # the connection's own reset (<SEQ=SND.NXT><ACK=RCV.NXT>), then the SYN's
    "rst-twice": lambda peer, synack, syn: [dict(flags="RA", seq=synack.seq + 1, ack=peer.iss + 1),
                                            dict(flags="RA", seq=0, ack=syn.seq + syn.seg_len)],
    # the connection's reset without ACK, <SEQ=SND.NXT><CTL=RST>
    "rst-snd-nxt": lambda peer, synack, syn: [dict(flags="R", seq=synack.seq + 1)],
}


def _syn_received(peer, app):
    """LISTEN -> SYN-RECEIVED: our SYN and the SUT's SYN-ACK (lines 2-3 of Figure 6)."""
    app.listen(peer.sut_port)
    peer.send("S")
    return peer.expect("SA", ack=peer.iss + 1, requirement="RFC9293/3.10.7.2",
                       what="a SYN to a listening port draws a SYN-ACK acknowledging ISS+1")


def _answer(peer, profile, key, synack, syn):
    """Check the SUT's answer to `syn` against what its profile documents."""
    b = profile.behaviour(key)
    # The answer is immediate; waiting less than the initial RTO keeps the
    # SYN-ACK timer's own retransmission from passing for it.
    within = profile.value("initial_rto") / 2
    if b["answer"] == "silence":
        peer.expect_none(within=within, requirement=b["rule"], what=f"documented answer: none ({b['note']})")
    else:
        for segment in SYN_RECEIVED_ANSWERS[b["answer"]](peer, synack, syn):
            peer.expect(**segment, within=within, requirement=b["rule"],
                        what=f"documented answer: {b['answer']} ({b['note']})")
    return b


@pytest.mark.case("handshake.old-duplicate-syn")
@pytest.mark.requires("app")
def test_original_syn_again_in_syn_received(stack, peer, app, profile):
    """The peer's original SYN arrives again while the SUT is in SYN-RECEIVED."""
    synack = _syn_received(peer, app)
    syn = peer.send("S", seq=peer.iss)
    b = _answer(peer, profile, "syn-received.retransmitted-syn", synack, syn)
    # The half-open connection survives: our third ACK completes it.
    peer.send("A", seq=peer.iss + 1, ack=synack.seq + 1)
    peer.expect_none(within=0.2, what="the third ACK completes the handshake silently")
    if "state" in stack.capabilities:
        require(stack.wait_for_state(peer.sut_port, peer.port, "ESTABLISHED", ANSWER_WITHIN) is not None,
                "RFC9293/3.10.7.4", "the connection is established after the duplicate SYN", "ESTABLISHED",
                stack.state_of(peer.sut_port, peer.port))
    profile.conclude(b)


@pytest.mark.case("handshake.old-duplicate-syn")
@pytest.mark.requires("app")
def test_old_duplicate_syn_with_earlier_isn(stack, peer, app, profile):
    """An old duplicate SYN with an earlier ISN (outside the window) reaches SYN-RECEIVED."""
    synack = _syn_received(peer, app)
    syn = peer.send("S", seq=peer.iss - 100000)
    b = _answer(peer, profile, "syn-received.old-syn", synack, syn)
    peer.send("A", seq=peer.iss + 1, ack=synack.seq + 1)
    peer.expect_none(within=0.2, what="the third ACK of the real handshake is still accepted")
    if "state" in stack.capabilities:
        require(stack.wait_for_state(peer.sut_port, peer.port, "ESTABLISHED", ANSWER_WITHIN) is not None,
                "RFC9293/3.10.7.4", "the old duplicate did not disturb the half-open connection", "ESTABLISHED",
                stack.state_of(peer.sut_port, peer.port))
    profile.conclude(b)


@pytest.mark.case("handshake.old-duplicate-syn")
@pytest.mark.requires("app")
def test_syn_with_other_isn_in_window(stack, peer, app, profile):
    """A SYN with another ISN inside the receive window reaches a passive SYN-RECEIVED: back to LISTEN."""
    synack = _syn_received(peer, app)
    syn = peer.send("S", seq=peer.iss + 1000)
    b = _answer(peer, profile, "syn-received.in-window-syn", synack, syn)
    if "state" in stack.capabilities:
        require(stack.wait_for_state(peer.sut_port, peer.port, None, ANSWER_WITHIN) is not None, "RFC9293/3.10.7.4",
                "a passive SYN-RECEIVED returns to LISTEN: the half-open connection is gone",
                "no connection, listener in LISTEN", stack.state_of(peer.sut_port, peer.port))
    # Back in LISTEN: a new SYN opens a new connection.
    peer.iss = peer.snd_una = peer.snd_nxt = peer.iss + 50000
    peer.send("S")
    peer.expect("SA", ack=peer.iss + 1, requirement="RFC9293/3.10.7.4",
                what="the listener is back in LISTEN and answers a new SYN")
    profile.conclude(b)


@pytest.mark.case("handshake.old-duplicate-syn")
@pytest.mark.requires("app")
def test_client_resets_synack_acking_unsent(stack, peer, app):
    """As client in SYN-SENT the SUT gets a SYN-ACK acknowledging something it never sent (Figure 8)."""
    app.connect(peer.addr, peer.port, bind_port=peer.sut_port)
    syn = peer.expect("S", what="the SUT's active open sends a SYN")
    bogus = syn.seq + 1 + 1000                  # acknowledges data never sent
    peer.send("SA", ack=bogus)
    peer.expect("R", seq=bogus, requirement="RFC9293/3.10.7.3",
                what="SEG.ACK > SND.NXT in SYN-SENT: send <SEQ=SEG.ACK><CTL=RST>")
    if "state" in stack.capabilities:
        require(stack.state_of(peer.sut_port, peer.port) == "SYN-SENT", "RFC9293/3.10.7.3",
                "the SUT discards the bad segment and stays in SYN-SENT", "SYN-SENT",
                stack.state_of(peer.sut_port, peer.port))
    # Recovery (Figure 8, lines 6-8): the SYN is answered properly and the
    # connection is established. The SUT may retransmit its SYN first.
    again = peer.next_segment(within=1.5)
    if again is not None:
        require("S" in again.flags and again.seq == syn.seq, "RFC9293/3.10.7.3",
                "a retransmission of the same SYN", f"SYN seq {syn.seq}", peer.describe(again))
    peer.send("SA", seq=peer.iss, ack=syn.seq + 1)
    peer.expect("A", seq=syn.seq + 1, ack=peer.iss + 1, requirement="RFC9293/3.10.7.3",
                what="an acceptable SYN-ACK in SYN-SENT: ESTABLISHED and <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK>")


@pytest.mark.case("handshake.lost-third-ack")
@pytest.mark.requires("app")
@pytest.mark.parametrize("retries", [pytest.param(2, id="retries-2"),
                                     pytest.param(None, id="default", marks=pytest.mark.slow)])
def test_synack_retransmitted_then_dropped(stack, peer, app, profile, tolerance, observed, figures, retries):
    """The third ACK never comes: SYN-ACK retransmissions back off, then the request is dropped."""
    if retries is not None:
        profile.set("synack_retries", retries)
    retries = profile.value("synack_retries")
    rto = profile.value("initial_rto")
    synack = _syn_received(peer, app)
    previous = synack
    observed["synack_retransmissions"] = []        # seconds after the first SYN-ACK
    measured = []
    try:
        for n in range(1, retries + 1):
            interval = rto * 2 ** (n - 1)
            seg = peer.expect("SA", seq=synack.seq, ack=peer.iss + 1, within=tolerance.latest(interval),
                              requirement="RFC6298/5.5",
                              what=f"SYN-ACK retransmission {n} of {retries} ({profile.doc('synack_retries')})")
            measured.append(seg.t - previous.t)
            require_interval(seg.t - previous.t, interval, tolerance, "RFC6298/5.5",
                             f"interval before SYN-ACK retransmission {n}: the RTO doubles from {rto:g} s")
            observed["synack_retransmissions"].append(round(seg.t - synack.t, 3))
            previous = seg
    finally:
        figures.append(plot.backoff(f"SYN-ACK retransmission intervals: {retries}, the RTO doubling from {rto:g} s",
                                    measured, [rto * 2 ** k for k in range(retries)], tolerance))
    # No further retransmission: the request expires one more (doubled) RTO later.
    expiry = rto * 2 ** retries
    peer.expect_none(until=previous.t + expiry - tolerance.allowed(expiry),
                     requirement="RFC6298/5.5", what=f"no more than {retries} SYN-ACK retransmissions")
    if "state" in stack.capabilities:
        gone = stack.wait_for_state(peer.sut_port, peer.port, None, within=2 * tolerance.allowed(expiry) + 1.0)
        require(gone is not None, "RFC6298/5.5", "the half-open connection is dropped after the last retransmission",
                f"no connection {expiry:g} s after the last SYN-ACK", stack.state_of(peer.sut_port, peer.port))
        require_interval(gone - previous.t, expiry, tolerance, "RFC6298/5.5",
                         "the request is dropped one doubled RTO after the last SYN-ACK")
        observed["request_dropped_after"] = round(gone - synack.t, 3)
    else:
        peer.expect_none(within=2 * tolerance.allowed(expiry))
    # The late third ACK now reaches a LISTEN socket.
    late = peer.send("A", seq=peer.iss + 1, ack=synack.seq + 1)
    peer.expect("R", seq=late.ack, requirement="RFC9293/3.10.7.2",
                what="an ACK to a LISTEN socket draws <SEQ=SEG.ACK><CTL=RST>")


@pytest.mark.case("handshake.data-ack-to-syn-received")
@pytest.mark.requires("app")
def test_data_on_third_ack_is_delivered(stack, peer, app):
    """The third segment of the handshake is an ACK carrying data."""
    listener = app.listen(peer.sut_port)
    peer.send("S")
    synack = peer.expect("SA", ack=peer.iss + 1)
    data = bytes(range(256)) * 4 + b"third-ack data"
    peer.send("PA", data=data)
    peer.expect("A", seq=synack.seq + 1, ack=peer.iss + 1 + len(data), requirement="RFC9293/3.10.7.4",
                what="SYN-RECEIVED -> ESTABLISHED on the acceptable ACK, and the data is acknowledged")
    if "state" in stack.capabilities:
        state = stack.state_of(peer.sut_port, peer.port)
        require(state == "ESTABLISHED", "RFC9293/3.10.7.4", "the data-carrying ACK completes the handshake",
                "ESTABLISHED", state)
    conn = app.accept(listener)
    got = app.recv_exactly(conn, len(data))
    require(got == data, "RFC9293/3.10.7.4", "the application reads the data of the third segment byte for byte",
            f"{len(data)} octets as sent", f"{len(got)} octets" + ("" if data.startswith(got) else ", different"))
