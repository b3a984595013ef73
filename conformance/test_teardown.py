"""Closing a connection (RFC 9293 §3.6).

The stack under test is TCP Peer A of Figure 12 (it closes first) unless a
case says otherwise; the peer plays TCP Peer B.
"""
import pytest

from harness.verdict import require


def _established(peer, app):
    """A connection the SUT accepted; returns the SUT's connection id."""
    listener = app.listen(peer.sut_port)
    peer.connect()
    return app.accept(listener)


def _time_wait(stack, peer, app):
    """Figure 12 with the SUT as Peer A: it closes, we ACK its FIN and send
    ours, its ACK of our FIN puts it in TIME-WAIT."""
    conn = _established(peer, app)
    app.close(conn)
    fin = peer.expect("FA", seq=peer.rcv_nxt, ack=peer.snd_nxt, requirement="RFC9293/3.6",
                      what="CLOSE in ESTABLISHED sends <SEQ=SND.NXT><CTL=FIN,ACK> (FIN-WAIT-1)")
    peer.send("A")                          # SUT: FIN-WAIT-2
    peer.send("FA")                         # SUT: TIME-WAIT
    peer.expect("A", seq=fin.seq + 1, ack=peer.snd_nxt, requirement="RFC9293/3.10.7.4",
                what="our FIN in FIN-WAIT-2 is acknowledged (TIME-WAIT)")
    return fin


def _still_time_wait(stack, peer, after: str) -> None:
    if "state" in stack.capabilities:
        state = stack.state_of(peer.sut_port, peer.port)
        require(state == "TIME-WAIT", "RFC9293/3.10.7.4", f"the socket stays in TIME-WAIT {after}",
                "TIME-WAIT", state)


@pytest.mark.case("teardown.time-wait-fin-retransmission")
@pytest.mark.requires("app")
def test_fin_retransmitted_into_time_wait(stack, peer, app):
    """The peer's FIN, retransmitted once and then several times, reaches the SUT in TIME-WAIT."""
    fin = _time_wait(stack, peer, app)
    _still_time_wait(stack, peer, "after the normal close")
    our_fin = peer.snd_nxt - 1
    for n in range(1, 6):
        peer.send("FA", seq=our_fin, ack=fin.seq + 1)
        peer.expect("A", seq=fin.seq + 1, ack=our_fin + 1, requirement="RFC9293/3.10.7.4",
                    what=f"retransmitted FIN {n} in TIME-WAIT is acknowledged: <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK>")
        _still_time_wait(stack, peer, f"after retransmitted FIN {n}")
