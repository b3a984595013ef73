"""Packet lines against live packets: packetdrill's numbering and matching rules.

Rules of this file:
- Pure: script packets and live header fields in, Scapy packets to inject
  and lists of problems out. No sockets, no clocks.
- Numbering (packetdrill's socket.h and run_packet.c): packets with SYN
  carry absolute sequence numbers, all others numbers relative to the ISN
  of the side that sent them. The remote side (the tester) uses the ISN its
  script wrote on its SYN; the local side (the SUT) gets a live ISN, read
  from its SYN or SYN-ACK, and a script ISN, written on that line. A `Flow`
  keeps both per connection, and the TS val map.
- Matching an outbound packet checks what packetdrill checks
  (verify_outbound_live_packet), in its order, and names each mismatch as
  packetdrill does ("live packet field tcp_ack_seq: expected: 1 (0x1) vs
  actual: 2 (0x2)"): IP ECN/TOS and TTL when the line gives them, the flow
  label binding, the TCP data offset, flags, reserved bits, seq, ack,
  window (when written), urgent pointer, options kind by kind (TS val only
  with --tcp_ts_tick_usecs, TS ecr never), and the payload: its length, and
  zero bytes. Addresses, ports, IP ID and TCP checksums are not compared
  (the checksum is the Peer's business: RFC 9293 MUST-2).
- Aggregation: several smaller contiguous segments make up one expected
  segment (a stack without TSO), unless --strict_segments.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field

from scapy.layers.inet import IP, TCP
from scapy.layers.inet6 import IPv6

from . import ast

MOD = 1 << 32
FOEXP_MAGIC = b"\xf9\x89"
KIND = {"eol": 0, "nop": 1, "mss": 2, "wscale": 3, "sackOK": 4, "sack": 5, "TS": 8, "md5": 19, "FO": 34,
        "FOEXP": 254}
KIND_NAME = {v: k for k, v in KIND.items()}
# TCP header flag bits (with AE, RFC 9768 / AccECN, as bit 8)
FIN, SYN, RST, PSH, ACK, URG, ECE, CWR, AE = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80, 0x100
FLAG_BITS = (("tcp_fin", "F", FIN), ("tcp_syn", "S", SYN), ("tcp_rst", "R", RST), ("tcp_psh", "P", PSH),
             ("tcp_ack", ".", ACK), ("tcp_urg", "U", URG))
ECN_CODES = {"noecn": 0, "ect1": 1, "ect0": 2, "ce": 3}


class PacketError(ValueError):
    """A packet line that cannot be turned into a live packet (e.g. a TS ecr
    with no outbound TS val to map it to)."""


def flag_bits(flags: str) -> int:
    """The header bits a line's flags stand for: "S." -> SYN|ACK, "S.5" ->
    SYN|ACK plus ACE 5 (ECE, AE)."""
    bits = 0
    for name, ch, bit in FLAG_BITS:
        if ch in flags:
            bits |= bit
    ace = next((int(c) for c in flags if c.isdigit()), 0)
    if ace:
        bits |= (ECE if ace & 1 else 0) | (CWR if ace & 2 else 0) | (AE if ace & 4 else 0)
    else:
        bits |= (ECE if "E" in flags else 0) | (CWR if "W" in flags else 0) | (AE if "A" in flags else 0)
    return bits


def tcpdump_flags(bits: int) -> str:
    s = "".join(ch for ch, bit in (("F", FIN), ("S", SYN), ("R", RST), ("P", PSH), ("U", URG), ("E", ECE),
                                    ("W", CWR), ("A", AE)) if bits & bit)
    return s + ("." if bits & ACK else "") or "-"


# --- TCP options as bytes -----------------------------------------------------------------

def parse_option_bytes(raw: bytes) -> list[tuple[int, bytes]]:
    """The options area of a TCP header as (kind, data) pairs; a malformed
    tail becomes one (kind, rest) pair."""
    out, i = [], 0
    while i < len(raw):
        kind = raw[i]
        if kind in (0, 1):
            out.append((kind, b""))
            i += 1
            continue
        if i + 1 >= len(raw) or raw[i + 1] < 2 or i + raw[i + 1] > len(raw):
            out.append((kind, raw[i + 1:]))
            break
        n = raw[i + 1]
        out.append((kind, raw[i + 2:i + n]))
        i += n
    return out


def option_text(kind: int, data: bytes) -> str:
    """A live option in script notation."""
    name = KIND_NAME.get(kind)
    if name in ("nop", "eol", "sackOK"):
        return name
    if name == "mss" and len(data) == 2:
        return f"mss {struct.unpack('!H', data)[0]}"
    if name == "wscale" and len(data) == 1:
        return f"wscale {data[0]}"
    if name == "TS" and len(data) == 8:
        return "TS val %d ecr %d" % struct.unpack("!II", data)
    if name == "sack" and len(data) % 8 == 0:
        return "sack " + " ".join("%d:%d" % struct.unpack("!II", data[i:i + 8]) for i in range(0, len(data), 8))
    if name == "FOEXP" and data[:2] == FOEXP_MAGIC:
        return f"FOEXP {data[2:].hex()}".rstrip()
    if name in ("FO", "md5"):
        return f"{name} {data.hex()}".rstrip()
    return f"kind {kind} {data.hex()}".rstrip()


# --- per-connection numbering ---------------------------------------------------------------

@dataclass
class Flow:
    """The numbers packetdrill keeps for one connection (socket.h)."""
    remote_isn: int | None = None            # the tester's: script == live
    local_isn_script: int | None = None      # the SUT's, as its SYN/SYN-ACK line wrote it
    local_isn_live: int | None = None        # the SUT's, as its SYN/SYN-ACK carried it
    ts_map: dict = field(default_factory=dict)   # script TS val -> live TS val (outbound)
    ts_first: tuple | None = None            # (script val, live val) of the first outbound TS
    flowlabels: dict = field(default_factory=dict)   # script flow label -> live flow label

    # tester -> SUT ------------------------------------------------------------------------
    def inbound_seq(self, pkt: ast.TcpPacket) -> int:
        if pkt.syn:
            if self.remote_isn is None:
                self.remote_isn = pkt.start
            return pkt.start % MOD
        return (pkt.start + (self.remote_isn or 0)) % MOD

    def _local_offset(self, synack: bool) -> int:
        if self.local_isn_live is None:
            return 0
        return self.local_isn_live - (self.local_isn_script or 0) if synack else self.local_isn_live

    def inbound_ack(self, pkt: ast.TcpPacket) -> int:
        if "." not in pkt.flags:
            return pkt.ack % MOD
        return (pkt.ack + self._local_offset(pkt.syn)) % MOD

    def inbound_ecr(self, ecr: int, scaled: bool) -> int:
        if ecr in self.ts_map:
            return self.ts_map[ecr]
        if scaled and self.ts_first is not None:
            return (ecr - self.ts_first[0] + self.ts_first[1]) % MOD
        raise PacketError(f"unable to infer live TS ecr for script TS ecr {ecr}; "
                          f"no matching or preceding outbound TS val")

    def inbound_options(self, pkt: ast.TcpPacket, ecr_scaled: bool) -> list:
        """The line's options for Scapy, in its order, as (kind, bytes)."""
        out = []
        off = self._local_offset(pkt.syn)
        for o in pkt.options or ():
            if o.name == "nop":
                out.append(("NOP", None))
            elif o.name == "eol":
                out.append(("EOL", None))
            elif o.name == "TS":
                val, ecr = o.value
                if "." in pkt.flags:
                    ecr = self.inbound_ecr(ecr, ecr_scaled)
                out.append((8, struct.pack("!II", val % MOD, ecr % MOD)))
            elif o.name == "sack":
                out.append((5, b"".join(struct.pack("!II", (a + off) % MOD, (b + off) % MOD) for a, b in o.value)))
            else:
                out.append((ecn_kind(o) if o.name == "ECN" else KIND[o.name], script_option_data(o)))
        return out

    # SUT -> tester ------------------------------------------------------------------------
    def learn_outbound(self, pkt: ast.TcpPacket, live: "Live") -> None:
        """What an outbound line fixes: the SUT's ISN (its SYN or SYN-ACK),
        and the TS val map."""
        if pkt.syn and live.flags & SYN:
            self.local_isn_live = live.seq
            self.local_isn_script = pkt.start
        ts = _script_ts(pkt)
        live_ts = live.option(8)
        if ts is not None and live_ts is not None and len(live_ts) == 8:
            val = struct.unpack("!I", live_ts[:4])[0]
            self.ts_map[ts[0]] = val
            if self.ts_first is None:
                self.ts_first = (ts[0], val)

    def script_seq(self, live: "Live", pkt: ast.TcpPacket) -> int:
        """The SUT's live seq in script space: a SYN's is the line's own ISN
        (offset by what the first SYN fixed), every other relative to it."""
        if live.flags & SYN:
            if self.local_isn_live is None:
                return pkt.start % MOD
            return (live.seq - self.local_isn_live + (self.local_isn_script or 0)) % MOD
        return (live.seq - (self.local_isn_live or 0)) % MOD

    def script_ack(self, live: "Live") -> int:
        if not live.flags & ACK or live.flags & SYN:
            return live.ack
        return (live.ack - (self.remote_isn or 0)) % MOD


