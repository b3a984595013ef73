"""TCP over IP (RFC 9293 §3.9.1.9, §3.9.2, §3.9.2.1, §3.9.2.3): IP options
TCP does not understand are ignored, the IP timestamp and record-route
options, source routes, segments from or to broadcast and multicast
addresses, and the IP header fields an application sets (DSCP, TTL)."""
import pytest
from scapy.layers.inet import IP, IPOption, IPOption_LSRR, IPOption_Router_Alert
from scapy.layers.inet6 import HBHOptUnknown, IPv6

from harness.agent import AppError
from harness.flow import established, receive
from harness.icmp import hop_by_hop, ipv4_options, with_ip
from harness.peer import Peer
from harness.segment import Segment
from harness.verdict import require

EXPERIMENT = IPOption(b"\x1e\x04\x00\x00")            # IPv4 option 30, RFC 4727's experiment: no host knows it
RECORD_ROUTE = IPOption(b"\x07\x0f\x04" + bytes(12))   # record route, room for 3 addresses
TIMESTAMP = IPOption(b"\x44\x0c\x05\x00" + bytes(8))   # timestamps only, room for 2
HBH_UNKNOWN = HBHOptUnknown(otype=0x1e, optdata=b"\x00\x00")   # action 00: skip an unknown option


def _unknown_ip_options(family):
    if family == "ipv4":
        return ipv4_options(EXPERIMENT, IPOption_Router_Alert())
    return hop_by_hop(HBH_UNKNOWN)


def _option_kinds(raw: bytes) -> list[int]:
    """The kinds of the IPv4 options in `raw` (RFC 791: EOL ends them, NOP
    is one octet, every other has a length octet)."""
    i, out = 0, []
    while i < len(raw) and raw[i] != 0:
        if raw[i] == 1:
            i += 1
            continue
        out.append(raw[i])
        i += raw[i + 1] if i + 1 < len(raw) and raw[i + 1] >= 2 else len(raw)
    return out


def _ip(seg: Segment):
    return seg.pkt[IP] if IP in seg.pkt else seg.pkt[IPv6]


# --- MUST-50 ------------------------------------------------------------------------------------

@pytest.mark.case("ip.options-ignored")
@pytest.mark.requires("app")
def test_unknown_ip_options_are_ignored(stack, peer, app):
    """A SYN and data carrying IP options TCP does not use (an unknown one, router alert; an IPv6 hop-by-hop
    option to skip): the connection opens and the data is delivered."""
    listener = app.listen(peer.sut_port)
    wrap = _unknown_ip_options(stack.family)
    with_ip(peer, "S", wrap)
    peer.expect("SA", ack=peer.iss + 1, requirement="RFC9293/MUST-50",
                what="a SYN with IP options TCP does not understand is answered with a SYN-ACK")
    with_ip(peer, "A", wrap)
    conn = app.accept(listener)
    data = b"carried by a datagram with IP options"
    with_ip(peer, "PA", wrap, data=data)
    peer.expect("A", seq=peer.rcv_nxt, ack=peer.snd_nxt, requirement="RFC9293/MUST-50",
                what="data with IP options TCP does not understand is acknowledged")
    require(app.recv_exactly(conn, len(data)) == data, "RFC9293/MUST-50", "the application reads the data",
            repr(data), "other data")


# --- MAY-10, MAY-11 -----------------------------------------------------------------------------

RECORDING = {"timestamp": (TIMESTAMP, "ip.timestamp-option", 68), "record-route": (RECORD_ROUTE, "ip.record-route", 7)}


