"""The packetdrill parser: tokens in, a Script (harness.packetdrill.ast) out.

Rules of this file:
- Pure: text in, data out. Nothing here knows a stack, a socket or a clock.
- The grammar is packetdrill's (parser.y, summarised in its syntax.md),
  written as a recursive descent over the tokens of lexer.py. Where
  packetdrill rejects a script at parse time (a semantic error: inbound
  packet without a window, START:END(LEN) that does not add up, `<...>` on
  an inbound packet, a time range on anything but an outbound packet,
  options not padded to 32 bits...), so does this parser, with the line.
- Every event carries the line of its timestamp, as packetdrill reports it.

Layout of a script: options (`--name[=value]`), an optional untimed
`init command`, events (`time action`), an optional untimed `cleanup
command`. An action is a packet (`<` inbound, `>` outbound), a system call,
a `shell command` or a %{ python }% block.
"""
from __future__ import annotations

from . import ast
from .lexer import (CHAR, CODE, COMMAND, ELLIPSIS, END, FLOAT, HEX, INTEGER, IPV4, IPV6, KEYWORD, OPTION,
                    STRING, WORD, LexError, Token, tokenize)


class ParseError(ValueError):
    """A script packetdrill would refuse: `line` and the reason."""

    def __init__(self, line: int, message: str, path: str = ""):
        self.line = line
        self.reason = message
        self.path = path
        super().__init__(f"{path or 'script'}:{line}: {message}")


U16, U32 = 0xFFFF, 0xFFFFFFFF
FLAG_CHARS = ".FSRPEWAU01234567"
OPTION_SPACE = 40


def parse(text: str, path: str = "script", defines: dict | None = None) -> ast.Script:
    """Parse a script; ParseError (with the line) if packetdrill would not run it."""
    try:
        tokens = tokenize(text, defines)
    except LexError as e:
        raise ParseError(e.line, str(e), path) from None
    p = _Parser(tokens, path)
    script = ast.Script(path, text)
    p.script(script)
    return script


def parse_options(text: str) -> list[tuple[str, str | None]]:
    """Options written as on packetdrill's command line, one string:
    '--tolerance_usecs=10000 --strict_segments' -> [(name, value), ...]."""
    out = []
    for word in text.split():
        if not word.startswith("--") or len(word) < 3:
            raise ParseError(0, f"options look like --name or --name=value, not {word!r}")
        name, eq, value = word[2:].partition("=")
        out.append((name, value if eq else None))
    return out