def script_option_data(o: ast.TcpOption) -> bytes:
    """The data bytes (after kind and length) of a script option as written."""
    if o.name == "mss":
        return struct.pack("!H", o.value)
    if o.name == "wscale":
        return bytes([o.value])
    if o.name in ("sackOK", "nop", "eol"):
        return b""
    if o.name == "sack":
        return b"".join(struct.pack("!II", a % MOD, b % MOD) for a, b in o.value)
    if o.name == "TS":
        return struct.pack("!II", *o.value)
    if o.name == "FOEXP":
        return FOEXP_MAGIC + o.value
    if o.name == "ECN":
        return b"".join(v.to_bytes(3, "big") for _, v in o.value)
    return o.value                                   # md5, FO


def _script_ts(pkt: ast.TcpPacket):
    for o in pkt.options or ():
        if o.name == "TS":
            return o.value
    return None


def ecn_kind(o: ast.TcpOption) -> int:
    return 172 if o.value and o.value[0][0] == "e0b" else 174


# --- the live side ------------------------------------------------------------------------

@dataclass
class Live:
    """The header fields of one outbound segment (or of several aggregated
    into one), as the SUT sent them."""
    flags: int
    seq: int
    ack: int
    window: int
    urg: int
    reserved: int
    options: list                    # [(kind, data)]
    payload: bytes
    tos: int = 0
    ttl: int = 0
    flowlabel: int | None = None
    t: float = 0.0
    segments: int = 1

    @classmethod
    def of(cls, seg) -> "Live":
        """From a harness Segment."""
        tcp = seg.tcp
        raw = bytes(tcp)
        off = (raw[12] >> 4) * 4
        flags = int(tcp.flags) & 0x1FF
        ip = seg.pkt[IP] if IP in seg.pkt else seg.pkt[IPv6]
        if IP in seg.pkt:
            tos, ttl, fl = ip.tos, ip.ttl, None
        else:
            tos, ttl, fl = ip.tc, ip.hlim, ip.fl
        return cls(flags, tcp.seq, tcp.ack, tcp.window, tcp.urgptr, (raw[12] >> 1) & 0x7,
                   parse_option_bytes(raw[20:off]), seg.payload, tos, ttl, fl, seg.t)

    def option(self, kind: int):
        for k, d in self.options:
            if k == kind:
                return d
        return None

    @property
    def options_size(self) -> int:
        return sum(1 if k in (0, 1) else 2 + len(d) for k, d in self.options)

    def text(self, flow: Flow | None = None, pkt: ast.TcpPacket | None = None) -> str:
        """In script notation: script-space numbers where the flow knows them."""
        if flow is not None and pkt is not None:
            seq, ack = flow.script_seq(self, pkt), flow.script_ack(self)
        else:
            seq, ack = self.seq, self.ack
        n = len(self.payload)
        s = f"{tcpdump_flags(self.flags)} {seq}:{(seq + n) % MOD}({n})"
        if self.flags & ACK:
            s += f" ack {ack}"
        s += f" win {self.window}"
        if self.urg:
            s += f" urg {self.urg}"
        if self.options:
            s += " <" + ",".join(option_text(k, d) for k, d in self.options) + ">"
        return s