@pytest.mark.case("ip.recording-options")
@pytest.mark.requires("app")
@pytest.mark.parametrize("option", list(RECORDING))
def test_recording_ip_options_on_a_syn(stack, peer, app, profile, observed, option):
    """A SYN carrying the IP timestamp or record-route option: the handshake completes, and the SYN-ACK carries
    the option back or not, as the profile documents."""
    if stack.family != "ipv4":
        pytest.skip("IPv6 has no timestamp or record-route option")
    opt, key, kind = RECORDING[option]
    b = profile.behaviour(key)
    app.listen(peer.sut_port)
    with_ip(peer, "S", ipv4_options(opt))
    synack = peer.expect("SA", ack=peer.iss + 1, requirement=b["rule"],
                         what=f"a SYN with the IP {option} option is answered with a SYN-ACK")
    raw = bytes(_ip(synack))[20:_ip(synack).ihl * 4]
    kinds = _option_kinds(raw)
    echoed = kind in kinds
    observed["synack_ip_options"] = raw.hex()
    want = b["answer"] == "echoed"
    require(echoed == want, b["rule"], f"documented: the SYN-ACK {'carries' if want else 'does not carry'} the "
            f"{option} option back ({b['note']})", f"option {kind} {'present' if want else 'absent'}",
            f"IP options {raw.hex() or 'none'} (kinds {kinds})")
    peer.send("A")
    profile.conclude(b)


# --- MUST-53, SHLD-24: source routes --------------------------------------------------------------

HOP = "198.18.0.3"               # a router of the peer's route, on the SUT's link
LATER_HOP = "198.18.0.4"         # the router of a later route


def _completed_lsrr(route: list[str]):
    """A loose source route that the datagram has completed: the pointer past
    its last address, the addresses the route went through."""
    return ipv4_options(IPOption_LSRR(routers=route, pointer=4 + 4 * len(route)))


def _sut_segments(stack, since: int, peer):
    """The SUT's segments since entry `since` between its port and the
    peer's, whatever the addresses (a remote SUT carries other cases'
    connections on the same link)."""
    return [e for e in stack.trace.entries[since:] if isinstance(e, Segment) and e.sent_by == "sut"
            and e.sport == peer.sut_port and e.dport == peer.port]


@pytest.mark.case("ip.source-route")
@pytest.mark.requires("app")
@pytest.mark.parametrize("setting", ["default", "accepting"])
def test_reply_follows_a_received_source_route(stack, peer, app, profile, observed, setting):
    """A SYN that came by a completed loose source route: the SYN-ACK goes back by the reversed route, and a
    later route replaces it, as the profile documents (a host may be set to drop source-routed datagrams)."""
    if stack.family != "ipv4":
        pytest.skip("IPv6 has no source route a host replies along (RFC 5095 removed the type 0 routing header)")
    if setting == "accepting":
        profile.set("accept_source_route", 1)
        try:
            profile.set("accept_source_route_link", 1)
        except AppError as e:                 # a remote SUT whose link the profile does not name
            if e.error != "ENOENT":
                raise
            pytest.skip(f"the SUT's link is not the one {profile.profile.source} names "
                        f"({profile.profile.values['accept_source_route_link']['sysctl']}): {e.message}")
    if hasattr(stack.link, "neighbours"):      # on Ethernet the reply's first hop must answer ARP
        stack.link.neighbours.update({HOP, LATER_HOP})
    b = profile.behaviour("ip.source-route" + ("" if setting == "default" else ".accepting"))
    listener = app.listen(peer.sut_port)
    mark = len(stack.trace.entries)
    with_ip(peer, "S", _completed_lsrr([HOP]))
    direct = peer.next_segment(within=0.5)         # an answer to the peer itself, ignoring the route
    replies = [s for s in _sut_segments(stack, mark, peer) if s.syn and s.has_ack]
    routed = [s for s in replies if s.dst == HOP]
    observed["synack_destinations"] = [s.dst for s in replies]
    seen = "; ".join(f"SYN-ACK to {s.dst}" for s in replies) or "no SYN-ACK"
    if b["answer"] == "reversed":
        require(routed and direct is None, "RFC9293/MUST-53",
                "the SYN-ACK is sent back by the reversed source route: to the route's last hop, with a route "
                "option ending at the peer", f"a SYN-ACK to {HOP}", seen)
        _later_route(stack, peer, app, listener, profile, routed[0], observed)
    elif b["answer"] == "dropped":
        require(not replies, b["rule"], f"documented: a source-routed SYN is dropped ({b['note']})",
                "no SYN-ACK", seen)
    else:
        require(direct is not None and direct.syn and not routed, b["rule"],
                f"documented: the route is ignored, the SYN-ACK goes to the peer directly ({b['note']})",
                f"a SYN-ACK to {peer.addr}", seen)
    profile.conclude(b)


