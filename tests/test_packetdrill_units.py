"""The packetdrill interpreter's pure parts, without root: the lexer, the
parser and its semantic errors, packetdrill's numbering and matching rules,
the clock, options and shell-command classification."""
import struct

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.inet6 import IPv6

from harness.packetdrill import ast
from harness.packetdrill.lexer import CHAR, FLOAT, HEX, INTEGER, IPV4, IPV6, KEYWORD, STRING, WORD, tokenize
from harness.packetdrill.packets import (ACK, FIN, PSH, SYN, Flow, Live, PacketError, aggregate, continues,
                                         flag_bits, inbound_tcp, mismatches, parse_option_bytes)
from harness.packetdrill.parser import ParseError, parse, parse_options
from harness.packetdrill.runner import Clock, Config, OptionError, Runner, Unsupported
from harness.segment import Segment
from harness.verdict import Tolerance


def kinds(text, **defines):
    return [(t.kind, t.value) for t in tokenize(text, defines)][:-1]


# --- lexer -------------------------------------------------------------------------------

def test_lexer_longest_match_and_rule_order():
    assert kinds("+.1 0.200 1:1001(1000) 0x1f 3021b9d889017eeb -1") == [
        (CHAR, "+"), (FLOAT, 0.1), (FLOAT, 0.2), (INTEGER, 1), (CHAR, ":"), (INTEGER, 1001), (CHAR, "("),
        (INTEGER, 1000), (CHAR, ")"), (HEX, 0x1f), (WORD, "3021b9d889017eeb"), (INTEGER, -1)]
    # an IPv4 address is longer than a float; `1:1001` is no IPv6 address
    assert kinds("192.0.2.1 fd3d::1 ::ffff:1.2.3.4") == [(IPV4, "192.0.2.1"), (IPV6, "fd3d::1"),
                                                          (IPV6, "::ffff:1.2.3.4")]
    # keywords are exact words; a longer word is a word
    assert kinds("ack acks sackOK") == [(KEYWORD, "ack"), (WORD, "acks"), (KEYWORD, "sackOK")]
    assert kinds("S. P.5") == [(WORD, "S"), (CHAR, "."), (WORD, "P"), (FLOAT, 0.5)]


def test_lexer_comments_strings_code_and_lines():
    toks = tokenize('// one\n/* two\nthree */ "a\\"b" `cmd\nmore` %{ x = 1 }%\nword')
    assert [(t.kind, t.value, t.line) for t in toks[:-1]] == [
        (STRING, 'a\\"b', 3), ("COMMAND", "cmd\nmore", 3), ("CODE", "x = 1", 4), (WORD, "word", 5)]


def test_lexer_defines_substitute_whole_words():
    assert kinds("CODE FOO BAR ACK", CODE="host_unreachable", FOO="0x10", BAR='"s"', ACK="x") == [
        (WORD, "host_unreachable"), (INTEGER, 16), (STRING, "s"), (WORD, "x")]
    assert kinds("ack", ack="1") == [(KEYWORD, "ack")]          # never keywords


# --- parser ------------------------------------------------------------------------------

SCRIPT = """// a script
--tolerance_usecs=10000
--define=CC=TCP_NODELAY
`sysctl -q net.ipv4.tcp_sack=1`
0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3
+0 setsockopt(3, SOL_SOCKET, SO_LINGER, {onoff=1, linger=0}, 8) = 0
+.1 < S 0:0(0) win 32792 <mss 1000,sackOK,TS val 100 ecr 0,nop,wscale 7>
+0 > S. 0:0(0) ack 1 <...>
+.2~+.3 > [ect0] P. 1:1001(1000) ack 1 win 257
* > F. 1001:1001(0) ack 1
0.5~0.6 > . 1:1(0) ack 1 <nop,nop,sack 1:2 3:4>
+0...0.7 read(3, ..., 1000) = -1 EAGAIN (Resource temporarily unavailable)
+0 fcntl(3, F_GETFL) = 0x802 (flags O_RDWR O_NONBLOCK)
+0 poll([{fd=3, events=POLLIN|POLLOUT, revents=POLLOUT}], 1, 0) = 1
+0 %{
assert tcpi_rto > 0
}%
+0 < icmp unreachable frag_needed mtu 1200 [1:1461(1460)]
`echo done`
"""