def aggregate(parts: list[Live]) -> Live:
    """Contiguous segments as one (packetdrill's aggregate_packets): headers
    from the last, seq and CWR from the first, payloads joined."""
    first, last = parts[0], parts[-1]
    flags = (last.flags & ~CWR) | (first.flags & CWR)
    return Live(flags, first.seq, last.ack, last.window, last.urg, last.reserved, last.options,
                b"".join(p.payload for p in parts), last.tos, last.ttl, last.flowlabel, last.t, len(parts))


def continues(prev: Live, nxt: Live) -> str | None:
    """Why `nxt` cannot be aggregated after `prev`, or None if it can."""
    if (nxt.seq - prev.seq) % MOD != len(prev.payload):
        return "its sequence number does not continue the previous segment"
    same = SYN | RST | ACK | URG | ECE | AE
    if (prev.flags & same) != (nxt.flags & same):
        return "its flags differ"
    if prev.ack != nxt.ack or prev.window != nxt.window or prev.urg != nxt.urg:
        return "its ack, window or urgent pointer differ"
    if prev.options_size != nxt.options_size:
        return "its header length differs"
    if prev.flags & FIN:
        return "the previous segment carried FIN"
    return None


# --- matching -------------------------------------------------------------------------------

def _field(name: str, expected: int, actual: int) -> str:
    return f"live packet field {name}: expected: {expected} ({expected:#x}) vs actual: {actual} ({actual:#x})"


