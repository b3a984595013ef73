"""How the SUT packetizes what its application writes (RFC 9293 §3.7.4,
§3.9.1.2): the Nagle algorithm and TCP_NODELAY, aggregation of small writes,
PSH on the segment that empties the send buffer, nothing held for ever.

The socket API has no PUSH flag: every write is "pushed" (RFC 9293 §3.9.1.2),
so the rules for a TCP without a PUSH call apply (MUST-60, MUST-61)."""
import time

import pytest

from harness.flow import established, receive, stale
from harness.verdict import TimingFailure, require

SMALL = (b"b", b"c", b"d")
HOLD = 0.1                      # well inside any RTO and tail-loss-probe timeout: a held segment is Nagle's
# Options of the listening socket the connection inherits (a negative
# control sets TCP_NODELAY here to show that the Nagle case fails without it).
LISTEN_OPTIONS: dict = {}


@pytest.mark.case("send.nagle")
@pytest.mark.requires("app")
def test_small_writes_wait_for_the_ack(stack, peer, app, observed):
    """A small write goes out at once; small writes behind unacknowledged data wait for its ACK and leave together."""
    listener, conn = established(peer, app, **LISTEN_OPTIONS)
    start = time.monotonic()
    app.send(conn, b"a")
    first = peer.expect("A", seq=peer.rcv_nxt, ack=peer.snd_nxt, data=b"a", requirement="RFC9293/MUST-60",
                        what="a small write with nothing unacknowledged is sent at once, not buffered")
    observed["first_write_sent_after"] = round(first.t - start, 4)
    for chunk in SMALL:
        app.send(conn, chunk)
    peer.expect_none(within=HOLD, requirement="RFC9293/SHLD-7", skip=stale(peer),
                     what="Nagle: with data unacknowledged, a segment smaller than the MSS is held")
    peer.send("A")
    seg = peer.expect("A", seq=peer.rcv_nxt, ack=peer.snd_nxt, requirement="RFC9293/SHLD-27",
                      what="the ACK releases the held writes", skip=stale(peer))
    require(seg.payload == b"".join(SMALL), "RFC9293/SHLD-27",
            "the writes held behind the ACK leave aggregated in one segment (MAY-16, SHLD-27)",
            repr(b"".join(SMALL)), repr(seg.payload))
    peer.send("A")


@pytest.mark.case("send.nodelay")
@pytest.mark.requires("app")
def test_nodelay_sends_small_writes_at_once(stack, peer, app):
    """With TCP_NODELAY a small write leaves at once although earlier data is unacknowledged."""
    listener, conn = established(peer, app)
    app.setsockopt(conn, "TCP_NODELAY", 1)
    app.send(conn, b"a")
    peer.expect("A", seq=peer.rcv_nxt, ack=peer.snd_nxt, data=b"a", requirement="RFC9293/MUST-17",
                what="the first small write is sent")
    for chunk in SMALL:
        written = time.monotonic()
        app.send(conn, chunk)
        seg = peer.expect("A", seq=peer.rcv_nxt, ack=peer.snd_nxt, data=chunk, requirement="RFC9293/MUST-17",
                          what="TCP_NODELAY: a small write is sent at once despite unacknowledged data", within=HOLD,
                          skip=stale(peer))
        if seg.t - written > HOLD:
            raise TimingFailure("RFC9293/MUST-17",
                                f"TCP_NODELAY: the write leaves within {HOLD} s although earlier data is unacknowledged",
                                f"sent within {HOLD} s", f"sent {seg.t - written:.3f} s after the write")
    peer.send("A")


@pytest.mark.case("send.push")
@pytest.mark.requires("app")
@pytest.mark.parametrize("size", [300, 5000])
def test_psh_on_the_segment_that_empties_the_buffer(stack, peer, app, size):
    """The segment that carries the last octet of a write has PSH; the SUT sends full-sized segments before it."""
    listener, conn = established(peer, app)
    data = bytes(range(256)) * (size // 256) + bytes(size % 256)
    app.send(conn, data)
    segs = receive(peer, len(data), "RFC9293/MUST-61", "the SUT sends the write")
    require("P" in segs[-1].flags, "RFC9293/MUST-61",
            "without a PUSH call, PSH is set on the last segment of what was buffered",
            "Flags [P.] on the segment ending the write", peer.describe(segs[-1]))
    full = max(len(s.payload) for s in segs)
    short = [peer.describe(s) for s in segs[:-1] if len(s.payload) < full]
    require(not short, "RFC9293/SHLD-28", "every segment but the last is maximum-sized",
            f"payloads of {full} before the last", "; ".join(short))
