"""RFC 7413 TCP Fast Open, the SUT as server and as client, where the stack has it.

The profile's behaviour "fastopen" says whether the stack has Fast Open
(Linux: server and client, switched by tcp_fastopen; gVisor and lwIP: none,
so these cases skip). A Fast Open option is kind 34: empty on a SYN it
requests a cookie; with a cookie on a SYN it lets the SYN's data be taken
before the handshake completes (RFC 7413 §4).
"""
import random
import struct

import pytest

from harness.agent import AppError
from harness.peer import Peer
from harness.verdict import require

REQUEST = ("TFO", b"")
SYN = [("MSS", 1460), ("NOP", None), ("WScale", 7)]


def _fastopen(profile, role: str) -> None:
    b = profile.behaviour("fastopen")
    if role not in b["answer"]:
        pytest.skip(f"the stack has no Fast Open {role}: {b['note'][:100]}")
    profile.set("fastopen", profile.value("fastopen_on"))


def _cookie(seg) -> bytes | None:
    """The cookie of a segment's Fast Open option (b'' for a request), None without one."""
    if not seg.has_option("TFO"):
        return None
    v = seg.option("TFO")
    return struct.pack("!II", *v) if isinstance(v, tuple) else bytes(v)


def _another(peer, stack) -> Peer:
    """A second connection of the tester to the same SUT port, from another port."""
    rng = random.Random(peer.iss)
    other = Peer(stack.link, stack.family, stack.peer_addr, stack.sut_addr, peer.port + 1, peer.sut_port, rng,
                 requirement=peer.requirement)
    other.cursor = peer.cursor
    other.syn_options = list(SYN)
    return other


def _server(peer, app):
    """A listener with Fast Open, and a cookie it gave us for the asking."""
    listener = app.listen(peer.sut_port, TCP_FASTOPEN=16)
    peer.syn_options = list(SYN) + [REQUEST]
    peer.send("S")
    synack = peer.expect("SA", ack=peer.iss + 1, requirement="RFC7413/4.1.2",
                         what="a SYN with a cookie request draws a SYN-ACK")
    cookie = _cookie(synack)
    require(cookie and 4 <= len(cookie) <= 16, "RFC7413/4.1.2",
            "the server answers a cookie request with a cookie of 4 to 16 octets in its SYN-ACK",
            "TFO option with a cookie", f"{peer.describe(synack)} cookie {cookie!r}")
    peer.send("A")
    app.accept(listener)
    return listener, cookie


@pytest.mark.case("rfc7413.server-cookie")
@pytest.mark.requires("app")
def test_server_gives_a_cookie_and_takes_data_with_it(stack, peer, app, profile, observed):
    """A cookie on request; then a SYN with that cookie and data: the data is acknowledged and delivered at once."""
    _fastopen(profile, "server")
    listener, cookie = _server(peer, app)
    observed["cookie_length"] = len(cookie)
    second = _another(peer, stack)
    second.syn_options = list(SYN) + [("TFO", cookie)]
    data = b"GET / fast\r\n"
    syn = second.send("S", data=data)
    synack = second.expect("SA", ack=syn.seq + 1 + len(data), requirement="RFC7413/4.2.2",
                           what="a valid cookie: the SYN-ACK acknowledges the SYN and its data")
    conn = app.accept(listener, timeout=0.5)
    got = app.recv(conn, timeout=0.5)
    require(got == data, "RFC7413/4.2.2", "the server may hand the SYN's data to the application before the "
            "handshake completes", data, got)
    second.send("A")
    second.expect_none(within=0.05, what="the handshake completes: nothing more")
    del synack


