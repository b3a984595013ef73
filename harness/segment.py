"""One TCP segment as the RFC names it, and how it is printed.

Rules of this file:
- Pure: bytes in, objects and strings out. No sockets, no clocks, no state
  beyond the segment itself.
- Scapy parses every packet; this file only gives the fields their RFC 9293
  names (SEG.SEQ, SEG.ACK, SEG.LEN, SEG.WND) and renders them the way
  tcpdump does, so a failure reads like the capture an engineer knows.
- Sequence arithmetic is modulo 2**32 everywhere (RFC 9293 §3.4).

Theory of operation: a Link hands raw IP packets (with their receive or send
timestamp) to the Trace; the Trace wraps each in a Segment lazily. Who sent a
segment is recorded as `sent_by` ("peer" for the tester, "sut" for the stack
under test); the 4-tuple is kept from the sender's point of view.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from scapy.layers.inet import IP, TCP, in4_chksum
from scapy.layers.inet6 import IPv6, IPv6ExtHdrFragment, in6_chksum

MOD = 1 << 32

# tcpdump prints control bits in this order, ACK last as ".".
_TCPDUMP_FLAGS = (("S", "S"), ("F", "F"), ("R", "R"), ("P", "P"), ("U", "U"), ("E", "E"), ("C", "W"))
# Names of the control bits as RFC 9293 writes them in <CTL=...>.
CTL_NAMES = {"S": "SYN", "A": "ACK", "F": "FIN", "R": "RST", "P": "PSH", "U": "URG", "E": "ECE", "C": "CWR"}


def _fragment(pkt) -> bool:
    """An IP fragment: IPv4 with MF or an offset, IPv6 with a Fragment header."""
    if IP in pkt:
        return bool(pkt[IP].flags.MF) or pkt[IP].frag != 0
    return IPv6ExtHdrFragment in pkt


def seq_add(a: int, n: int) -> int:
    return (a + n) % MOD


def seq_diff(a: int, b: int) -> int:
    """a - b as a signed distance in sequence space."""
    d = (a - b) % MOD
    return d - MOD if d >= MOD // 2 else d


def flags_of(text: str) -> frozenset:
    """'SA' -> {'S','A'}; accepts Scapy letters and tcpdump's '.' for ACK."""
    out = set()
    for ch in text:
        if ch == ".":
            ch = "A"
        if ch == "W":
            ch = "C"
        if ch not in CTL_NAMES:
            raise ValueError(f"unknown TCP flag {ch!r} in {text!r} (use S A F R P U E C)")
        out.add(ch)
    return frozenset(out)


def tcpdump_flags(flags: frozenset) -> str:
    s = "".join(t for f, t in _TCPDUMP_FLAGS if f in flags)
    if "A" in flags:
        s += "."
    return s or "none"