def _later_route(stack, peer, app, listener, profile, synack, observed) -> None:
    """SHLD-24: the handshake completes by the first route; data then comes
    by another: the SUT's ACK goes back by the later route, as documented."""
    b = profile.behaviour("ip.source-route.later")
    peer._learn(synack)                           # the SYN-ACK came by the route, not to the peer
    with_ip(peer, "A", _completed_lsrr([HOP]))
    app.accept(listener)
    mark = len(stack.trace.entries)
    with_ip(peer, "PA", _completed_lsrr([LATER_HOP]), data=b"by another route")
    peer.expect_none(within=0.3, what="(the ACK goes by a route, not to the peer)")
    acks = [s for s in _sut_segments(stack, mark, peer) if s.has_ack and s.ack == peer.snd_nxt]
    observed["ack_destinations"] = [s.dst for s in acks]
    want = LATER_HOP if b["answer"] == "later" else HOP
    require(acks and acks[0].dst == want, b["rule"],
            f"documented: the ACK of data that came by a later route goes to {want} ({b['note']})",
            f"an ACK to {want}", "; ".join(f"ACK to {s.dst}" for s in acks) or "no ACK")
    if b["answer"] != "later":
        profile.conclude(b)


# --- MUST-63, MUST-57: broadcast and multicast --------------------------------------------------

BAD_SOURCES = {
    "ipv4": {"broadcast": "255.255.255.255", "multicast": "224.0.0.1", "own-address": "198.18.0.1",
             "unspecified": "0.0.0.0"},
    "ipv6": {"multicast": "ff02::1", "own-address": "2001:2::1", "unspecified": "::",
             "multicast-global": "ff0e::1"},
}
BAD_DESTINATIONS = {
    "ipv4": {"broadcast": "255.255.255.255", "multicast": "224.0.0.1"},
    "ipv6": {"multicast": "ff02::1", "multicast-global": "ff0e::1"},
}


def _stray(stack, peer, rng, src: str, dst: str) -> Peer:
    p = Peer(stack.link, stack.family, src, dst, peer.port, peer.sut_port, rng, peer.requirement)
    p.cursor = len(stack.trace.entries)
    return p


@pytest.mark.case("ip.invalid-source")
@pytest.mark.requires("app")
@pytest.mark.parametrize("source", sorted(set(BAD_SOURCES["ipv4"]) | set(BAD_SOURCES["ipv6"])))
def test_syn_from_an_invalid_source_is_ignored(stack, peer, app, rng, source):
    """A SYN whose source is a broadcast, multicast, unspecified or the SUT's own address draws nothing."""
    if source not in BAD_SOURCES[stack.family]:
        pytest.skip(f"no {source} address in {stack.family}")
    app.listen(peer.sut_port, address="0.0.0.0" if stack.family == "ipv4" else "::")
    mark = len(stack.trace.entries)
    bad = _stray(stack, peer, rng, BAD_SOURCES[stack.family][source], stack.sut_addr)
    bad.send("S")
    peer.expect_none(within=0.3, what="(reading the link)")
    answers = _sut_segments(stack, mark, peer)
    require(not answers, "RFC9293/MUST-63", f"a SYN from a {source} source address is ignored: no SYN-ACK, no RST",
            "nothing", "; ".join(f"{s.src} > {s.dst} [{''.join(sorted(s.flags))}]" for s in answers))
    if "state" in stack.capabilities:
        states = [s["state"] for s in stack.states(peer.sut_port)]
        require(states == ["LISTEN"], "RFC9293/MUST-63", "no half-open connection is made for it",
                "only the listener", ", ".join(states))
    peer.send("S")
    peer.expect("SA", ack=peer.iss + 1, requirement="RFC9293/MUST-63",
                what="a SYN from a valid source is still answered")