@pytest.mark.case("rfc7413.server-invalid-cookie")
@pytest.mark.requires("app")
def test_server_ignores_data_with_an_invalid_cookie(stack, peer, app, profile, observed):
    """A SYN with a forged cookie and data: only the SYN is acknowledged; the data waits for the handshake."""
    _fastopen(profile, "server")
    listener, cookie = _server(peer, app)
    second = _another(peer, stack)
    forged = bytes(b ^ 0xFF for b in cookie)
    second.syn_options = list(SYN) + [("TFO", forged)]
    data = b"forged cookie"
    syn = second.send("S", data=data)
    synack = second.expect("SA", ack=syn.seq + 1, requirement="RFC7413/4.2.2",
                           what="an invalid cookie: the SYN-ACK acknowledges the SYN only, not its data")
    observed["fresh_cookie_offered"] = _cookie(synack) is not None
    second.snd_nxt = synack.ack                       # our data was not taken
    try:
        early = app.accept(listener, timeout=0.2)
    except AppError as e:
        early = e.error
    require(early == "EAGAIN", "RFC7413/4.2.2", "without a valid cookie the connection is not handed to the "
            "application before the handshake completes", "no connection to accept (EAGAIN)", early)
    second.send("A")
    second.send("PA", data=data)                     # the client sends the data again after the handshake
    second.expect("A", ack=second.snd_nxt, what="the data, sent again after the handshake, is acknowledged")
    conn = app.accept(listener)
    require(app.recv_exactly(conn, len(data)) == data, "RFC7413/4.2.2", "the data reaches the application "
            "once it is sent after the handshake", data, "other")


@pytest.mark.case("rfc7413.client")
@pytest.mark.requires("app")
@pytest.mark.parametrize("server", ["takes-data", "drops-data"])
def test_client_requests_then_uses_a_cookie(stack, peer, app, profile, observed, server):
    """The client asks for a cookie, then sends data in its SYN with it; data the SYN-ACK does not acknowledge is sent again."""
    _fastopen(profile, "client")
    cookie = random.Random(peer.iss).randbytes(8)    # ours alone: a remote SUT may cache others' cookies
    peer.syn_options = list(SYN) + [("TFO", cookie)]
    first = app.connect(peer.addr, peer.port, bind_port=peer.sut_port, TCP_FASTOPEN_CONNECT=1)
    app.send(first, b"x", timeout=0.05)             # the SYN goes out with the first write
    syn = peer.expect("S", requirement="RFC7413/4.1.1", what="the SUT's SYN")
    stale = _cookie(syn)
    if stale:
        # A remote SUT cached a cookie for this address in an earlier run: its
        # SYN carries it and data; ours is another, so we take only the SYN.
        observed["stale_cookie"] = stale.hex()
    else:
        require(stale == b"" and not syn.payload, "RFC7413/4.1.1",
                "without a cookie the client's SYN carries an empty Fast Open option (a cookie request) and no data",
                "TFO option, empty; no data", f"{peer.describe(syn)} cookie {stale!r}")
    peer.send("SA")                                   # our SYN-ACK gives the cookie (and acknowledges only the SYN)
    peer.expect("A", ack=peer.snd_nxt, what="the SUT completes the handshake")
    app.close(first)
    peer.expect("FA", what="the first connection closes", skip=lambda seg: bool(seg.payload))
    peer.send("A")
    # A second connection to the same server: the cookie and data in the SYN.
    again = _another(peer, stack)
    again.port = peer.port                            # the same server, from the SUT's next port
    again.sut_port = None
    again.cursor = len(peer.trace.entries)
    data = b"hello, fast open"
    conn = app.connect(peer.addr, peer.port, TCP_FASTOPEN_CONNECT=1)
    app.send(conn, data, timeout=0.2)
    syn = again.expect("S", requirement="RFC7413/4.1.2", what="the SUT's SYN of the second connection",
                       skip=lambda seg: not seg.syn)
    require(_cookie(syn) == cookie and syn.payload == data, "RFC7413/4.1.2",
            "with a cached cookie the client's SYN carries it and the first data", f"cookie {cookie!r}, {len(data)} octets",
            f"{again.describe(syn)} cookie {_cookie(syn)!r}")
    if server == "takes-data":
        again.rcv_nxt = syn.end                       # the SYN and its data
        again.send("SA", options=list(SYN))
        again.expect("A", seq=syn.end, ack=again.snd_nxt, requirement="RFC7413/4.1.2",
                     what="the data acknowledged in the SYN-ACK: the client sends nothing again")
        again.expect_none(within=0.1, requirement="RFC7413/4.1.2", what="no retransmission of acknowledged data")
    else:
        again.send("SA", options=list(SYN))           # acknowledges the SYN only (a server without the cookie)
        again.expect("A", seq=syn.seq + 1, data=data, requirement="RFC7413/4.2.1",
                     what="data the SYN-ACK did not acknowledge is sent again after the handshake",
                     skip=lambda seg: not seg.payload)
