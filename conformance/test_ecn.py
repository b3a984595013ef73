"""Explicit congestion notification (RFC 9293 §3.8.2, RFC 3168 §6.1): an
ECN-setup SYN is answered with an ECN-setup SYN-ACK where the stack does ECN,
and a CE mark on data is echoed with ECE until the peer sends CWR."""
import pytest
from scapy.layers.inet import IP

from harness.icmp import with_ip
from harness.verdict import require

CE = 3                        # the ECN field of a packet a router marked (RFC 3168 §5)


def _ce(pkt):
    if IP in pkt:
        pkt[IP].tos |= CE
    else:
        pkt.tc |= CE
    return pkt


def _flags(seg) -> str:
    return "".join(f for f in "SAFRPUEC" if f in seg.flags)


@pytest.mark.case("ecn.negotiated")
@pytest.mark.requires("app")
def test_ecn_setup_and_congestion_echo(stack, peer, app, profile, observed):
    """An ECN-setup SYN: the SYN-ACK says ECN (ECE, not CWR) as the profile documents; then a CE-marked segment is
    echoed with ECE on the SUT's ACKs until our CWR."""
    b = profile.behaviour("ecn.passive")
    listener = app.listen(peer.sut_port)
    peer.send("SEC")
    synack = peer.expect("SA", ack=peer.iss + 1, requirement="RFC3168/6.1.1",
                         what="an ECN-setup SYN is answered with a SYN-ACK")
    observed["synack_flags"] = _flags(synack)
    ecn = "E" in synack.flags and "C" not in synack.flags
    want = b["answer"] == "ecn"
    require(ecn == want and "C" not in synack.flags, b["rule"],
            f"documented: the SYN-ACK {'is' if want else 'is not'} an ECN-setup SYN-ACK, ECE without CWR "
            f"({b['note']})", "Flags [S.E]" if want else "Flags [S.]", peer.describe(synack) + f" [{_flags(synack)}]")
    peer.send("A")
    conn = app.accept(listener)
    if want:
        with_ip(peer, "PA", _ce, data=b"marked by a congested router")
        ack = peer.expect("A", seq=peer.rcv_nxt, ack=peer.snd_nxt, requirement="RFC3168/6.1.3",
                          what="the data is acknowledged")
        require("E" in ack.flags, "RFC3168/6.1.3", "the ACK of a CE-marked segment carries ECE",
                "Flags [.E]", f"[{_flags(ack)}]")
        peer.send("PA", data=b"not marked")
        again = peer.expect("A", seq=peer.rcv_nxt, ack=peer.snd_nxt, requirement="RFC3168/6.1.3",
                            what="the next data is acknowledged")
        require("E" in again.flags, "RFC3168/6.1.3", "ECE is repeated on every ACK until the peer's CWR",
                "Flags [.E]", f"[{_flags(again)}]")
        peer.send("PAC", data=b"with CWR")
        last = peer.expect("A", seq=peer.rcv_nxt, ack=peer.snd_nxt, requirement="RFC3168/6.1.3",
                           what="the data with CWR is acknowledged")
        require("E" not in last.flags, "RFC3168/6.1.3", "after the peer's CWR the SUT stops echoing ECE",
                "Flags [.]", f"[{_flags(last)}]")
        data = b"marked by a congested router" + b"not marked" + b"with CWR"
        require(app.recv_exactly(conn, len(data)) == data, "RFC3168/6.1.3", "the application reads the data",
                repr(data), "other data")
    profile.conclude(b)