def test_parse_a_script_of_every_kind_of_line():
    s = parse(SCRIPT, "x.pkt")
    assert [(o.name, o.value, o.line) for o in s.options] == [("tolerance_usecs", "10000", 2),
                                                              ("define", "CC=TCP_NODELAY", 3)]
    assert s.init.text_ == "sysctl -q net.ipv4.tcp_sack=1" and s.init_line == 4
    assert s.cleanup.text_ == "echo done"
    ev = s.events
    assert [e.line for e in ev] == [5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 18]
    assert ev[2].time == ast.Time(ast.RELATIVE, 0.1)
    syn = ev[2].action
    assert syn.inbound and syn.flags == "S" and syn.win == 32792
    assert [o.text() for o in syn.options] == ["mss 1000", "sackOK", "TS val 100 ecr 0", "nop", "wscale 7"]
    assert ev[3].action.options is None                              # <...>
    assert ev[4].time == ast.Time(ast.RELATIVE_RANGE, 0.2, 0.3) and ev[4].action.ip.ecn == "ect0"
    assert ev[5].time.kind == ast.ANY
    assert ev[6].time == ast.Time(ast.ABSOLUTE_RANGE, 0.5, 0.6)
    assert ev[6].action.options[2].value == ((1, 2), (3, 4))
    read = ev[7].action
    assert read.end == 0.7 and read.errno == "EAGAIN" and read.result == ast.Int(-1)
    assert ev[8].action.result == ast.Int(0x802, hex=True) and ev[8].action.note == "flags O_RDWR O_NONBLOCK"
    pollfd = ev[9].action.args[0].items[0]
    assert pollfd.kind == "pollfd" and pollfd.get("revents") == ast.Word("POLLOUT")
    assert ev[10].action.text_.strip() == "assert tcpi_rto > 0"
    icmp = ev[11].action
    assert (icmp.type, icmp.code, icmp.mtu, icmp.echoed) == ("unreachable", "frag_needed", 1200, ("tcp", 1, 1460))


@pytest.mark.parametrize("text, message", [
    ("0 < S 0:0(0)", "window must be specified for inbound packets"),
    ("0 > S 0:10(5) win 1", "inconsistent TCP sequence numbers and payload size"),
    ("0 < S 0:0(0) win 1 <...>", "<...> for TCP options can only be used with outbound packets"),
    ("0.1~0.2 < S 0:0(0) win 1", "event time range can only be used with outbound packets"),
    ("* read(3, ..., 1) = 1", "event time <star> can only be used with outbound packets"),
    ("0.2~0.1 > S 0:0(0)", "time range is backwards"),
    ("0 > S 0:0(0) <mss 1000,nop>", "TCP options are not padded correctly"),
    ("0 > S 0:0(0) <sack 1:2 3:4 5:6 7:8 9:10>", "TCP option list too long"),
    ("0 > SX 0:0(0)", "Invalid TCP flag: 'X'"),
    ("0 > SE.5 0:0(0)", "Conflicting TCP flag"),
    ("0 < [ect01] S 0:0(0) win 1", "[ect01] can only be used with outbound packets"),
    ("0 > S 0:0(0)\r\n", "carriage return"),
    ("0 > S 0:0(0) ack", "expected the ack number"),
    ("", "at least one event"),
])
def test_parse_errors_name_the_line(text, message):
    with pytest.raises(ParseError) as e:
        parse("// comment\n" + text, "x.pkt")
    assert message in str(e.value)
    assert e.value.line == 2 or not text


def test_parse_command_line_options():
    assert parse_options("--tolerance_usecs=10000 --strict_segments") == [("tolerance_usecs", "10000"),
                                                                          ("strict_segments", None)]
    with pytest.raises(ParseError):
        parse_options("tolerance_usecs=1")


def test_config_options():
    c = Config.from_options([("tolerance_usecs", "7000", 1), ("ip_version", "ipv6", 2), ("strict_segments", None, 3),
                             ("local_ip", "192.168.0.1", 4), ("define", "A=B", 5), ("tolerance_usecs", "9000", 0)])
    assert c.tolerance_usecs == 9000 and c.families() == ("ipv6",) and c.strict_segments and c.defines == {"A": "B"}
    with pytest.raises(OptionError, match="option 'frobnicate' unknown"):
        Config.from_options([("frobnicate", None, 3)])
    with pytest.raises(OptionError, match="bad --tolerance_usecs"):
        Config.from_options([("tolerance_usecs", "0", 3)])
    with pytest.raises(Unsupported, match="wire mode"):
        Config.from_options([("wire_client", None, 3)])


