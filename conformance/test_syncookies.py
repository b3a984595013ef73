"""SYN cookies (RFC 4987 §3.6): a listener that keeps no state for a SYN.

The SYN-ACK's ISN is the cookie; the connection is rebuilt from the ACK that
returns it (SEG.ACK = cookie+1, SEG.SEQ = ISN+1). When the stack sends
cookies, what it keeps in them and how it answers a forged cookie come from
its profile. Several peers share the listener in the overflow case: each is
a Peer of its own on the same link and Trace, with its own cursor.
"""
import pytest

from harness.peer import Peer
from harness.segment import options_text
from harness.verdict import require

# A SYN as a current client sends it, with an MSS between two entries of the
# cookie tables, so the rounding down is seen on the data.
MSS = 1400
WITH_TS = [("MSS", MSS), ("SAckOK", b""), ("Timestamp", (0, 0)), ("NOP", None), ("WScale", 7)]
WITHOUT_TS = [("MSS", MSS), ("NOP", None), ("NOP", None), ("SAckOK", b""), ("NOP", None), ("WScale", 7)]
FORGERY = 1 << 20             # far outside the few values the cookie check lets through
TS_ALIGNED = 12               # the timestamp option with its two NOPs (RFC 7323 Appendix A)


def _no_request(stack, peer, what: str) -> None:
    if "state" in stack.capabilities:
        state = stack.state_of(peer.sut_port, peer.port)
        require(state is None, "RFC4987/3.6", f"a cookie SYN-ACK keeps no state: {what}",
                "no socket for the 4-tuple (only the listener)", state)


def _another(stack, peer, port: int, rng) -> Peer:
    """A second peer endpoint on the same link: same addresses, another port."""
    p = Peer(stack.link, stack.family, stack.peer_addr, stack.sut_addr, port, peer.sut_port, rng, peer.requirement)
    p.cursor = len(stack.trace.entries)
    return p


def _cookie_mss(stack, profile) -> int:
    """The MSS the cookie keeps for ours: the largest table entry not above it."""
    table = profile.value(f"syncookie_mss_{stack.family}")
    return max([m for m in table if m <= MSS] or [table[0]])


def _forged_ack(peer, profile, synack) -> None:
    """An ACK whose SEG.ACK is not the cookie + 1: no connection."""
    b = profile.behaviour("syncookie.forged-ack")
    forged = peer.send("A", ack=synack.seq + 1 + FORGERY)
    if b["answer"] == "rst":
        peer.expect("R", seq=forged.ack, requirement=b["rule"],
                    what=f"documented: a forged cookie reaches LISTEN, <SEQ=SEG.ACK><CTL=RST> ({b['note']})")
    else:
        peer.expect_none(within=0.2, requirement=b["rule"], what=f"documented: a forged cookie is dropped ({b['note']})")
    profile.conclude(b)


def _use(stack, peer, app, listener, payload_mss: int) -> int:
    """Return the cookie; the application accepts the connection and it
    carries data both ways, in segments of the MSS the cookie kept (their
    payload is returned)."""
    peer.send("A")
    if "state" in stack.capabilities:
        require(stack.wait_for_state(peer.sut_port, peer.port, "ESTABLISHED", within=1.0) is not None,
                "RFC4987/3.6", "the ACK returning the cookie (SEG.ACK = cookie+1, SEG.SEQ = ISN+1) creates the connection",
                "ESTABLISHED", stack.state_of(peer.sut_port, peer.port))
    conn = app.accept(listener)
    data = bytes(range(256)) * 12
    app.send(conn, data)
    seg = peer.expect("A", seq=peer.rcv_nxt, ack=peer.snd_nxt, requirement="RFC4987/3.6",
                      what="the connection rebuilt from the cookie sends from ISS+1 = cookie+1")
    require(len(seg.payload) == payload_mss, "RFC4987/3.6",
            "the cookie keeps the peer's MSS rounded down to the stack's table, and the SUT sends full segments of it",
            f"{payload_mss} octets per segment", f"{len(seg.payload)} octets")
    got = seg.payload
    while len(got) < len(data):
        got += peer.expect("A", seq=peer.rcv_nxt, requirement="RFC4987/3.6", what="the rest of the SUT's data").payload
    peer.send("A")
    require(got == data, "RFC4987/3.6", "the SUT's data arrives as the application sent it", len(data), len(got))
    ours = b"data to the cookie connection"
    peer.send("PA", data=ours)
    peer.expect("A", ack=peer.snd_nxt, requirement="RFC9293/3.10.7.4", what="the SUT acknowledges our data")
    got = app.recv_exactly(conn, len(ours))
    require(got == ours, "RFC9293/3.10.7.4", "the application reads the peer's data", ours, got)
    return len(seg.payload)