@dataclass(frozen=True)
class Segment:
    """A TCP segment seen on the link, with the time it was sent or received."""

    raw: bytes
    t: float                      # seconds, monotonic clock of the Link
    sent_by: str                  # "peer" or "sut"
    pkt: object = field(repr=False, compare=False, default=None)

    @classmethod
    def parse(cls, raw: bytes, t: float, sent_by: str) -> "Segment | None":
        """The segment in an IP packet, or None when the packet carries no TCP."""
        if not raw:
            return None
        version = raw[0] >> 4
        if version == 4:
            pkt = IP(raw)
            if len(raw) > pkt.len:           # Ethernet padding of short frames
                pkt = IP(raw[: pkt.len])
        elif version == 6:
            pkt = IPv6(raw)
            total = 40 + pkt.plen
            if len(raw) > total:
                pkt = IPv6(raw[:total])
        else:
            return None
        if _fragment(pkt) or TCP not in pkt:     # a fragment is part of a segment, not one (an Other)
            return None
        return cls(bytes(pkt), t, sent_by, pkt)

    # --- addressing --------------------------------------------------------
    @property
    def ip(self):
        return self.pkt[IP] if IP in self.pkt else self.pkt[IPv6]

    @property
    def tcp(self) -> TCP:
        return self.pkt[TCP]

    @property
    def family(self) -> str:
        return "ipv4" if IP in self.pkt else "ipv6"

    @property
    def src(self) -> str:
        return self.ip.src

    @property
    def dst(self) -> str:
        return self.ip.dst

    @property
    def sport(self) -> int:
        return self.tcp.sport

    @property
    def dport(self) -> int:
        return self.tcp.dport

    def tuple(self) -> tuple:
        return (self.src, self.sport, self.dst, self.dport)

    # --- RFC 9293 header fields ------------------------------------------------
    @property
    def seq(self) -> int:
        return self.tcp.seq

    @property
    def ack(self) -> int:
        return self.tcp.ack

    @property
    def window(self) -> int:
        return self.tcp.window

    @property
    def urgptr(self) -> int:
        return self.tcp.urgptr

    @cached_property
    def flags(self) -> frozenset:
        return flags_of(str(self.tcp.flags))

    @property
    def reserved(self) -> int:
        return int(self.tcp.reserved)

    @cached_property
    def payload(self) -> bytes:
        return bytes(self.tcp.payload)

    @property
    def syn(self) -> bool:
        return "S" in self.flags

    @property
    def fin(self) -> bool:
        return "F" in self.flags

    @property
    def rst(self) -> bool:
        return "R" in self.flags

    @property
    def has_ack(self) -> bool:
        return "A" in self.flags

    @property
    def seg_len(self) -> int:
        """SEG.LEN: payload octets plus one for SYN and one for FIN."""
        return len(self.payload) + self.syn + self.fin

    @property
    def end(self) -> int:
        return seq_add(self.seq, self.seg_len)

    @cached_property
    def options(self) -> tuple:
        """The TCP options as Scapy decodes them: ((name, value), ...)."""
        return tuple((name, value) for name, value in self.tcp.options)

    def option(self, name: str, default=None):
        for n, v in self.options:
            if n == name:
                return v
        return default

    def has_option(self, name: str) -> bool:
        return any(n == name for n, _ in self.options)

    @cached_property
    def checksum_ok(self) -> bool:
        """The TCP checksum verifies (RFC 9293 MUST-2); the sum over a
        segment that carries a correct checksum is zero."""
        data = bytes(self.tcp)
        if IP in self.pkt:
            return in4_chksum(6, self.pkt[IP], data) == 0
        return in6_chksum(6, self.pkt[IPv6], data) == 0


# --- tcpdump rendering -----------------------------------------------------------

def _option_text(name: str, value) -> str:
    if name == "MSS":
        return f"mss {value}"
    if name == "NOP":
        return "nop"
    if name == "EOL":
        return "eol"
    if name == "WScale":
        return f"wscale {value}"
    if name == "SAckOK":
        return "sackOK"
    if name == "Timestamp":
        return f"TS val {value[0]} ecr {value[1]}"
    if name == "SAck":
        blocks = " ".join(f"{{{value[i]}:{value[i + 1]}}}" for i in range(0, len(value) - 1, 2))
        return f"sack {len(value) // 2} {blocks}"
    if name == "TFO":
        return f"tfo {value.hex() if isinstance(value, bytes) else value}"
    if isinstance(name, int):
        return f"unknown-{name} {value.hex() if isinstance(value, bytes) else value}"
    return f"{name.lower()} {value}"


def options_text(seg: Segment) -> str:
    return ",".join(_option_text(n, v) for n, v in seg.options)


def endpoint(addr: str, port: int) -> str:
    return f"{addr}.{port}"


def tcpdump_line(seg: Segment, t0: float, seq_base: int | None = None, ack_base: int | None = None,
                 names: dict | None = None) -> str:
    """One line as `tcpdump -n` prints it. With bases, seq and ack are printed
    relative to them (tcpdump's default); with None, absolute (`tcpdump -S`)."""
    names = names or {}
    ipver = "IP" if seg.family == "ipv4" else "IP6"
    src = names.get((seg.src, seg.sport), endpoint(seg.src, seg.sport))
    dst = names.get((seg.dst, seg.dport), endpoint(seg.dst, seg.dport))
    parts = [f"Flags [{tcpdump_flags(seg.flags)}]"]
    n = len(seg.payload)
    if n or seg.syn or seg.fin or seg.rst:
        s = seg.seq if seq_base is None else (seg.seq - seq_base) % MOD
        parts.append(f"seq {s}:{(s + n) % MOD}" if n else f"seq {s}")
    if seg.has_ack:
        a = seg.ack if ack_base is None else (seg.ack - ack_base) % MOD
        parts.append(f"ack {a}")
    parts.append(f"win {seg.window}")
    if seg.urgptr or "U" in seg.flags:
        parts.append(f"urg {seg.urgptr}")
    if seg.options:
        parts.append(f"options [{options_text(seg)}]")
    parts.append(f"length {n}")
    bad = "" if seg.checksum_ok else " [bad tcp cksum]"
    return f"{seg.t - t0:10.6f} {ipver} {src} > {dst}: {', '.join(parts)}{bad}"