# --- numbering and matching ------------------------------------------------------------------

def tcp(text):
    """One packet line, parsed."""
    return parse("0 " + text).events[0].action


def live(flags, seq, ack=0, window=1000, options=(), payload=b"", t=0.0):
    return Live(flags, seq, ack, window, 0, 0, list(options), payload, t=t)


def test_relative_numbers_both_ways():
    flow = Flow()
    # the tester's SYN goes out absolute; its later segments relative to its ISN
    assert flow.inbound_seq(tcp("< S 1000:1000(0) win 1")) == 1000 and flow.remote_isn == 1000
    assert flow.inbound_seq(tcp("< . 1:1(0) ack 1 win 1")) == 1001
    # the SUT's SYN-ACK: its ISN is whatever it chose; the script's line wrote 0
    synack = tcp("> S. 0:0(0) ack 1001")
    sa = live(SYN | ACK, 3_000_000_000, 1001)
    assert mismatches(synack, sa, flow, "ipv4") == []                     # a SYN-ACK's ack is absolute
    flow.learn_outbound(synack, sa)
    assert flow.local_isn_live == 3_000_000_000
    # our ACK of its data, and its data, in script numbers
    assert flow.inbound_ack(tcp("< . 1:1(0) ack 101 win 1")) == (3_000_000_000 + 101) % 2**32
    assert flow.inbound_ack(tcp("< R 1:1(0) win 1")) == 0                # no ACK bit: not translated
    data = live(ACK | PSH, 3_000_000_001, 1001, payload=bytes(100))
    assert mismatches(tcp("> P. 1:101(100) ack 1"), data, flow, "ipv4") == []
    assert mismatches(tcp("> P. 1:101(100) ack 2"), data, flow, "ipv4") == [
        "live packet field tcp_ack_seq: expected: 2 (0x2) vs actual: 1 (0x1)"]


def test_timestamp_val_map_and_ecr():
    flow = Flow()
    flow.inbound_seq(tcp("< S 0:0(0) win 1"))
    synack = tcp("> S. 0:0(0) ack 1 <mss 1460,sackOK,TS val 100 ecr 700,nop,wscale 8>")
    sa = live(SYN | ACK, 5, 1, options=[(2, b"\x05\xb4"), (4, b""), (8, struct.pack("!II", 9_000_000, 77)),
                                       (1, b""), (3, b"\x08")])
    assert mismatches(synack, sa, flow, "ipv4") == []                   # TS val and ecr not compared
    flow.learn_outbound(synack, sa)
    opts = flow.inbound_options(tcp("< . 1:1(0) ack 1 win 1 <nop,nop,TS val 701 ecr 100>"), False)
    assert opts[2] == (8, struct.pack("!II", 701, 9_000_000))
    with pytest.raises(PacketError, match="unable to infer live TS ecr for script TS ecr 150"):
        flow.inbound_options(tcp("< . 1:1(0) ack 1 win 1 <nop,nop,TS val 701 ecr 150>"), False)
    scaled = flow.inbound_options(tcp("< . 1:1(0) ack 1 win 1 <nop,nop,TS val 701 ecr 150>"), True)
    assert scaled[2] == (8, struct.pack("!II", 701, 9_000_050))
    # with a tick, a TS val off by more than the tolerance fails
    later = live(ACK, 6, 1, options=[(1, b""), (1, b""), (8, struct.pack("!II", 9_000_100, 701))])
    assert mismatches(tcp("> . 1:1(0) ack 1 <nop,nop,TS val 200 ecr 701>"), later, flow, "ipv4", 1000, 4000) == []
    bad = mismatches(tcp("> . 1:1(0) ack 1 <nop,nop,TS val 300 ecr 701>"), later, flow, "ipv4", 1000, 4000)
    assert bad and "bad outbound TCP timestamp value" in bad[0]


def test_option_mismatches_are_named():
    flow = Flow()
    got = live(SYN, 1, options=[(2, b"\x05\xa0")])
    assert "bad value in outbound TCP option (kind=2): expected: mss 1460 actual: mss 1440" in \
        mismatches(tcp("> S 0:0(0) <mss 1460>"), got, flow, "ipv4")[0]
    assert mismatches(tcp("> S 0:0(0) <mss 1460,nop,nop,sackOK>"), got, flow, "ipv4")[0].startswith(
        "live packet field tcp_data_offset")
    assert mismatches(tcp("> S 0:0(0) <...>"), got, flow, "ipv4") == []
    assert mismatches(tcp("> S 0:0(0) win 5 <...>"), got, flow, "ipv4") == [
        "live packet field tcp_window: expected: 5 (0x5) vs actual: 1000 (0x3e8)"]
    assert "incorrect outbound data payload" in mismatches(tcp("> P 1:3(2)"), live(PSH, 1, payload=b"ab"), flow,
                                                           "ipv4")[0]