def mismatches(pkt: ast.TcpPacket, live: Live, flow: Flow, family: str, ts_tick_usecs: int = 0,
               ts_allowed_usecs: float = 0, ts_late_usecs: float = 0) -> list[str]:
    """Every way `live` differs from the outbound line `pkt`, in packetdrill's
    words, checked in its order (an empty list: it matches)."""
    problems = []
    ip = pkt.ip
    if ip.ecn is not None:
        got = live.tos & 3
        if ip.ecn == "ect01":
            if got not in (1, 2):
                problems.append(f"live packet field ip_ecn: expected: ECT(0) or ECT(1) vs actual: {got}")
        elif got != ECN_CODES[ip.ecn]:
            problems.append(_field("ip_ecn", ECN_CODES[ip.ecn], got))
    if ip.tos is not None and live.tos != ip.tos:
        problems.append(_field("tos", ip.tos, live.tos))
    if ip.ttl is not None and live.ttl != ip.ttl:
        problems.append(_field("ttl" if family == "ipv4" else "ipv6_hop_limit", ip.ttl, live.ttl))
    if ip.flowlabel is not None and family == "ipv6":
        bound = flow.flowlabels.get(ip.flowlabel)
        if bound is None:
            if live.flowlabel in flow.flowlabels.values():
                problems.append(f"flowlabel {live.flowlabel:#x} was already seen for another script flowlabel")
            else:
                flow.flowlabels[ip.flowlabel] = live.flowlabel
        elif bound != live.flowlabel:
            problems.append(_field("ipv6_flow_label", bound, live.flowlabel or 0))
    want_opts = sum(o.size for o in pkt.options) if pkt.options is not None else live.options_size
    if want_opts != live.options_size:
        problems.append(_field("tcp_data_offset", 5 + want_opts // 4, 5 + (live.options_size + 3) // 4))
    want = flag_bits(pkt.flags)
    for name, ch, bit in FLAG_BITS:
        if (want & bit) != (live.flags & bit):
            problems.append(_field(name, int(bool(want & bit)), int(bool(live.flags & bit))))
    ace = next((int(c) for c in pkt.flags if c.isdigit()), 0)
    if ace:
        got_ace = bool(live.flags & ECE) | (bool(live.flags & CWR) << 1) | (bool(live.flags & AE) << 2)
        if got_ace != ace:
            problems.append(_field("tcp_ace", ace, got_ace))
    else:
        for name, bit in (("tcp_ece", ECE), ("tcp_cwr", CWR), ("tcp_ae", AE)):
            if (want & bit) != (live.flags & bit):
                problems.append(_field(name, int(bool(want & bit)), int(bool(live.flags & bit))))
    if live.reserved:                      # the three bits left beside AE
        problems.append(_field("tcp_reserved_bits", 0, live.reserved))
    seq = flow.script_seq(live, pkt)
    if seq != pkt.start % MOD:
        problems.append(_field("tcp_seq", pkt.start, seq))
    ack = flow.script_ack(live)
    if ack != pkt.ack % MOD:
        problems.append(_field("tcp_ack_seq", pkt.ack, ack))
    if pkt.win is not None and live.window != pkt.win:
        problems.append(_field("tcp_window", pkt.win, live.window))
    if live.urg != pkt.urg:
        problems.append(_field("tcp_urg_ptr", pkt.urg, live.urg))
    if pkt.options is not None:
        problems += _option_mismatches(pkt, live, flow, ts_tick_usecs, ts_allowed_usecs, ts_late_usecs)
    if len(live.payload) != pkt.length:
        problems.append(f"live packet payload: expected {pkt.length} bytes vs actual {len(live.payload)} bytes")
    elif live.payload.count(0) != len(live.payload):
        problems.append("incorrect outbound data payload (packetdrill's payloads are zero bytes)")
    return problems


def _option_mismatches(pkt, live: Live, flow: Flow, tick: int, allowed: float, late: float = 0) -> list[str]:
    want = [(KIND[o.name] if o.name != "ECN" else ecn_kind(o), o) for o in pkt.options]
    got = live.options
    if [k for k, _ in want] != [k for k, _ in got]:
        return ["bad outbound TCP options: expected <" + ",".join(o.text() for _, o in want) + "> vs actual <"
                + ",".join(option_text(k, d) for k, d in got) + ">"]
    out = []
    ack_off = flow.remote_isn or 0
    for (kind, o), (_, data) in zip(want, got):
        if kind in (0, 1):
            continue
        if o.name == "TS":
            if len(data) != 8:
                out.append(f"bad length in outbound TCP option (kind={kind})")
            elif tick:
                live_val = struct.unpack("!I", data[:4])[0]
                if flow.ts_first is not None:
                    script_val = (flow.ts_first[0] + live_val - flow.ts_first[1]) % MOD
                    off = ((script_val - o.value[0] + (1 << 31)) % MOD - (1 << 31)) * tick
                    if not -allowed <= off <= allowed + late:
                        out.append(f"bad outbound TCP timestamp value, tolerance {allowed:.0f} usecs: "
                                   f"expected TS val {o.value[0]} vs actual {script_val}")
            continue
        expected = script_option_data(o)
        if o.name == "sack":
            blocks = [struct.unpack("!II", data[i:i + 8]) for i in range(0, len(data) - len(data) % 8, 8)]
            data = b"".join(struct.pack("!II", (a - ack_off) % MOD, (b - ack_off) % MOD) for a, b in blocks)
        if len(data) != len(expected):
            out.append(f"bad length in outbound TCP option (kind={kind}): expected {2 + len(expected)} "
                       f"vs actual {2 + len(data)}")
        elif data != expected:
            out.append(f"bad value in outbound TCP option (kind={kind}): expected: {o.text()} "
                       f"actual: {option_text(kind, data)}")
    return out


# --- building inbound packets ------------------------------------------------------------

def inbound_tcp(pkt: ast.TcpPacket, flow: Flow, family: str, src: str, dst: str, sport: int, dport: int,
                ecr_scaled: bool = False):
    """The Scapy packet an inbound line stands for (checksums filled in by
    Scapy; TTL or hop limit 255 unless written; IPv4 ID 0, no DF)."""
    bits = flag_bits(pkt.flags)
    options = flow.inbound_options(pkt, ecr_scaled)
    seq = flow.inbound_seq(pkt)
    ack = flow.inbound_ack(pkt)
    tos = (pkt.ip.tos if pkt.ip.tos is not None else 0) | (ECN_CODES.get(pkt.ip.ecn, 0) if pkt.ip.ecn else 0)
    ttl = pkt.ip.ttl if pkt.ip.ttl is not None else 255
    if family == "ipv4":
        ip = IP(src=src, dst=dst, ttl=ttl, tos=tos, id=0, flags=0)
    else:
        ip = IPv6(src=src, dst=dst, hlim=ttl, tc=tos, fl=pkt.ip.flowlabel or 0)
    tcp = TCP(sport=pkt.sport or sport, dport=pkt.dport or dport, seq=seq, ack=ack, flags=bits,
              window=pkt.win or 0, urgptr=pkt.urg, options=options)
    out = ip / tcp
    if pkt.length:
        out = out / (b"\0" * pkt.length)
    return out