@pytest.mark.case("ip.broadcast-destination")
@pytest.mark.requires("app")
@pytest.mark.parametrize("destination", sorted(set(BAD_DESTINATIONS["ipv4"]) | set(BAD_DESTINATIONS["ipv6"])))
def test_segment_to_broadcast_or_multicast_is_discarded(stack, peer, app, rng, destination):
    """A SYN, and a segment with ACK, sent to a broadcast or multicast address draw nothing, even from a
    listener on every address."""
    if destination not in BAD_DESTINATIONS[stack.family]:
        pytest.skip(f"no {destination} address in {stack.family}")
    app.listen(peer.sut_port, address="0.0.0.0" if stack.family == "ipv4" else "::")
    mark = len(stack.trace.entries)
    bad = _stray(stack, peer, rng, peer.addr, BAD_DESTINATIONS[stack.family][destination])
    bad.send("S")
    bad.send("A", seq=bad.iss + 1, ack=12345)
    peer.expect_none(within=0.3, what="(reading the link)")
    answers = _sut_segments(stack, mark, peer)
    require(not answers, "RFC9293/MUST-57",
            f"segments to a {destination} address are silently discarded: no SYN-ACK, no RST",
            "nothing", "; ".join(f"{s.src} > {s.dst} [{''.join(sorted(s.flags))}]" for s in answers))
    peer.send("S")
    peer.expect("SA", ack=peer.iss + 1, requirement="RFC9293/MUST-57",
                what="a SYN to the SUT's own address is still answered")


# --- MUST-48, SHLD-21, SHLD-22, MUST-49: the IP header the application sets -------------------------

TOS = {"ipv4": "IP_TOS", "ipv6": "IPV6_TCLASS"}
TTL = {"ipv4": "IP_TTL", "ipv6": "IPV6_UNICAST_HOPS"}


def _dscp(seg: Segment) -> int:
    ip = _ip(seg)
    return (ip.tos if IP in seg.pkt else ip.tc) >> 2


def _hops(seg: Segment) -> int:
    ip = _ip(seg)
    return ip.ttl if IP in seg.pkt else ip.hlim


@pytest.mark.case("ip.dscp")
@pytest.mark.requires("app")
def test_application_sets_and_changes_dscp(stack, peer, app, observed):
    """The application sets DSCP 10 (AF11), then 46 (EF) mid-connection: the SUT's segments carry each."""
    listener, conn = established(peer, app)
    seen = []
    for dscp in (10, 46):
        app.setsockopt(conn, TOS[stack.family], dscp << 2)
        data = bytes(range(256)) * 8
        app.send(conn, data)
        segs = receive(peer, len(data), "RFC9293/MUST-48", f"the SUT sends data after DSCP {dscp} was set")
        got = sorted({_dscp(s) for s in segs})
        seen.append(got)
        require(got == [dscp], "RFC9293/SHLD-22" if dscp == 10 else "RFC9293/SHLD-21",
                f"the DSCP the application set ({dscp}) is passed to IP unchanged on every segment"
                + (" after the change mid-connection" if dscp == 46 else ""),
                f"DSCP {dscp}", f"DSCP {got}")
    observed["dscp_seen"] = seen


@pytest.mark.case("ip.ttl")
@pytest.mark.requires("app")
def test_application_sets_the_ttl(stack, peer, app, observed):
    """The application sets the TTL (hop limit) to 33: the SUT's segments carry it."""
    listener, conn = established(peer, app)
    app.setsockopt(conn, TTL[stack.family], 33)
    data = b"with a ttl of 33"
    app.send(conn, data)
    segs = receive(peer, len(data), "RFC9293/MUST-49", "the SUT sends data after the TTL was set")
    got = sorted({_hops(s) for s in segs})
    observed["ttl_seen"] = got
    require(got == [33], "RFC9293/MUST-49", "the TTL (hop limit) of TCP segments is the one the application set",
            "33", got)