def test_sack_blocks_are_relative_both_ways():
    flow = Flow(remote_isn=1000, local_isn_live=50_000, local_isn_script=0)
    opts = flow.inbound_options(tcp("< . 1:1(0) ack 1 win 1 <nop,nop,sack 1:101>"), False)
    assert opts[2] == (5, struct.pack("!II", 50_001, 50_101))
    out = live(ACK, 50_001, 1001, options=[(1, b""), (1, b""), (5, struct.pack("!II", 2001, 3001))])
    assert mismatches(tcp("> . 1:1(0) ack 1 <nop,nop,sack 1001:2001>"), out, flow, "ipv4") == []


def test_aggregation_rules():
    a = live(ACK, 101, 1, payload=bytes(1000), t=1.0)
    b = live(ACK | PSH, 1101, 1, payload=bytes(500), t=1.1)
    assert continues(a, b) is None
    agg = aggregate([a, b])
    assert (agg.seq, len(agg.payload), agg.flags, agg.t, agg.segments) == (101, 1500, ACK | PSH, 1.1, 2)
    assert continues(a, live(ACK, 1102, 1, payload=b"x")) == "its sequence number does not continue the previous segment"
    assert continues(live(ACK | FIN, 1, 1), live(ACK, 1, 1)) is not None


def test_inbound_packet_is_built_as_written():
    flow = Flow(remote_isn=0, local_isn_live=7, local_isn_script=0)
    p = inbound_tcp(tcp("< [tos 0x10] P. 1:11(10) ack 1 win 257 urg 3"), flow, "ipv4", "198.18.0.2", "198.18.0.1",
                    40000, 8080)
    assert (p[IP].tos, p[IP].ttl, p[IP].id, p[TCP].seq, p[TCP].ack, p[TCP].window, p[TCP].urgptr) == (
        0x10, 255, 0, 1, 8, 257, 3)
    assert bytes(p[TCP].payload) == bytes(10) and flag_bits("P.") == PSH | ACK
    p6 = inbound_tcp(tcp("< [ce, flowlabel 0x12345] S 0:0(0) win 1"), Flow(), "ipv6", "2001:2::2", "2001:2::1",
                     40000, 8080)
    assert (p6[IPv6].tc, p6[IPv6].fl, p6[IPv6].hlim) == (3, 0x12345, 255)


def test_live_of_a_segment_reads_raw_options():
    pkt = IP(src="198.18.0.1", dst="198.18.0.2") / TCP(flags="SA", seq=5, ack=1, options=[("MSS", 1460), ("NOP", None),
                                                                                          ("WScale", 7)])
    seg = Segment.parse(bytes(pkt), 1.0, "sut")
    lv = Live.of(seg)
    assert lv.options == [(2, b"\x05\xb4"), (1, b""), (3, b"\x07")] and lv.flags == SYN | ACK
    assert parse_option_bytes(b"\x01\x02\x04\x05\xb4\x00") == [(1, b""), (2, b"\x05\xb4"), (0, b"")]


# --- the clock -------------------------------------------------------------------------------

def test_clock_windows_forgive_the_testers_lateness():
    c = Clock(100.0, Tolerance(0.004, 0.125))
    lo, hi, interval, script = c.window(ast.Time(ast.RELATIVE, 0.1))
    assert (lo, hi, interval) == (100.1, 100.1, 0.1)
    c.tester_acted(hi, lo, 100.130, script, inbound=True)           # the tester was 30 ms late
    lo, hi, _, _ = c.window(ast.Time(ast.RELATIVE, 0.2))
    assert (round(lo, 6), round(hi, 6)) == (100.3, 100.33)           # from the plan, or from when it acted
    lo, hi, _, _ = c.window(ast.Time(ast.ABSOLUTE, 1.0))
    assert (round(lo, 6), round(hi, 6)) == (101.0, 101.03)           # absolute times carry the slip
    c.sut_acted(100.35, 0.35)
    lo, hi, _, _ = c.window(ast.Time(ast.RELATIVE_RANGE, 0.1, 0.2))
    assert (round(lo, 6), round(hi, 6)) == (100.45, 100.55)
    assert c.allowed(1.0) == 0.125 and c.allowed(0.0) == 0.004