class _Parser:
    def __init__(self, tokens: list[Token], path: str):
        self.toks = tokens
        self.i = 0
        self.path = path

    # --- token helpers --------------------------------------------------------------
    @property
    def tok(self) -> Token:
        return self.toks[self.i]

    def peek(self, k: int = 1) -> Token:
        return self.toks[min(self.i + k, len(self.toks) - 1)]

    def next(self) -> Token:
        t = self.toks[self.i]
        if t.kind != END:
            self.i += 1
        return t

    def at(self, kind: str, value=None, k: int = 0) -> bool:
        t = self.peek(k) if k else self.tok
        return t.kind == kind and (value is None or t.value == value)

    def at_char(self, c: str, k: int = 0) -> bool:
        return self.at(CHAR, c, k)

    def at_kw(self, kw: str, k: int = 0) -> bool:
        return self.at(KEYWORD, kw, k)

    def error(self, message: str, tok: Token | None = None):
        tok = tok or self.tok
        raise ParseError(tok.line, message, self.path)

    def unexpected(self, wanted: str):
        t = self.tok
        shown = "end of file" if t.kind == END else (t.text or str(t.value))
        if t.kind == CHAR and t.value == "\r":
            self.error("parse error at '\\r': a carriage return (CRLF line ends) is not whitespace in packetdrill")
        self.error(f"parse error at '{shown}': expected {wanted}")

    def expect_char(self, c: str) -> Token:
        if not self.at_char(c):
            self.unexpected(f"'{c}'")
        return self.next()

    def expect_kw(self, kw: str) -> Token:
        if not self.at_kw(kw):
            self.unexpected(f"'{kw}'")
        return self.next()

    def integer(self, what: str = "an integer") -> int:
        if not self.at(INTEGER):
            self.unexpected(what)
        return self.next().value

    def any_int(self, what: str = "an integer") -> int:
        if self.at(INTEGER) or self.at(HEX):
            return self.next().value
        self.unexpected(what)

    def check(self, ok: bool, message: str, tok: Token) -> None:
        if not ok:
            self.error(f"semantic error: {message}", tok)

    # --- script -----------------------------------------------------------------------
    def script(self, s: ast.Script) -> None:
        while self.at(OPTION):
            s.options.append(self.option())
        if self.at(COMMAND):
            t = self.next()
            s.init, s.init_line = ast.Command(t.value), t.line
        while not self.at(END):
            if self.at(COMMAND) and self.at(END, k=1):
                t = self.next()
                s.cleanup, s.cleanup_line = ast.Command(t.value), t.line
                break
            s.events.append(self.event())
        if not s.events:
            self.error("parse error at 'end of file': a script needs at least one event")

    def option(self) -> ast.Option:
        t = self.next()
        value = None
        if self.at_char("="):
            self.next()
            v = self.tok
            if v.kind in (INTEGER, STRING, IPV4, IPV6):
                value = v.text if v.kind == INTEGER else str(v.value)
                self.next()
            elif v.kind == KEYWORD and v.value in ("ipv4", "ipv6"):
                value = v.value
                self.next()
            elif v.kind == WORD:
                self.next()
                value = v.value
                if self.at_char("="):                 # --define=SYM=VAL
                    self.next()
                    w = self.tok
                    if w.kind == WORD:
                        value = f"{value}={w.value}"
                    elif w.kind == STRING:
                        value = f'{value}="{w.value}"'
                    elif w.kind == COMMAND:
                        value = f"{value}=`{w.value}`"
                    else:
                        self.unexpected("a word, a \"string\" or a `command` after SYM=")
                    self.next()
            else:
                self.unexpected("an option value")
        return ast.Option(t.value, value, t.line)

    # --- events -------------------------------------------------------------------------
    def time_value(self) -> float:
        t = self.tok
        if t.kind not in (INTEGER, FLOAT):
            self.unexpected("a time (seconds)")
        self.next()
        self.check(t.value >= 0, "negative time", t)
        return float(t.value)

    def event_time(self) -> tuple[ast.Time, int]:
        t = self.tok
        if self.at_char("*"):
            self.next()
            return ast.Time(ast.ANY), t.line
        if self.at_char("+"):
            self.next()
            line = self.tok.line
            start = self.time_value()
            if self.at_char("~"):
                self.next()
                self.expect_char("+")
                end = self.time_value()
                return ast.Time(ast.RELATIVE_RANGE, start, end), line
            return ast.Time(ast.RELATIVE, start), line
        if t.kind in (INTEGER, FLOAT):
            start = self.time_value()
            if self.at_char("~"):
                self.next()
                end = self.time_value()
                return ast.Time(ast.ABSOLUTE_RANGE, start, end), t.line
            return ast.Time(ast.ABSOLUTE, start), t.line
        self.unexpected("an event time (0.1, +0.1, *, a~b or +a~+b)")

    def event(self) -> ast.Event:
        time, line = self.event_time()
        start_tok = self.tok
        if self.at_char("<") or self.at_char(">"):
            action = self.packet()
        elif self.at(COMMAND):
            action = ast.Command(self.next().value)
        elif self.at(CODE):
            action = ast.Code(self.next().value)
        elif self.at(ELLIPSIS) or self.at(WORD):
            action = self.syscall()
        else:
            self.unexpected("a packet (< or >), a system call, a `command` or %{ code }%")
        if time.end is not None:
            self.check(time.end >= time.start, "time range is backwards", start_tok)
        outbound = getattr(action, "direction", None) == ">"
        if time.kind == ast.ANY and not outbound:
            self.check(False, "event time <star> can only be used with outbound packets", start_tok)
        if time.end is not None and not outbound:
            self.check(False, "event time range can only be used with outbound packets", start_tok)
        return ast.Event(line, time, action)

    # --- packets ------------------------------------------------------------------------
    def packet(self):
        dtok = self.next()
        direction = dtok.value
        encap = []
        while True:                                     # outer headers: `ipv4 a > b:`, gre, mpls
            if self.at_kw("ipv4") or self.at_kw("ipv6"):
                kw = self.next().value
                info = self.opt_ip_info()
                kind = IPV4 if kw == "ipv4" else IPV6
                if not self.at(kind):
                    self.unexpected(f"an {kw} address")
                src = self.next().value
                self.expect_char(">")
                if not self.at(kind):
                    self.unexpected(f"an {kw} address")
                dst = self.next().value
                self.expect_char(":")
                encap.append((kw, src, dst, info))
            elif self.at_kw("gre") or self.at_kw("GREv0") or self.at_kw("mpls"):
                self.error(f"parse error at '{self.tok.value}': GRE and MPLS encapsulation are not "
                           f"supported by this interpreter")
            else:
                break
        ip = self.opt_ip_info()
        if ip.ecn == "ect01" and direction == "<":
            self.check(False, "[ect01] can only be used with outbound packets", dtok)
        if self.at_kw("udp"):
            self.next()
            sport, dport = self.opt_ports()
            self.expect_char("(")
            ltok = self.tok
            length = self.integer("the UDP payload size")
            self.check(0 <= length <= U16, "UDP payload size out of range", ltok)
            self.expect_char(")")
            self.check(ip.ecn is None, "ECN can only be used with TCP packets", dtok)
            return ast.UdpPacket(direction, length, ip, sport, dport)
        if self.at_kw("icmp"):
            return self.icmp(direction, ip)
        if self.at_kw("encap"):
            self.next()
            self.expect_kw("psp")
            self.expect_kw("spi")
            encap.append(("psp", self.any_int("a PSP SPI")))
        sport, dport = self.opt_ports()
        ftok = self.tok
        flags = self.flags()
        for c in flags:
            self.check(c in FLAG_CHARS, f"Invalid TCP flag: '{c}'", ftok)
        digits = [c for c in flags if c.isdigit()]
        self.check(len(digits) <= 1 and not (digits and any(c in "EWA" for c in flags)),
                   f"Conflicting TCP flag in '{flags}'", ftok)
        stok = self.tok
        start = self.integer("START:END(LEN)")
        self.expect_char(":")
        end = self.integer("START:END(LEN)")
        self.expect_char("(")
        length = self.integer("(LEN)")
        self.expect_char(")")
        self.check(0 <= start <= U32, "TCP start sequence number out of range", stok)
        self.check(0 <= end <= U32, "TCP end sequence number out of range", stok)
        self.check(0 <= length <= U16, "TCP payload size out of range", stok)
        self.check(end == start + length, "inconsistent TCP sequence numbers and payload size", stok)
        ack, win, urg = 0, None, 0
        if self.at_kw("ack"):
            t = self.next()
            ack = self.integer("the ack number")
            self.check(0 <= ack <= U32, "TCP ack sequence number out of range", t)
        if self.at_kw("win"):
            t = self.next()
            win = self.integer("the window")
            self.check(0 <= win <= U16, "TCP window value out of range", t)
        if self.at_kw("urg"):
            t = self.next()
            urg = self.integer("the urgent pointer")
            self.check(0 <= urg <= U16, "urg_ptr value out of range", t)
        options: tuple | None = ()
        if self.at_char("<"):
            otok = self.next()
            if self.at(ELLIPSIS):
                self.next()
                options = None
                self.check(direction == ">", "<...> for TCP options can only be used with outbound packets", otok)
            else:
                options = self.tcp_options()
            self.expect_char(">")
            if options:
                size = sum(o.size for o in options)
                self.check(size <= OPTION_SPACE, "TCP option list too long", otok)
                self.check(size % 4 == 0, f"TCP options are not padded correctly to ensure IP header is a "
                                          f"multiple of 4 bytes: {size % 4} excess bytes", otok)
        if direction == "<":
            self.check(win is not None, "window must be specified for inbound packets", dtok)
        return ast.TcpPacket(direction, flags, start, end, length, ack, win, urg, options, ip, sport, dport,
                             tuple(encap))

    def opt_ports(self) -> tuple[int, int]:
        if self.at(INTEGER) and self.at_char(">", 1):
            t = self.tok
            sport = self.next().value
            self.next()
            dport = self.integer("a destination port")
            self.check(0 <= sport <= U16, "src port out of range", t)
            self.check(0 <= dport <= U16, "dst port out of range", t)
            return sport, dport
        return 0, 0

    def flags(self) -> str:
        if self.at(WORD) or (self.at(KEYWORD) and self.tok.value.isalpha() and self.tok.value.isupper()):
            word = self.next().value
            if self.at(FLOAT) and self.tok.text.startswith("."):
                return word + self.next().text
            if self.at_char("."):
                self.next()
                return word + "."
            return word
        if self.at(FLOAT) and self.tok.text.startswith("."):
            return self.next().text
        if self.at_char("."):
            self.next()
            return "."
        if self.at_char("-"):
            self.next()
            return ""
        self.unexpected("TCP flags (S, S., P., F., R, ., - ...)")

    def opt_ip_info(self) -> ast.IpInfo:
        if not (self.at_char("(") or self.at_char("[")):
            return ast.IpInfo()
        # `(` starts ip info only when a keyword of ip info follows (not a UDP/ICMP length)
        if not (self.peek().kind == KEYWORD and self.peek().value in
                ("noecn", "ect0", "ect1", "ce", "ect01", "tos", "flowlabel", "ttl")):
            return ast.IpInfo()
        close = ")" if self.next().value == "(" else "]"
        ecn = tos = flowlabel = ttl = None
        t = self.tok
        if self.at(KEYWORD) and t.value in ("noecn", "ect0", "ect1", "ce", "ect01"):
            ecn = self.next().value
        elif self.at_kw("tos"):
            self.next()
            if not self.at(HEX):
                self.unexpected("a hex TOS value (tos 0x..)")
            tos = self.next().value
            self.check(tos <= 0xFF, "tos out of range for 8 bits", t)
        elif self.at_kw("ttl"):
            self.next()
            ttl = self.integer("a TTL")
        if self.at_kw("flowlabel") or (self.at_char(",") and (ecn or tos is not None)):
            if self.at_char(","):
                self.next()
            self.expect_kw("flowlabel")
            if not self.at(HEX):
                self.unexpected("a hex flow label (flowlabel 0x..)")
            flowlabel = self.next().value
            self.check(flowlabel <= 0xFFFFF, "flowlabel out of range for 20 bits", t)
        self.expect_char(close)
        return ast.IpInfo(ecn, tos, flowlabel, ttl)

    def hex_blob(self, optional: bool) -> bytes:
        t = self.tok
        if t.kind == WORD or t.kind == INTEGER:
            self.next()
            text = t.text if t.kind == INTEGER else str(t.value)
            try:
                return bytes.fromhex(text)
            except ValueError:
                self.check(False, f"bad hex blob {text!r}: an even number of hex digits", t)
        if optional:
            return b""
        self.unexpected("hex digits")

    def tcp_options(self) -> tuple:
        out = [self.tcp_option()]
        while self.at_char(","):
            self.next()
            out.append(self.tcp_option())
        return tuple(out)

    def tcp_option(self) -> ast.TcpOption:
        t = self.tok
        if t.kind != KEYWORD:
            self.unexpected("a TCP option (nop, mss N, wscale N, sackOK, sack L:R, TS val V ecr E, FO, md5...)")
        kw = self.next().value
        if kw in ("nop", "eol", "sackOK"):
            return ast.TcpOption(kw)
        if kw == "mss":
            v = self.integer("the MSS")
            self.check(0 <= v <= U16, "mss value out of range", t)
            return ast.TcpOption("mss", v)
        if kw == "wscale":
            v = self.integer("the window scale shift")
            self.check(0 <= v <= 0xFF, "window scale shift count out of range", t)
            return ast.TcpOption("wscale", v)
        if kw == "sack":
            blocks = []
            while self.at(INTEGER) and self.at_char(":", 1):
                left = self.next().value
                self.next()
                right = self.integer("a SACK block's right edge")
                self.check(0 <= left <= U32 and 0 <= right <= U32, "TCP SACK sequence number out of range", t)
                blocks.append((left, right))
            if not blocks:
                self.unexpected("SACK blocks (left:right)")
            return ast.TcpOption("sack", tuple(blocks))
        if kw == "TS":
            self.expect_kw("val")
            val = self.integer("the TS value")
            self.expect_kw("ecr")
            ecr = self.integer("the TS echo reply")
            self.check(0 <= val <= U32, "ts val out of range", t)
            self.check(0 <= ecr <= U32, "ecr val out of range", t)
            return ast.TcpOption("TS", (val, ecr))
        if kw == "md5":
            blob = self.hex_blob(optional=False)
            self.check(len(blob) <= 16, "MD5 option digest is at most 16 bytes", t)
            return ast.TcpOption("md5", blob)
        if kw in ("FO", "FOEXP"):
            return ast.TcpOption(kw, self.hex_blob(optional=True))
        if kw == "ECN":
            fields = []
            while self.at(KEYWORD) and self.tok.value in ("e0b", "e1b", "ceb"):
                name = self.next().value
                v = self.integer("an AccECN counter")
                self.check(0 <= v <= 0xFFFFFF, "TCP AccECN field value out of range", t)
                fields.append((name, v))
            self.check(bool(fields) and fields[0][0] in ("e0b", "e1b"), "AccECN option starts with e0b or e1b", t)
            return ast.TcpOption("ECN", tuple(fields))
        self.error(f"parse error at '{kw}': not a TCP option", t)

    def icmp(self, direction: str, ip: ast.IpInfo) -> ast.IcmpPacket:
        self.next()
        if not self.at(WORD):
            self.unexpected("an ICMP type (unreachable, packet_too_big, ...)")
        itype = self.next().value
        code = self.next().value if self.at(WORD) else None
        mtu = None
        if self.at_kw("mtu"):
            self.next()
            mtu = self.integer("the MTU")
        echo_id = 0
        if self.at_kw("id"):
            self.next()
            echo_id = self.integer("the echo id")
        echoed = ("tcp", 0, 0)
        if self.at_char("["):
            self.next()
            if self.at_kw("udp") or self.at_kw("raw"):
                proto = self.next().value
                self.expect_char("(")
                n = self.integer("a length")
                self.expect_char(")")
                echoed = (proto, 0, n)
            else:
                stok = self.tok
                start = self.integer("START:END(LEN)")
                self.expect_char(":")
                end = self.integer("START:END(LEN)")
                self.expect_char("(")
                length = self.integer("(LEN)")
                self.expect_char(")")
                self.check(end == start + length, "inconsistent TCP sequence numbers and payload size", stok)
                echoed = ("tcp", start, length)
            self.expect_char("]")
        return ast.IcmpPacket(direction, itype, code, mtu, echo_id, echoed, ip)

    # --- system calls ----------------------------------------------------------------------
    def syscall(self) -> ast.Syscall:
        end = None
        if self.at(ELLIPSIS):
            self.next()
            end = self.time_value()
        if not self.at(WORD):
            self.unexpected("a system call name")
        name = self.next().value
        self.expect_char("(")
        args = []
        if not self.at_char(")"):
            args = self.expression_list()
        self.expect_char(")")
        self.expect_char("=")
        result = self.expression()
        errno = note = None
        if self.at(WORD) and self.at_char("(", 1):
            errno = self.next().value
            note = self.note()
        elif self.at_char("("):
            note = self.note()
        return ast.Syscall(name, tuple(args), result, errno, note, end)

    def note(self) -> str:
        self.expect_char("(")
        words = []
        while self.at(WORD) or self.at(KEYWORD) or self.at(INTEGER):     # packetdrill: words (and `flags`)
            words.append(str(self.next().value))
        if not words:
            self.unexpected("words of a note")
        self.expect_char(")")
        return " ".join(words)

    def expression_list(self) -> list:
        out = [self.expression()]
        while self.at_char(","):
            self.next()
            out.append(self.expression())
        return out

    def expression(self):
        e = self.primary()
        while self.at_char("|"):
            self.next()
            e = ast.Or(e, self.primary())
        return e

    def primary(self):
        t = self.tok
        if t.kind == ELLIPSIS:
            self.next()
            return ast.Elided()
        if t.kind == INTEGER:
            self.next()
            return ast.Int(t.value)
        if t.kind == HEX:
            self.next()
            return ast.Int(t.value, hex=True)
        if t.kind == WORD:
            self.next()
            if self.at_char("="):
                self.next()
                return ast.Assign(t.value, self.expression())
            return ast.Word(t.value)
        if t.kind == STRING:
            text = self.next().value
            if self.at(ELLIPSIS):
                self.next()
                return ast.Str(text, elided=True)
            while self.at(STRING):
                text += self.next().value
            return ast.Str(text)
        if t.kind == KEYWORD and t.value in ("inet_addr", "inet6_addr"):
            self.next()
            self.expect_char("(")
            if not self.at(STRING):
                self.unexpected("an address in quotes")
            addr = self.next().value
            self.expect_char(")")
            return ast.Struct("inet_addr" if t.value == "inet_addr" else "in6addr", (("addr", addr),))
        if self.at_char("["):
            self.next()
            items = [] if self.at_char("]") else self.expression_list()
            self.expect_char("]")
            return ast.List(tuple(items))
        if self.at_char("{"):
            return self.braced()
        self.unexpected("an expression")

    def field(self, kw: str):
        self.expect_kw(kw)
        self.expect_char("=")
        return self.expression()

    def braced(self):
        self.expect_char("{")
        t = self.tok
        kw = t.value if t.kind == KEYWORD else None
        if kw == "sa_family":
            self.next()
            self.expect_char("=")
            fam = self.next().value
            self.expect_char(",")
            self.expect_kw("sin_port")
            self.expect_char("=")
            self.expect_kw("htons")
            self.expect_char("(")
            port = self.integer("a port")
            self.expect_char(")")
            self.expect_char(",")
            self.expect_kw("sin_addr")
            self.expect_char("=")
            self.expect_kw("inet_addr")
            self.expect_char("(")
            addr = self.next().value
            self.expect_char(")")
            self.expect_char("}")
            return ast.Struct("sockaddr", (("sa_family", fam), ("sin_port", port), ("sin_addr", addr)))
        if kw == "msg_name":
            self.next()
            self.expect_char("(")
            self.expect_elided()
            self.expect_char(")")
            self.expect_char("=")
            self.expect_elided()
            self.expect_char(",")
            self.expect_kw("msg_iov")
            self.expect_char("(")
            iovlen = self.integer("the iovec count")
            self.expect_char(")")
            self.expect_char("=")
            if not self.at_char("["):
                self.unexpected("an iovec array [...]")
            iov = self.primary()
            self.expect_char(",")
            flags = self.field("msg_flags")
            control = ast.List(())
            if self.at_char(","):
                self.next()
                control = self.field("msg_control")
            self.expect_char("}")
            return ast.Struct("msghdr", (("msg_iovlen", iovlen), ("msg_iov", iov), ("msg_flags", flags),
                                         ("msg_control", control)))
        if self.at(ELLIPSIS):
            self.next()
            self.expect_char(",")
            n = self.integer("the iovec length")
            self.expect_char("}")
            return ast.Struct("iovec", (("iov_len", n),))
        if kw == "fd":
            fd = self.field("fd")
            self.expect_char(",")
            events = self.field("events")
            revents = ast.Int(0)
            if self.at_char(","):
                self.next()
                revents = self.field("revents")
            self.expect_char("}")
            return ast.Struct("pollfd", (("fd", fd), ("events", events), ("revents", revents)))
        if kw == "events":
            events = self.field("events")
            self.expect_char(",")
            which = self.tok.value
            if which not in ("fd", "ptr", "u32", "u64"):
                self.unexpected("fd=, ptr=, u32= or u64=")
            data = self.field(which)
            self.expect_char("}")
            return ast.Struct("epollev", (("events", events), (which, data)))
        if kw == "onoff":
            self.next()
            self.expect_char("=")
            on = self.integer("onoff")
            self.expect_char(",")
            self.expect_kw("linger")
            self.expect_char("=")
            secs = self.integer("linger")
            self.expect_char("}")
            return ast.Struct("linger", (("onoff", on), ("linger", secs)))
        if kw == "cmsg_level":
            level = self.field("cmsg_level")
            self.expect_char(",")
            ctype = self.field("cmsg_type")
            self.expect_char(",")
            data = self.field("cmsg_data")
            self.expect_char("}")
            return ast.Struct("cmsg", (("cmsg_level", level), ("cmsg_type", ctype), ("cmsg_data", data)))
        if kw == "scm_sec":
            self.next()
            self.expect_char("=")
            sec = self.integer("scm_sec")
            self.expect_char(",")
            self.expect_kw("scm_nsec")
            self.expect_char("=")
            nsec = self.integer("scm_nsec")
            self.expect_char("}")
            return ast.Struct("scm_timestamping", (("scm_sec", sec), ("scm_nsec", nsec)))
        if kw == "ee_errno":
            fields = []
            for i, name in enumerate(("ee_errno", "ee_origin", "ee_type", "ee_code", "ee_info", "ee_data")):
                if i:
                    self.expect_char(",")
                fields.append((name, self.field(name)))
            self.expect_char("}")
            return ast.Struct("sock_extended_err", tuple(fields))
        if kw in ("flags", "Flags", "mpls") or self.at_char("("):
            self.error(f"parse error at '{t.text}': GRE and MPLS expressions are not supported by this interpreter")
        items = self.expression_list()
        self.expect_char("}")
        return ast.List(tuple(items), braces=True)

    def expect_elided(self) -> None:
        if not self.at(ELLIPSIS):
            self.unexpected("'...'")
        self.next()
