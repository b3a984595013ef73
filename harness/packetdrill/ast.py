"""The packetdrill script as data: what the parser produces, what the runner reads.

Rules of this file:
- Plain frozen dataclasses, no behaviour beyond small derived properties:
  the AST says what the script wrote, in the script's own numbers (relative
  sequence numbers, script fds, seconds). Mapping onto live values is the
  runner's business.
- Every event keeps the line of its timestamp (packetdrill reports that
  line), and a packet keeps its source text for messages.
"""
from __future__ import annotations

from dataclasses import dataclass, field

# --- times -----------------------------------------------------------------------------

ABSOLUTE, RELATIVE, ANY, ABSOLUTE_RANGE, RELATIVE_RANGE = "absolute", "relative", "any", "absolute-range", "relative-range"


@dataclass(frozen=True)
class Time:
    kind: str                       # one of the five above
    start: float = 0.0              # seconds
    end: float | None = None        # ranges only

    @property
    def relative(self) -> bool:
        return self.kind in (RELATIVE, RELATIVE_RANGE)

    def text(self) -> str:
        if self.kind == ANY:
            return "*"
        p = "+" if self.relative else ""
        s = f"{p}{self.start:g}"
        return s if self.end is None else f"{s}~{p}{self.end:g}"


# --- expressions (system call arguments and results) -----------------------------------

@dataclass(frozen=True)
class Elided:                       # `...`
    def text(self) -> str:
        return "..."


@dataclass(frozen=True)
class Int:
    value: int
    hex: bool = False

    def text(self) -> str:
        return hex(self.value) if self.hex else str(self.value)


@dataclass(frozen=True)
class Word:                         # a symbol: SOCK_STREAM, MSG_FASTOPEN, EPOLLIN...
    name: str

    def text(self) -> str:
        return self.name


@dataclass(frozen=True)
class Str:
    value: str                      # as written, C escapes not yet decoded
    elided: bool = False            # "abc"...

    def text(self) -> str:
        return f'"{self.value}"' + ("..." if self.elided else "")


@dataclass(frozen=True)
class Or:                           # a | b
    lhs: object
    rhs: object

    def text(self) -> str:
        return f"{self.lhs.text()}|{self.rhs.text()}"


@dataclass(frozen=True)
class Assign:                       # NAME=expr (NLA lists)
    name: str
    value: object

    def text(self) -> str:
        return f"{self.name}={self.value.text()}"


@dataclass(frozen=True)
class List:                         # [a, b] or {a, b}
    items: tuple
    braces: bool = False

    def text(self) -> str:
        inner = ", ".join(i.text() for i in self.items)
        return f"{{{inner}}}" if self.braces else f"[{inner}]"


@dataclass(frozen=True)
class Struct:
    """A struct written with its field names: kind is sockaddr, msghdr,
    iovec, pollfd, epollev, linger, cmsg, scm_timestamping,
    sock_extended_err, in6addr, gre or mpls; fields by name."""
    kind: str
    fields: tuple                   # ((name, expr), ...)

    def get(self, name: str, default=None):
        for n, v in self.fields:
            if n == name:
                return v
        return default

    def text(self) -> str:
        return "{" + ", ".join(f"{n}={v.text() if hasattr(v, 'text') else v}" for n, v in self.fields) + "}"


# --- packets -----------------------------------------------------------------------------

@dataclass(frozen=True)
class IpInfo:
    ecn: str | None = None          # noecn ect0 ect1 ce ect01
    tos: int | None = None
    flowlabel: int | None = None
    ttl: int | None = None


@dataclass(frozen=True)
class TcpOption:
    """name: nop eol mss wscale sackOK sack TS md5 FO FOEXP ECN; value:
    mss/wscale an int, sack ((left, right), ...), TS (val, ecr), md5/FO/FOEXP
    bytes, ECN ((field, value), ...) in the order written."""
    name: str
    value: object = None

    @property
    def size(self) -> int:
        if self.name in ("nop", "eol"):
            return 1
        if self.name == "mss":
            return 4
        if self.name == "wscale":
            return 3
        if self.name == "sackOK":
            return 2
        if self.name == "sack":
            return 2 + 8 * len(self.value)
        if self.name == "TS":
            return 10
        if self.name == "FOEXP":
            return 4 + len(self.value)
        if self.name == "ECN":
            return 2 + 3 * len(self.value)
        return 2 + len(self.value)              # md5, FO

    def text(self) -> str:
        if self.value is None:
            return self.name
        if self.name == "sack":
            return "sack " + " ".join(f"{a}:{b}" for a, b in self.value)
        if self.name == "TS":
            return f"TS val {self.value[0]} ecr {self.value[1]}"
        if isinstance(self.value, bytes):
            return f"{self.name} {self.value.hex()}".rstrip()
        if self.name == "ECN":
            return "ECN " + " ".join(f"{k} {v}" for k, v in self.value)
        return f"{self.name} {self.value}"


