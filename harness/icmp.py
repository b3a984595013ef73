"""ICMP errors and IP-level options a case sends to the SUT.

Rules of this file:
- Pure packet building with Scapy: an ICMP or ICMPv6 error quoting a
  segment the SUT sent (its IP header and TCP header, as a router or the
  peer's host would quote it), and a Peer's segment wrapped with IPv4
  options or an IPv6 hop-by-hop header.
- Errors are named after RFC 9293 §3.9.2.2's classes, per family, with
  their type and code.
"""
from __future__ import annotations

from scapy.layers.inet import ICMP, IP, TCP
from scapy.layers.inet6 import (ICMPv6DestUnreach, ICMPv6PacketTooBig, ICMPv6ParamProblem, ICMPv6TimeExceeded,
                                IPv6, IPv6ExtHdrHopByHop)

# (family, name) -> (builder of the ICMP layer, class per RFC 9293 §3.9.2.2)
ERRORS = {
    ("ipv4", "net-unreachable"): (lambda: ICMP(type=3, code=0), "soft"),
    ("ipv4", "host-unreachable"): (lambda: ICMP(type=3, code=1), "soft"),
    ("ipv4", "source-route-failed"): (lambda: ICMP(type=3, code=5), "soft"),
    ("ipv4", "time-exceeded"): (lambda: ICMP(type=11, code=0), "soft"),
    ("ipv4", "parameter-problem"): (lambda: ICMP(type=12, code=0, ptr=0), "soft"),
    ("ipv4", "protocol-unreachable"): (lambda: ICMP(type=3, code=2), "hard"),
    ("ipv4", "port-unreachable"): (lambda: ICMP(type=3, code=3), "hard"),
    ("ipv4", "source-quench"): (lambda: ICMP(type=4, code=0), "quench"),
    ("ipv6", "no-route"): (lambda: ICMPv6DestUnreach(code=0), "soft"),
    ("ipv6", "address-unreachable"): (lambda: ICMPv6DestUnreach(code=3), "soft"),
    ("ipv6", "time-exceeded"): (lambda: ICMPv6TimeExceeded(code=0), "soft"),
    ("ipv6", "parameter-problem"): (lambda: ICMPv6ParamProblem(code=0, ptr=6), "soft"),
    ("ipv6", "port-unreachable"): (lambda: ICMPv6DestUnreach(code=4), "hard"),
}
ROUTER = {"ipv4": "198.18.0.254", "ipv6": "2001:2::fe"}     # a router on the path, in the test ranges


def names(family: str, kind: str) -> list[str]:
    return [n for (f, n), (_, k) in ERRORS.items() if f == family and k == kind]


def quote(seg) -> bytes:
    """What an ICMP error quotes of the SUT's segment: its IP header and
    its TCP header (RFC 792 asks for 8 octets; RFC 1812 routers send more)."""
    pkt = seg.pkt.copy()
    pkt[TCP].remove_payload()
    if IP in pkt:
        return bytes(pkt)[:pkt[IP].ihl * 4 + pkt[TCP].dataofs * 4]
    return bytes(pkt)[:40 + pkt[TCP].dataofs * 4]


def error(seg, name: str, source: str | None = None) -> bytes:
    """An ICMP error `name` about the SUT's segment `seg`, sent from a router
    (or from `source`) to the SUT."""
    family = seg.family
    build, _ = ERRORS[(family, name)]
    src = source or ROUTER[family]
    if family == "ipv4":
        return bytes(IP(src=src, dst=seg.src) / build() / quote(seg))
    return bytes(IPv6(src=src, dst=seg.src) / build() / quote(seg))


def too_big(seg, mtu: int, source: str | None = None) -> bytes:
    """Fragmentation needed (IPv4, with the next-hop MTU) or packet too big (IPv6)."""
    src = source or ROUTER[seg.family]
    if seg.family == "ipv4":
        return bytes(IP(src=src, dst=seg.src) / ICMP(type=3, code=4, nexthopmtu=mtu) / quote(seg))
    return bytes(IPv6(src=src, dst=seg.src) / ICMPv6PacketTooBig(mtu=mtu) / quote(seg))


def with_ip(peer, flags: str, wrap, **send):
    """Peer.send, with the IP packet passed through `wrap` (which adds IPv4
    options, an IPv6 extension header, a TOS...) before it leaves: every
    variable of the Peer moves as for a plain send."""
    plain = peer.packet

    def packet(*args, **kw):
        return wrap(plain(*args, **kw))

    peer.packet = packet
    try:
        return peer.send(flags, **send)
    finally:
        del peer.packet


def ipv4_options(*options):
    """A `wrap` for with_ip: these IPv4 options (Scapy IPOption objects).
    The TCP checksum is the one of the plain packet: the pseudo-header holds
    the datagram's destination, where Scapy would take a source route's last
    address instead (right only for a route not yet completed)."""
    def wrap(pkt):
        pkt[TCP].chksum = IP(bytes(pkt))[TCP].chksum
        pkt[IP].options = list(options)
        return pkt
    return wrap


def hop_by_hop(*options):
    """A `wrap` for with_ip: an IPv6 hop-by-hop header with these options."""
    def wrap(pkt):
        ip = pkt[IPv6]
        return IPv6(src=ip.src, dst=ip.dst, tc=ip.tc, hlim=ip.hlim) / IPv6ExtHdrHopByHop(options=list(options)) \
            / pkt[TCP]
    return wrap
