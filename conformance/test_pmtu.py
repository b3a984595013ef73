"""Path MTU discovery (RFC 1191, RFC 8201) and its defence (RFC 5927).

The SUT sends a flight of full-sized segments (1500-octet packets on its
1500-octet link); the tester, as a router on the path, answers the first
with an ICMP "fragmentation needed" (IPv4, type 3 code 4) or an ICMPv6
"Packet Too Big", next-hop MTU 1280, quoting the segment's IP and TCP
headers. Every packet the SUT sends after it must fit 1280 octets, and the
SUT must use that MTU (segments close to it, not a minimal size). A message
that quotes a sequence number outside SND.UNA..SND.NXT cannot concern a
segment in flight and is ignored (RFC 5927 §4.1): the SUT keeps its segment
size. Our SYN offers MSS 1460 and neither SACK nor timestamps.
"""
import pytest
from scapy.layers.inet import ICMP, IP, TCP
from scapy.layers.inet6 import ICMPv6PacketTooBig, IPv6

from harness.agent import AppError
from harness.segment import Segment, seq_add
from harness.verdict import require

PMTU = 1280
SYN = [("MSS", 1460), ("NOP", None), ("WScale", 7)]
RULE = {"ipv4": "RFC1191/3", "ipv6": "RFC8201/4"}


def _flight(peer, app, profile):
    profile.set_if_tunable("rto_min", 1_000_000)     # a busy tester still answers before the RTO
    # The path MTU learned here is kept per destination, the tester's address:
    # a host that outlives the case (a remote SUT) would send the next cases'
    # segments at 1280 octets for ten minutes. Kept 5 s, it outlasts this
    # case's checks (under 2 s after the message) and no more.
    profile.set_if_tunable(f"pmtu_expires_{peer.family}", 5)
    peer.syn_options = list(SYN)
    listener = app.listen(peer.sut_port)
    peer.connect()
    conn = app.accept(listener)
    try:
        app.setsockopt(conn, "SO_SNDBUF", 1 << 20)
    except AppError as e:
        if e.error != "EOPNOTSUPP":
            raise
    app.send(conn, bytes(40000), timeout=0.2)
    flight = [peer.expect("A", seq=peer.rcv_nxt, what="a full-sized segment")]
    while True:
        seg = peer.next_segment(within=0.02)
        if seg is None:
            return conn, flight
        if seg.payload:
            flight.append(seg)


def _too_big(peer, seg, seq=None) -> None:
    """An ICMP error from a router on the path, next-hop MTU PMTU, quoting
    `seg` (its IP header and TCP header), with SEG.SEQ replaced by `seq`."""
    quoted = seg.pkt.copy()
    if seq is not None:
        quoted[TCP].seq = seq % (1 << 32)
    raw = bytes(quoted)
    if peer.family == "ipv4":
        pkt = IP(src=peer.addr, dst=peer.sut_addr) / ICMP(type=3, code=4, nexthopmtu=PMTU) / raw[:40]
    else:
        pkt = IPv6(src=peer.addr, dst=peer.sut_addr) / ICMPv6PacketTooBig(mtu=PMTU) / raw[:PMTU - 48]
    peer.link.send(bytes(pkt))


def _data_after(peer, t: float, within: float) -> list:
    out = []
    while True:
        seg = peer.next_segment(within=within)
        if seg is None:
            return out
        if seg.payload and seg.t >= t:
            out.append(seg)
        within = 0.05


def _sut_packets(peer, since: float, within: float) -> list:
    """Every IP packet the SUT sent after `since` on this connection (its
    segments, and IP fragments), watching the wire for `within` seconds (a
    remote SUT's other connections may still be retransmitting)."""
    import time
    deadline = time.monotonic() + within
    while peer.link.poll(deadline):
        pass
    return [e for e in peer.trace.entries if e.sent_by == "sut" and e.t >= since
            and (peer.mine(e) if isinstance(e, Segment) else True)]      # a fragment: whose, the IP layer knows


