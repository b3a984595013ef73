"""Establishing a connection, continued (RFC 9293 §3.5, §3.10.7.2-3).

Simultaneous open (Figure 7 of RFC 9293), with the stack under test as TCP
Peer A, and data carried on a plain SYN. Sequence numbers are relative to ISS
(ours) and IRS (the SUT's), as in the RFC's figures.
"""
import pytest

from harness.agent import AppError
from harness.verdict import require


def _one_socket(stack, peer, state: str, when: str) -> None:
    """The SUT has exactly one socket on its port, for this 4-tuple, in `state`."""
    if "state" not in stack.capabilities:
        return
    socks = stack.states(peer.sut_port)
    seen = [f"{s['remote'][1]} {s['state']}" for s in socks]
    require(len(socks) == 1 and socks[0]["remote"][1] == peer.port and socks[0]["state"] == state,
            "RFC9293/MUST-10", f"simultaneous open makes one connection: {when}",
            f"one socket, to port {peer.port}, in {state}", f"sockets: {seen or 'none'}")


@pytest.mark.case("handshake.simultaneous-open")
@pytest.mark.requires("app")
@pytest.mark.parametrize("completion", ["synack", "ack"])
def test_simultaneous_open(stack, peer, app, completion):
    """The SUT's SYN and ours cross: SYN-SENT -> SYN-RECEIVED -> ESTABLISHED, one connection."""
    conn = app.connect(peer.addr, peer.port, bind_port=peer.sut_port)
    syn = peer.expect("S", requirement="RFC9293/3.10.1", what="the SUT's active open sends a SYN (SYN-SENT)")
    # Figure 7, line 3: our SYN crosses the SUT's.
    peer.send("S")
    peer.expect("SA", seq=syn.seq, ack=peer.iss + 1, requirement="RFC9293/3.10.7.3",
                what="SYN-SENT, a SYN without ACK: enter SYN-RECEIVED and send <SEQ=ISS><ACK=RCV.NXT><CTL=SYN,ACK>"
                     " with the original ISS")
    _one_socket(stack, peer, "SYN-RECEIVED", "after the crossing SYN")
    if completion == "synack":
        # Figure 7, line 6: our SYN-ACK; its TSecr echoes the SUT's TSval.
        ts = [("NOP", None), ("NOP", None), ("Timestamp", (peer.tsval(), peer.ts_recent))] if peer.ts_on else []
        peer.send("SA", seq=peer.iss, ack=syn.seq + 1,
                  options=[(n, v) for n, v in peer.syn_options if n != "Timestamp"] + ts)
        answer = peer.next_segment(within=1.0)
        if answer is not None:
            require(peer.mismatch(answer, frozenset("A"), syn.seq + 1, peer.iss + 1) == [], "RFC9293/3.10.7.4",
                    "the SUT may acknowledge our SYN-ACK, with <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK> and nothing else",
                    f"Flags [.], seq 1, ack 1", peer.describe(answer))
    else:
        peer.send("A", ack=syn.seq + 1)
    if "state" in stack.capabilities:
        require(stack.wait_for_state(peer.sut_port, peer.port, "ESTABLISHED", within=1.0) is not None,
                "RFC9293/3.10.7.4", f"our {'SYN-ACK' if completion == 'synack' else 'ACK'} acknowledges the SUT's SYN: "
                "SYN-RECEIVED -> ESTABLISHED", "ESTABLISHED", stack.state_of(peer.sut_port, peer.port))
    _one_socket(stack, peer, "ESTABLISHED", "after the handshake")
    # Data flows both ways on that one connection.
    data = b"from the SUT, simultaneously opened"
    app.send(conn, data)
    peer.expect("A", seq=syn.seq + 1, ack=peer.iss + 1, data=data, requirement="RFC9293/3.10.7.4",
                what="the established connection carries the SUT's data from ISS+1")
    ours = b"from the peer"
    peer.send("PA", data=ours)
    peer.expect("A", seq=syn.seq + 1 + len(data), ack=peer.snd_nxt, requirement="RFC9293/3.10.7.4",
                what="the SUT acknowledges our data")
    got = app.recv_exactly(conn, len(ours))
    require(got == ours, "RFC9293/3.10.7.4", "the application reads the peer's data", ours, got)


# What each documented answer to a plain SYN carrying data leaves for the
# application once the handshake is complete: the data, or nothing until the
# peer sends it again.
SYN_DATA_ANSWERS = {"queue": True, "discard": False}


@pytest.mark.case("handshake.syn-data-without-fastopen")
@pytest.mark.requires("app")
def test_data_on_plain_syn_is_not_delivered_early(stack, peer, app, profile):
    """A SYN without a Fast Open option carries data."""
    b = profile.behaviour("listen.syn-data-without-fastopen")
    listener = app.listen(peer.sut_port)
    data = b"data on a SYN without a Fast Open cookie"
    peer.send("S", data=data)
    synack = peer.expect("SA", ack=peer.iss + 1, requirement="RFC9293/3.10.7.2",
                         what="LISTEN: the SYN-ACK acknowledges the SYN, <ACK=SEG.SEQ+1>, not the text queued behind it")
    try:
        early = app.accept(listener, timeout=0.05)
    except AppError as e:
        early = e.error
    require(early == "EAGAIN", "RFC9293/3.10.7.2",
            "text on a SYN is processed only after the handshake: no connection to accept in SYN-RECEIVED",
            "accept(): EAGAIN", f"accept(): {early}")
    # The third ACK, from SND.UNA = ISS+1: what the SYN-ACK acknowledged.
    peer.snd_nxt = peer.snd_una = peer.iss + 1
    peer.send("A", ack=synack.seq + 1)
    conn = app.accept(listener)
    if SYN_DATA_ANSWERS[b["answer"]]:
        peer.expect("A", seq=synack.seq + 1, ack=peer.iss + 1 + len(data), requirement=b["rule"],
                    what=f"documented: the queued text is processed in ESTABLISHED and acknowledged ({b['note']})")
        got = app.recv_exactly(conn, len(data))
        require(got == data, b["rule"], f"documented: the application reads the SYN's text ({b['note']})", data, got)
    else:
        try:
            got = app.recv(conn, timeout=0.1)
        except AppError as e:
            got = e.error
        require(got == "EAGAIN", b["rule"], f"documented: the SYN's text was discarded ({b['note']})",
                "recv(): nothing to read (EAGAIN)", f"recv(): {got!r}")
        # The peer sends it again: now it is delivered, once.
        peer.send("PA", data=data)
        peer.expect("A", seq=synack.seq + 1, ack=peer.iss + 1 + len(data), requirement="RFC9293/3.10.7.4",
                    what="the data sent again after the handshake is acknowledged")
        got = app.recv_exactly(conn, len(data))
        require(got == data, "RFC9293/3.10.7.4", "the application reads the data once, as sent again", data, got)
    profile.conclude(b)