@dataclass(frozen=True)
class TcpPacket:
    direction: str                  # "<" inbound (injected), ">" outbound (the SUT's)
    flags: str                      # as written: "S", "S.", "P.", "." ("" for "-")
    start: int                      # START:END(LEN)
    end: int
    length: int
    ack: int = 0
    win: int | None = None          # None: not written (outbound: not checked)
    urg: int = 0
    options: tuple | None = ()      # None: <...>, any options
    ip: IpInfo = IpInfo()
    sport: int = 0                  # 0: the live port
    dport: int = 0
    encap: tuple = ()               # outer headers, PSP: what the line wrote (unsupported)

    @property
    def inbound(self) -> bool:
        return self.direction == "<"

    def has(self, flag: str) -> bool:
        return flag in self.flags

    @property
    def syn(self) -> bool:
        return "S" in self.flags

    def text(self) -> str:
        parts = [self.direction]
        if self.ip != IpInfo():
            info = [x for x in (self.ip.ecn, f"tos {self.ip.tos:#x}" if self.ip.tos is not None else None,
                                f"flowlabel {self.ip.flowlabel:#x}" if self.ip.flowlabel is not None else None,
                                f"ttl {self.ip.ttl}" if self.ip.ttl is not None else None) if x]
            parts.append("[" + ", ".join(info) + "]")
        if self.sport or self.dport:
            parts.append(f"{self.sport}>{self.dport}")
        parts.append(self.flags or "-")
        parts.append(f"{self.start}:{self.end}({self.length})")
        if self.has("."):
            parts.append(f"ack {self.ack}")
        if self.win is not None:
            parts.append(f"win {self.win}")
        if self.urg:
            parts.append(f"urg {self.urg}")
        if self.options is None:
            parts.append("<...>")
        elif self.options:
            parts.append("<" + ",".join(o.text() for o in self.options) + ">")
        return " ".join(parts)


@dataclass(frozen=True)
class UdpPacket:
    direction: str
    length: int
    ip: IpInfo = IpInfo()
    sport: int = 0
    dport: int = 0

    def text(self) -> str:
        return f"{self.direction} udp ({self.length})"


@dataclass(frozen=True)
class IcmpPacket:
    direction: str
    type: str                       # a name (unreachable, packet_too_big...) or type_N
    code: str | None = None
    mtu: int | None = None
    echo_id: int = 0
    echoed: tuple = ("tcp", 0, 0)   # (protocol, start sequence, payload bytes): tcp, udp or raw
    ip: IpInfo = IpInfo()

    @property
    def inbound(self) -> bool:
        return self.direction == "<"

    def text(self) -> str:
        s = f"{self.direction} icmp {self.type}" + (f" {self.code}" if self.code else "")
        if self.mtu is not None:
            s += f" mtu {self.mtu}"
        proto, start, length = self.echoed
        return s + (f" [{start}:{start + length}({length})]" if proto == "tcp" else f" [{proto} ({length})]")


# --- other actions -------------------------------------------------------------------

@dataclass(frozen=True)
class Syscall:
    name: str
    args: tuple
    result: object                  # an expression (an Int, usually)
    errno: str | None = None        # EINPROGRESS...
    note: str | None = None
    end: float | None = None        # `...END`: a blocking call expected to return at END

    def text(self) -> str:
        s = f"{self.name}({', '.join(a.text() for a in self.args)}) = {self.result.text()}"
        if self.errno:
            s += f" {self.errno}"
        if self.note:
            s += f" ({self.note})"
        return (f"...{self.end:g} " if self.end is not None else "") + s


@dataclass(frozen=True)
class Command:                      # `shell command`
    text_: str

    def text(self) -> str:
        return f"`{self.text_}`"


@dataclass(frozen=True)
class Code:                         # %{ python }%
    text_: str

    def text(self) -> str:
        return "%{ " + self.text_ + " }%"


@dataclass(frozen=True)
class Event:
    line: int
    time: Time
    action: object                  # TcpPacket, UdpPacket, IcmpPacket, Syscall, Command or Code

    @property
    def outbound(self) -> bool:
        return getattr(self.action, "direction", None) == ">"

    @property
    def inbound(self) -> bool:
        return getattr(self.action, "direction", None) == "<"

    def text(self) -> str:
        return f"{self.time.text()} {self.action.text()}"


@dataclass(frozen=True)
class Option:
    name: str
    value: str | None
    line: int


@dataclass
class Script:
    path: str
    source: str
    options: list = field(default_factory=list)         # [Option]
    init: Command | None = None
    init_line: int = 0
    events: list = field(default_factory=list)          # [Event]
    cleanup: Command | None = None
    cleanup_line: int = 0

    def line(self, n: int) -> str:
        lines = self.source.split("\n")
        return lines[n - 1].strip() if 0 < n <= len(lines) else ""