def _sizes(packets) -> list:
    return sorted({len(p.raw) for p in packets})


@pytest.mark.case("pmtu.too-big-lowers-mss")
@pytest.mark.requires("app")
def test_too_big_lowers_the_segment_size(stack, peer, app, profile, observed):
    """An ICMP too-big for a segment in flight: every later packet fits the new path MTU."""
    b = profile.behaviour(f"pmtu.too-big.{peer.family}")
    rule = RULE[peer.family]
    conn, flight = _flight(peer, app, profile)
    largest = max(len(s.raw) for s in flight)
    require(largest > PMTU, rule, "the SUT's segments fill its 1500-octet link", f"packets over {PMTU} octets",
            f"at most {largest}")
    when = peer.trace.entries[-1].t
    _too_big(peer, flight[0])
    if b["answer"] == "lower":
        # The in-flight data is sent again (at once or by the RTO timer) in packets that fit.
        repaired = None
        for seg in _data_after(peer, when, within=1.5):
            require(len(seg.raw) <= PMTU, rule, f"after the too-big message no packet exceeds the path MTU {PMTU}",
                    f"packets of at most {PMTU} octets", f"{peer.describe(seg)}: {len(seg.raw)} octets")
            if seg.seq == flight[0].seq:
                repaired = seg
        require(repaired is not None, rule, "the segment the message quoted is sent again, in packets that fit",
                f"a retransmission at seq {peer.rel_sut(flight[0].seq)}", "none")
    # Acknowledge everything: the next data goes in packets that fit (or, documented, does not).
    peer.rcv_nxt = flight[-1].end
    peer.send("A")
    after = _sut_packets(peer, flight[-1].t + 1e-6, within=0.3)
    sizes = _sizes(after)
    observed["packet_sizes_after"] = sizes
    require(after, rule, "the SUT sends the rest of its data", "packets", "nothing")
    if b["answer"] == "ignored":
        require(max(sizes) > PMTU, b["rule"], f"documented: the stack ignores it ({b['note'][:80]}...)",
                f"packets over {PMTU}", f"sizes {sizes}")
    else:
        require(max(sizes) <= PMTU, rule, f"after the too-big message every packet fits the path MTU {PMTU}",
                f"at most {PMTU} octets", f"sizes {sizes}")
        require(max(sizes) > PMTU - 100, rule, "packets fill the new path MTU, not a minimal size",
                f"packets close to {PMTU} octets", f"sizes {sizes}")
    profile.conclude(b)


@pytest.mark.case("pmtu.out-of-window-ignored")
@pytest.mark.requires("app")
def test_too_big_quoting_another_sequence_is_ignored(stack, peer, app, profile, observed):
    """An ICMP too-big whose quoted SEG.SEQ lies outside SND.UNA..SND.NXT changes nothing."""
    b = profile.behaviour(f"pmtu.out-of-window.{peer.family}")
    rule = b["rule"]
    conn, flight = _flight(peer, app, profile)
    _too_big(peer, flight[0], seq=seq_add(flight[-1].end, 1 << 20))
    if b["answer"] == "ignored":
        peer.expect_none(within=0.02, requirement=rule, what="nothing is retransmitted for an out-of-window message")
    peer.rcv_nxt = flight[-1].end
    peer.send("A")
    after = _sut_packets(peer, flight[-1].t + 1e-6, within=0.3)
    sizes = _sizes(after)
    observed["packet_sizes_after"] = sizes
    full = max(len(s.raw) for s in flight)
    require(after, rule, "the SUT sends the rest of its data", "packets", "nothing")
    if b["answer"] == "ignored":
        require(max(sizes) == full, rule,
                "an ICMP error quoting a sequence number outside SND.UNA..SND.NXT is ignored: the packet size stays",
                f"packets of {full} octets", f"sizes {sizes}")
    else:
        require(max(sizes) <= PMTU, rule, f"documented: {b['note'][:90]}...", f"at most {PMTU}", f"sizes {sizes}")
    profile.conclude(b)
