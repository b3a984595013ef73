"""What the application's OPEN and CLOSE calls do (RFC 9293 §3.9.1.1, §3.6.1):
local addresses and ports, an OPEN to a broadcast or multicast address, a
LISTEN on a port whose connection is still opening, and a CLOSE with data
unread (the application's side read through the app control)."""
import pytest

from harness.agent import AppError
from harness.flow import another, established
from harness.verdict import require

BROADCAST_OR_MULTICAST = {"ipv4": {"broadcast": "255.255.255.255", "multicast": "224.0.0.1"},
                          "ipv6": {"multicast": "ff02::1", "multicast-global": "ff0e::1"}}


# --- MUST-43, MUST-44, MUST-45 -------------------------------------------------------------------

@pytest.mark.case("open.local-address")
@pytest.mark.requires("app")
def test_active_open_from_a_given_local_address_and_port(stack, peer, app):
    """OPEN with a local address and port: the SYN comes from them."""
    app.connect(peer.addr, peer.port, bind_port=peer.sut_port)
    syn = peer.next_segment(within=2.0)
    require(syn is not None and syn.syn and syn.src == stack.sut_addr and syn.sport == peer.sut_port,
            "RFC9293/MUST-43", "the active open uses the local address and port the application gave",
            f"a SYN from {stack.sut_addr} port {peer.sut_port}", peer.describe(syn) if syn else "nothing")


@pytest.mark.case("open.local-address")
@pytest.mark.requires("app")
def test_active_open_without_a_local_address(stack, peer, app):
    """OPEN without a local address: IP picks one before the SYN, and every segment of the connection uses it."""
    peer.sut_port = None                          # the SUT picks its port too
    conn = app.connect(peer.addr, peer.port)
    syn = peer.expect("S", within=2.0, requirement="RFC9293/MUST-44", what="the SUT's active open sends a SYN")
    require(syn.src == stack.sut_addr, "RFC9293/MUST-44", "without a local address IP chooses one for the SYN",
            stack.sut_addr, syn.src)
    peer.send("SA")
    peer.expect("A", seq=peer.rcv_nxt, ack=peer.snd_nxt, requirement="RFC9293/MUST-45",
                what="the SUT completes the handshake")
    app.send(conn, b"data")
    peer.expect("A", seq=peer.rcv_nxt, data=b"data", requirement="RFC9293/MUST-45", what="the SUT sends data")
    peer.send("FA")
    app.close(conn)
    peer.next_segment(within=0.5)
    srcs = {e.src for e in stack.trace.entries if getattr(e, "sent_by", "") == "sut" and hasattr(e, "sport")
            and e.sport == syn.sport and e.dport == peer.port}
    require(srcs == {syn.src}, "RFC9293/MUST-45",
            "every segment of the connection uses the local address its SYN was sent from", syn.src, srcs)


# --- MUST-46 -----------------------------------------------------------------------------------

@pytest.mark.case("open.broadcast-refused")
@pytest.mark.requires("app")
@pytest.mark.parametrize("remote", sorted(set(BROADCAST_OR_MULTICAST["ipv4"]) | set(BROADCAST_OR_MULTICAST["ipv6"])))
def test_open_to_broadcast_or_multicast_fails(stack, peer, app, remote):
    """OPEN to a broadcast or multicast address fails, and no SYN leaves."""
    if remote not in BROADCAST_OR_MULTICAST[stack.family]:
        pytest.skip(f"no {remote} address in {stack.family}")
    address = BROADCAST_OR_MULTICAST[stack.family][remote]
    mark = len(stack.trace.entries)
    err, conn = None, None
    try:
        conn = app.connect(address, peer.port)
    except AppError as e:
        if e.error == "EOPNOTSUPP":               # the stack's app cannot ask for it: skipped, not refused
            raise
        err = e.error
    if err is None:                               # refused asynchronously: the socket's error
        peer.expect_none(within=0.2, what="(waiting for the connection attempt to fail)")
        err = app.error(conn)
    syns = [e for e in stack.trace.entries[mark:] if getattr(e, "sent_by", "") == "sut" and getattr(e, "syn", False)]
    require(not syns, "RFC9293/MUST-46", f"an OPEN to a {remote} address sends no SYN",
            "no SYN", "; ".join(f"SYN to {e.dst}" for e in syns))
    require(err is not None, "RFC9293/MUST-46", f"an OPEN to a {remote} address ({address}) is refused",
            "an error", "the call succeeded and no error came")