@pytest.mark.case("syncookies.forced")
@pytest.mark.requires("app")
def test_forced_syncookies(stack, peer, app, profile, tolerance, observed):
    """Cookies for every SYN (tcp_syncookies=2; tcp_timestamps=2 shows the options kept in TSval)."""
    profile.set("syncookies", 2)
    profile.set("timestamps", 2)
    profile.value("syncookies")                   # read back, recorded beside the results
    profile.value("timestamps")
    listener = app.listen(peer.sut_port)
    peer.syn_options = list(WITH_TS)
    peer.send("S")
    synack = peer.expect("SA", ack=peer.iss + 1, requirement="RFC9293/3.10.7.2",
                         what="LISTEN: a SYN draws <SEQ=cookie><ACK=SEG.SEQ+1><CTL=SYN,ACK>")
    observed["synack_options"] = options_text(synack)
    _no_request(stack, peer, "after the SYN-ACK")
    # The SYN's window scale and SACK-permitted ride in the TSval's low bits.
    bits = profile.value("syncookie_ts_bits")
    want = dict(WITH_TS)["WScale"] | 1 << 4       # the shift, SACK-permitted (bit 4), no ECN (bit 5)
    tsval = synack.option("Timestamp", (0, 0))[0]
    mask = (1 << bits) - 1
    require(synack.has_option("Timestamp") and tsval & mask == want, "RFC4987/3.6",
            f"the SYN's options are kept in the cookie SYN-ACK's TSval ({profile.doc('syncookie_ts_bits')})",
            f"TS val & {mask:#x} = {want:#x}", f"{options_text(synack)} (TS val & {mask:#x} = {tsval & mask:#x})")
    # Nothing is kept, so nothing is retransmitted.
    rto = profile.value("initial_rto")
    peer.expect_none(until=synack.t + tolerance.latest(rto) + 0.1, requirement="RFC4987/3.6",
                     what=f"a cookie SYN-ACK is never retransmitted (a request would be, after {rto:g} s)")
    _forged_ack(peer, profile, synack)
    _no_request(stack, peer, "after a forged cookie")
    observed["cookie_segment_payload"] = _use(stack, peer, app, listener, _cookie_mss(stack, profile) - TS_ALIGNED)


@pytest.mark.case("syncookies.backlog-overflow")
@pytest.mark.requires("app")
def test_syncookies_on_backlog_overflow(stack, peer, app, profile, tolerance, rng, observed):
    """A listener with backlog 1 gets SYNs from several ports (tcp_syncookies=1)."""
    profile.set("syncookies", 1)
    profile.value("syncookies")
    backlog = 1
    listener = app.listen(peer.sut_port, backlog=backlog)
    requests = min(backlog, profile.value("somaxconn")) + profile.value("syn_queue_slack")
    observed["max_syn_backlog"] = profile.value("max_syn_backlog")
    peers = [peer] + [_another(stack, peer, peer.port + n, rng) for n in range(1, requests + 2)]
    synacks = []
    for n, p in enumerate(peers):
        p.syn_options = list(WITHOUT_TS)
        p.send("S")
        synacks.append(p.expect("SA", ack=p.iss + 1, requirement="RFC9293/3.10.7.2",
                                what=f"LISTEN: SYN {n + 1} draws a SYN-ACK"))
    observed["synack_options"] = [options_text(s) for s in synacks]
    kept, cookies = peers[:requests], peers[requests:]
    for p, s in zip(kept, synacks):
        if "state" in stack.capabilities:
            state = stack.state_of(p.sut_port, p.port)
            require(state == "SYN-RECEIVED", "RFC4987/3.6",
                    f"while the SYN queue has room ({requests} requests: {profile.doc('syn_queue_slack')}) "
                    "a SYN creates a request in SYN-RECEIVED", "SYN-RECEIVED", state)
        require(s.has_option("WScale") and s.has_option("SAckOK"), "RFC7323/2.2",
                "a SYN-ACK from a request answers the window scale and SACK-permitted offered",
                "wscale and sackOK", options_text(s))
    b = profile.behaviour("syncookie.options-without-timestamps")
    for p, s in zip(cookies, synacks[requests:]):
        _no_request(stack, p, f"SYN beyond the {requests} the queue holds")
        if b["answer"] == "mss-only":
            require(not s.has_option("WScale") and not s.has_option("SAckOK") and s.has_option("MSS"),
                    b["rule"], f"documented: a cookie for a SYN without timestamps keeps MSS only ({b['note']})",
                    "mss only", options_text(s))
    last = synacks[-1]
    for p in cookies:
        p.expect_none(until=last.t + tolerance.latest(profile.value("initial_rto")) + 0.1, requirement="RFC4987/3.6",
                      what="a cookie SYN-ACK is never retransmitted")
    profile.conclude(b)
    _forged_ack(cookies[1], profile, synacks[requests + 1])
    observed["cookie_segment_payload"] = _use(stack, cookies[0], app, listener, _cookie_mss(stack, profile))