# --- shell commands ----------------------------------------------------------------------------

@pytest.mark.parametrize("text, pairs", [
    ("sysctl -q net.ipv4.tcp_sack=0", [("net.ipv4.tcp_sack", "0")]),
    ("sysctl -q net.ipv4.tcp_rmem=\"4096 87380 6291456\"; sysctl -w net/ipv4/tcp_ecn=1",
     [("net.ipv4.tcp_rmem", "4096 87380 6291456"), ("net.ipv4.tcp_ecn", "1")]),
    ("echo 3 > /proc/sys/net/ipv4/tcp_synack_retries", [("net.ipv4.tcp_synack_retries", "3")]),
    ("../common/defaults.sh", None),
    ("sysctl -q net.ipv4.tcp_rmem=$((1*2))", None),
    ("tc qdisc add dev tun0 root fq", None),
])
def test_which_commands_are_sysctl_settings(text, pairs):
    assert Runner.sysctls_of(Runner.__new__(Runner), text) == pairs


def test_rarer_options_are_built_byte_for_byte():
    opts = Flow().inbound_options(tcp("< S 0:0(0) win 1 <FOEXP 1234,ECN e0b 1 ceb 2,nop,nop,md5 000102030405,FO,nop,eol>"),
                                  False)
    assert opts == [(254, b"\xf9\x89\x12\x34"), (172, b"\x00\x00\x01\x00\x00\x02"), ("NOP", None), ("NOP", None),
                    (19, bytes(range(6))), (34, b""), ("NOP", None), ("EOL", None)]


def test_case_id_is_the_path_relative_to_the_directory_given(tmp_path):
    from types import SimpleNamespace
    from harness.packetdrill.plugin import case_id, script_families
    d = tmp_path / "corpus" / "tcp" / "close"
    d.mkdir(parents=True)
    f = d / "x.pkt"
    f.write_text("0 > S 0:0(0)\n")

    def config(*args):
        return SimpleNamespace(invocation_params=SimpleNamespace(args=args, dir=tmp_path), rootpath=tmp_path)
    assert case_id(config("corpus"), f) == "pkt.tcp/close/x.pkt"
    assert case_id(config("corpus", "corpus/tcp"), f) == "pkt.close/x.pkt"          # the deepest one
    assert case_id(config("corpus/tcp/close/x.pkt"), f) == "pkt.x.pkt"
    assert script_families(tmp_path / "a-v6.pkt", Config(), "both") == ["ipv6"]
    assert script_families(tmp_path / "a.pkt", Config(ip_version="ipv4"), "both") == ["ipv4"]
    assert script_families(tmp_path / "a.pkt", Config(), "ipv6") == ["ipv6"]


def test_nominal_duration_adds_relative_times():
    from harness.packetdrill.plugin import nominal_duration
    s = parse("0 < S 0:0(0) win 1\n+1 > S. 0:0(0) ack 1\n+.5~+2 > S. 0:0(0) ack 1\n5 < . 1:1(0) ack 1 win 1\n"
              "+0...0.5 read(3, ..., 1) = 1\n")
    assert nominal_duration(s) == 5.5


def test_check_command_says_what_stops_each_script(tmp_path, capsys):
    """python -m harness.packetdrill: no stack, no root."""
    from harness.packetdrill.__main__ import main
    (tmp_path / "ok.pkt").write_text("--define=OPT=TCP_NODELAY\n0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n"
                                     "+0 setsockopt(3, SOL_TCP, OPT, [1], 4) = 0\n")
    (tmp_path / "cmd.pkt").write_text("`../common/defaults.sh`\n0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n")
    (tmp_path / "tfo.pkt").write_text("0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n"
                                      "+0 sendto(3, ..., 1, MSG_FASTOPEN, ..., ...) = 1\n")
    (tmp_path / "bad.pkt").write_text("0 < S 0:0(0)\n")
    assert main([str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "bad.pkt: parse error: line 1: semantic error: window must be specified for inbound packets" in out
    assert "4 scripts: 1 runnable, 2 need what is not supported, 1 do not parse" in out
    assert "shell command `...`" in out and "TCP Fast Open from the client (MSG_FASTOPEN)" in out
    assert main([str(tmp_path / "ok.pkt"), "--pkt-commands", "ignore"]) == 0