# --- MUST-41, MUST-42 -----------------------------------------------------------------------------

@pytest.mark.case("open.listen-beside-opening")
@pytest.mark.requires("app")
def test_listen_on_the_port_of_an_opening_connection(stack, peer, app, rng):
    """A connection opens from local port P (SYN-SENT); the application then listens on P: the listener
    answers new SYNs, and the opening connection completes undisturbed."""
    conn = app.connect(peer.addr, peer.port, bind_port=peer.sut_port)
    syn = peer.expect("S", within=2.0, requirement="RFC9293/MUST-42", what="the SUT's active open sends a SYN")
    try:
        listener = app.listen(peer.sut_port)
    except AppError as e:
        require(False, "RFC9293/MUST-42", "LISTEN is allowed on a port whose connection is in SYN-SENT",
                "the listen call succeeds", f"{e.error}: {e.message}")
    caller = another(stack, peer, peer.port + 1 if peer.port < 60999 else peer.port - 1, rng)
    caller.send("S")
    caller.expect("SA", ack=caller.iss + 1, requirement="RFC9293/MUST-42",
                  what="the listener on the opening connection's port answers a new SYN")
    caller.send("A")
    accepted = app.accept(listener)
    peer.send("SA")                               # the first connection's handshake goes on
    peer.expect("A", seq=syn.seq + 1, ack=peer.snd_nxt, requirement="RFC9293/MUST-41",
                what="the passive OPEN did not disturb the opening connection: it completes")
    for c, p, data in ((conn, peer, b"first"), (accepted, caller, b"second")):
        app.send(c, data)
        p.expect("A", seq=p.rcv_nxt, data=data, requirement="RFC9293/MUST-41",
                 what="each connection carries its own data")


# --- MAY-1, SHLD-3 ------------------------------------------------------------------------------

@pytest.mark.case("close.unread-data")
@pytest.mark.requires("app")
def test_close_with_unread_data_resets(stack, peer, app, profile):
    """The application closes with data it never read: the SUT sends a RST, not a FIN (data lost)."""
    b = profile.behaviour("close.unread-data")
    listener, conn = established(peer, app)
    peer.send("PA", data=b"never read by the application")
    peer.expect("A", seq=peer.rcv_nxt, ack=peer.snd_nxt, requirement="RFC9293/SHLD-3", what="the data is acknowledged")
    snd_nxt = peer.rcv_nxt                       # before the FIN, which _learn counts, moves it on
    app.close(conn)
    seg = peer.next_segment(within=0.5)
    want = "RST" if b["answer"] == "rst" else "FIN"
    got = seg is not None and seg.seq == snd_nxt and (seg.rst if want == "RST" else seg.fin)
    require(got, b["rule"], f"a CLOSE with unread data: {'RST, the data is lost' if want == 'RST' else 'FIN'} "
            f"({b['note']})", f"<SEQ=SND.NXT><CTL={want}>", peer.describe(seg) if seg else "nothing")
    profile.conclude(b)


@pytest.mark.case("close.unread-data")
@pytest.mark.requires("app")
def test_data_after_close_resets(stack, peer, app, profile):
    """The application closed (FIN-WAIT): data that arrives afterwards can no longer be read, and draws a RST."""
    b = profile.behaviour("close.data-after-close")
    listener, conn = established(peer, app)
    app.close(conn)
    fin = peer.expect("FA", seq=peer.rcv_nxt, requirement="RFC9293/3.6", what="CLOSE: the SUT's FIN")
    peer.send("A")
    peer.send("PA", data=b"too late: the application closed")
    if b["answer"] == "rst":
        seg = peer.next_segment(within=0.5)      # <SEQ=SND.NXT><CTL=RST>, with ACK or without: either resets
        require(seg is not None and seg.rst and seg.seq == fin.seq + 1, b["rule"],
                f"half-duplex close: data after CLOSE draws a RST ({b['note']})",
                f"<SEQ={peer.rel_sut(fin.seq + 1)}><CTL=RST>", peer.describe(seg) if seg else "nothing")
    else:
        peer.expect("A", seq=fin.seq + 1, requirement=b["rule"], what=f"documented: the data is ACKed ({b['note']})")
    profile.conclude(b)
