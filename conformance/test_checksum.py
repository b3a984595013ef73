"""The TCP checksum, both ways (RFC 9293 §3.1).

Every segment the SUT sends is checked by the Peer as it is read (MUST-2);
the first case makes the SUT send every kind of segment so that each is
checked. A segment the peer sends with a wrong checksum, or with a zero
checksum field (tcpreq's ZeroChecksumTest), must be discarded: no SYN-ACK for
a SYN, no ACK and no delivery for data, no reset for a RST (MUST-3); the same
segment sent again with its right checksum then takes effect.
"""
import pytest
from scapy.layers.inet import TCP

from harness.flow import established, receive, stale
from harness.segment import seq_add
from harness.verdict import require


def corrupt(pkt, zero: bool = False):
    """The packet with a wrong TCP checksum: the right one with one bit
    flipped, or zero (when zero is not the right one)."""
    raw = bytearray(bytes(pkt))                        # Scapy fills in the right checksum
    at = len(raw) - len(bytes(pkt[TCP])) + 16          # the checksum field of the TCP header
    good = int.from_bytes(raw[at:at + 2], "big")
    bad = 0 if zero and good != 0 else good ^ 0x0100
    raw[at:at + 2] = bad.to_bytes(2, "big")
    return bytes(raw)


def _send_bad(peer, flags: str, zero: bool, data: bytes = b"", seq=None, **kw):
    """Send one segment with a wrong checksum; no variable of ours moves."""
    pkt = peer.packet(flags, seq=peer.snd_nxt if seq is None else seq, data=data, **kw)
    return peer.link.send(corrupt(pkt, zero))


# --- MUST-2 -------------------------------------------------------------------------------

@pytest.mark.case("checksum.sent")
@pytest.mark.requires("app")
def test_every_segment_of_the_sut_has_a_valid_checksum(stack, peer, app, observed):
    """SYN-ACK, ACKs, data of odd and even lengths, FIN: every checksum the SUT computes verifies."""
    listener, conn = established(peer, app)
    for data in (b"odd", b"even", bytes(range(256)) * 5 + b"!"):
        app.send(conn, data)
        receive(peer, len(data), "RFC9293/MUST-2", "the SUT sends its data")
        peer.send("PA", data=data)
        peer.expect("A", seq=peer.rcv_nxt, ack=peer.snd_nxt, requirement="RFC9293/MUST-2",
                    what="the SUT acknowledges our data", skip=stale(peer))
        app.recv_exactly(conn, len(data))
    app.close(conn)
    peer.expect("FA", seq=peer.rcv_nxt, requirement="RFC9293/MUST-2", what="the SUT's FIN", skip=stale(peer))
    sent = [e for e in stack.trace.entries if peer.mine(e)]
    observed["segments_checked"] = len(sent)
    bad = [peer.describe(e) for e in sent if not e.checksum_ok]
    require(not bad, "RFC9293/MUST-2", "every segment the SUT sent carries a checksum that verifies",
            "valid checksums", "; ".join(bad))


# --- MUST-3 -------------------------------------------------------------------------------

KINDS = {"flipped": False, "zero": True}


@pytest.mark.case("checksum.verified")
@pytest.mark.requires("app")
@pytest.mark.parametrize("kind", list(KINDS))
def test_syn_with_bad_checksum_is_discarded(stack, peer, app, kind):
    """A SYN with a wrong checksum draws nothing; the same SYN with its right checksum draws a SYN-ACK."""
    app.listen(peer.sut_port)
    _send_bad(peer, "S", KINDS[kind])
    peer.expect_none(within=0.5, requirement="RFC9293/MUST-3",
                     what="a SYN with a wrong TCP checksum is discarded: no SYN-ACK, no RST")
    peer.send("S")
    peer.expect("SA", ack=peer.iss + 1, requirement="RFC9293/MUST-3",
                what="the same SYN with its right checksum is answered")


@pytest.mark.case("checksum.verified")
@pytest.mark.requires("app")
@pytest.mark.parametrize("kind", list(KINDS))
def test_data_with_bad_checksum_is_discarded(stack, peer, app, kind):
    """Data with a wrong checksum is neither acknowledged nor delivered; sent again correctly it is, once."""
    listener, conn = established(peer, app)
    data = b"this segment's checksum is wrong"
    _send_bad(peer, "PA", KINDS[kind], data=data)
    peer.expect_none(within=0.5, requirement="RFC9293/MUST-3",
                     what="a data segment with a wrong checksum is discarded: it draws no ACK")
    try:
        early = app.recv(conn, timeout=0.05)
    except Exception:          # EAGAIN: nothing to read, as required
        early = b""
    require(early == b"", "RFC9293/MUST-3", "the data of a segment with a wrong checksum is not delivered",
            "nothing to read", repr(early))
    peer.send("PA", data=data)
    peer.expect("A", seq=peer.rcv_nxt, ack=peer.snd_nxt, requirement="RFC9293/MUST-3",
                what="the same data with its right checksum is acknowledged")
    got = app.recv_exactly(conn, len(data))
    require(got == data, "RFC9293/MUST-3", "the application reads the data once", repr(data), repr(got))


@pytest.mark.case("checksum.verified")
@pytest.mark.requires("app")
def test_rst_with_bad_checksum_is_discarded(stack, peer, app):
    """A RST at RCV.NXT with a wrong checksum resets nothing: the connection still carries data."""
    listener, conn = established(peer, app)
    _send_bad(peer, "R", False)
    peer.expect_none(within=0.2, requirement="RFC9293/MUST-3", what="a RST with a wrong checksum draws nothing")
    data = b"still connected"
    peer.send("PA", data=data)
    peer.expect("A", seq=peer.rcv_nxt, ack=peer.snd_nxt, requirement="RFC9293/MUST-3",
                what="a RST with a wrong checksum is discarded: the connection goes on")
    require(app.recv_exactly(conn, len(data)) == data, "RFC9293/MUST-3",
            "the application still reads from the connection", repr(data), "other data or an error")
    peer.send("R", seq=seq_add(peer.snd_nxt, 0))
