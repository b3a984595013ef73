"""Unit tests of the sans-IO core: segments, trace rendering, matching,
timing tolerance, catalog and profile validation. No root, no sockets."""
import random
import socket
import subprocess
import time

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.inet6 import IPv6
from scapy.utils import rdpcap

from harness.catalog import Catalog, CatalogError, Profile
from harness.link import Link
from harness.peer import Peer
from harness.segment import Segment, flags_of, seq_diff, tcpdump_flags
from harness.trace import Trace
from harness.verdict import ConformanceFailure, TimingFailure, Tolerance, require_expiry, require_interval

SUT, PEER = "198.18.0.1", "198.18.0.2"


def tcp(src=PEER, dst=SUT, sport=40000, dport=80, **kw):
    ip = IP(src=src, dst=dst) if ":" not in src else IPv6(src=src, dst=dst)
    data = kw.pop("data", b"")
    pkt = ip / TCP(sport=sport, dport=dport, **kw)
    return bytes(pkt / data if data else pkt)


class ScriptedLink(Link):
    """A Link whose SUT is a script: `replies` maps the n-th packet the peer
    sends to the packets the 'SUT' answers with."""

    def __init__(self, trace, replies=None):
        super().__init__(trace)
        self.pending = []
        self.replies = replies or {}
        self.sent = 0

    def fileno(self):
        raise AssertionError("not used")

    def _write(self, raw):
        self.sent += 1
        self.pending += self.replies.get(self.sent, [])

    def _read_ready(self):
        out, self.pending = [(raw, time.monotonic()) for raw in self.pending], []
        return out

    def poll(self, deadline):
        return False                      # the script answers at once or never


# --- segments -----------------------------------------------------------------------

def test_segment_fields_and_rfc_length():
    seg = Segment.parse(tcp(flags="SF", seq=10, data=b"abc"), 1.0, "peer")
    assert seg.seq == 10 and seg.syn and seg.fin and seg.seg_len == 5 and seg.end == 15
    assert seg.checksum_ok


def test_segment_detects_bad_checksum():
    pkt = IP(tcp(flags="S"))
    pkt[TCP].chksum ^= 0x0101
    assert not Segment.parse(bytes(pkt), 0.0, "sut").checksum_ok


@pytest.mark.parametrize("src, dst", [(PEER, SUT), ("2001:2::2", "2001:2::1")])
def test_a_checksum_left_to_the_hardware_is_finished_as_the_hardware_would(src, dst):
    """CHECKSUM_PARTIAL: the field holds the folded pseudo-header sum; the
    finished segment verifies. A wrong pseudo-header sum stays wrong."""
    from scapy.utils import checksum
    from harness.l2 import finish_checksum
    pkt = (IP(src=src, dst=dst) if ":" not in src else IPv6(src=src, dst=dst)) / TCP(sport=1, dport=2, flags="S") / b"abc"
    whole = bytes(pkt)
    ip_len = 20 if ":" not in src else 40
    tcp_len = len(whole) - ip_len
    if ":" not in src:
        pseudo = socket.inet_aton(src) + socket.inet_aton(dst) + bytes([0, 6]) + tcp_len.to_bytes(2, "big")
    else:
        pseudo = (socket.inet_pton(socket.AF_INET6, src) + socket.inet_pton(socket.AF_INET6, dst)
                  + tcp_len.to_bytes(4, "big") + bytes([0, 0, 0, 6]))
    partial = (~checksum(pseudo)) & 0xFFFF                # the folded sum, not its complement
    at = ip_len + 16
    unfinished = whole[:at] + partial.to_bytes(2, "big") + whole[at + 2:]
    assert not Segment.parse(unfinished, 0.0, "sut").checksum_ok
    assert finish_checksum(unfinished) == whole
    wrong = whole[:at] + ((partial + 1) & 0xFFFF).to_bytes(2, "big") + whole[at + 2:]
    assert not Segment.parse(finish_checksum(wrong), 0.0, "sut").checksum_ok


def test_segment_trims_ethernet_padding():
    raw = tcp(flags="A") + b"\0" * 6           # a 60-byte frame's padding
    seg = Segment.parse(raw, 0.0, "sut")
    assert seg.payload == b"" and seg.checksum_ok


def test_non_tcp_is_not_a_segment():
    assert Segment.parse(bytes(IPv6(src="2001:2::1", dst="2001:2::2") / b"x"), 0, "sut") is None


def test_sequence_arithmetic_wraps():
    assert seq_diff(5, (1 << 32) - 5) == 10
    assert seq_diff((1 << 32) - 5, 5) == -10


def test_flag_notation():
    assert flags_of("SA") == flags_of("S.") == {"S", "A"}
    assert tcpdump_flags(flags_of("FA")) == "F." and tcpdump_flags(flags_of("R")) == "R"
    with pytest.raises(ValueError):
        flags_of("SX")


# --- trace --------------------------------------------------------------------------

def _handshake_trace():
    tr = Trace(t0=0.0)
    tr.add(tcp(flags="S", seq=1197597775, options=[("MSS", 1460), ("NOP", None), ("WScale", 8),
                                                      ("NOP", None), ("NOP", None), ("SAckOK", b"")]), 0.1, "peer")
    tr.add(tcp(src=SUT, dst=PEER, sport=80, dport=40000, flags="SA", seq=677374397, ack=1197597776), 0.2, "sut")
    tr.add(tcp(flags="A", seq=1197597776, ack=677374398), 0.3, "peer")
    tr.add(tcp(src=SUT, dst=PEER, sport=80, dport=40000, flags="PA", seq=677374398, ack=1197597776,
               data=b"x" * 15), 0.4, "sut")
    return tr


def test_tcpdump_relative_like_the_seed_note():
    lines = _handshake_trace().tcpdump(relative=True).splitlines()
    assert "Flags [S], seq 1197597775," in lines[0]
    assert "options [mss 1460,nop,wscale 8,nop,nop,sackOK]" in lines[0]
    assert "Flags [S.], seq 677374397, ack 1197597776" in lines[1]
    assert "Flags [.], ack 1," in lines[2] and "seq" not in lines[2]
    assert "Flags [P.], seq 1:16, ack 1," in lines[3] and lines[3].endswith("length 15")


def test_tcpdump_absolute_like_dash_S():
    lines = _handshake_trace().tcpdump(relative=False).splitlines()
    assert "Flags [.], ack 677374398," in lines[2]
    assert "seq 677374398:677374413, ack 1197597776" in lines[3]


def test_pcap_round_trips_through_scapy(tmp_path):
    tr = _handshake_trace()
    pkts = rdpcap(tr.pcap(str(tmp_path / "t.pcap")))
    assert [bytes(p) for p in pkts] == [e.raw for e in tr.entries]
    assert pkts[1][TCP].flags == "SA"


# --- peer matching (scripted SUT) -----------------------------------------------------------

def _peer(replies):
    tr = Trace()
    link = ScriptedLink(tr, replies)
    return Peer(link, "ipv4", PEER, SUT, 40000, 80, random.Random(7)), link


def test_peer_tracks_rfc_variables_through_a_handshake():
    peer, link = _peer({})
    iss = peer.iss
    link.replies = {1: [tcp(src=SUT, dst=PEER, sport=80, dport=40000, flags="SA", seq=5000, ack=iss + 1,
                            options=[("MSS", 1400), ("WScale", 3)])]}
    synack = peer.connect()
    assert (peer.irs, peer.rcv_nxt, peer.snd_nxt, peer.snd_una) == (5000, 5001, iss + 1, iss + 1)
    assert synack.option("MSS") == 1400 and peer.sut_wscale == 3
    third = peer.trace.entries[-1]
    assert third.flags == {"A"} and third.seq == iss + 1 and third.ack == 5001


def test_expect_names_requirement_and_shows_expected_and_seen():
    peer, link = _peer({1: [tcp(src=SUT, dst=PEER, sport=80, dport=40000, flags="RA", seq=0, ack=1)]})
    peer.send("S")
    with pytest.raises(ConformanceFailure) as e:
        peer.expect("SA", ack=peer.iss + 1, requirement="RFC9293/3.10.7.2")
    msg = str(e.value)
    assert msg.startswith("RFC9293/3.10.7.2")
    assert "expected: sut > peer: Flags [S.], ack 1" in msg
    assert "seen:" in msg and "Flags [R.]" in msg and "flags [R.] instead of [S.]" in msg


def test_expect_reports_silence():
    peer, _ = _peer({})
    peer.send("S")
    with pytest.raises(ConformanceFailure, match="seen:     nothing"):
        peer.expect("SA", within=0.01)


def test_expect_fails_on_bad_checksum():
    pkt = IP(tcp(src=SUT, dst=PEER, sport=80, dport=40000, flags="SA", seq=1, ack=2))
    pkt[TCP].chksum ^= 0xFFFF
    peer, _ = _peer({1: [bytes(pkt)]})
    peer.send("S")
    with pytest.raises(ConformanceFailure, match="RFC9293/MUST-2"):
        peer.expect("SA")


def test_expect_ignores_other_connections_and_psh():
    other = tcp(src=SUT, dst=PEER, sport=81, dport=40000, flags="R")
    mine = tcp(src=SUT, dst=PEER, sport=80, dport=40000, flags="PA", seq=1, ack=2, data=b"hi")
    peer, _ = _peer({1: [other, mine]})
    peer.send("A")
    assert peer.expect("A", data=b"hi").payload == b"hi"


def test_expect_none_catches_a_segment():
    peer, _ = _peer({1: [tcp(src=SUT, dst=PEER, sport=80, dport=40000, flags="A")]})
    peer.send("A")
    with pytest.raises(ConformanceFailure, match="nothing for"):
        peer.expect_none(within=0.01)


# --- timing --------------------------------------------------------------------------------

def test_tolerance_is_the_larger_of_absolute_and_relative():
    tol = Tolerance(0.025, 0.125)
    assert tol.allowed(0.1) == 0.025 and tol.allowed(8.0) == 1.0
    assert tol.within(1.0, 1.12) and not tol.within(1.0, 1.13)


def test_timer_granularity_widens_the_allowance_by_one_tick():
    tol = Tolerance(0.025, 0.125, granularity=0.5)
    assert tol.allowed(3.0) == 0.875 and tol.within(3.0, 2.2) and not tol.within(3.0, 2.1)
    assert tol.latest(1.0) == 1.625


def test_interval_outside_tolerance_is_a_timing_failure():
    with pytest.raises(TimingFailure, match=r"^timing: RFC6298/5\.5"):
        require_interval(1.5, 1.0, Tolerance(0.025, 0.125), "RFC6298/5.5", "RTO")
    require_interval(1.1, 1.0, Tolerance(0.025, 0.125), "RFC6298/5.5", "RTO")


def test_a_probed_timer_fails_only_when_proven_early_or_late():
    tol = Tolerance(0.025, 0.125)                       # 1 s +- 0.125 s
    require_expiry(0.97, 1.19, 1.0, tol, "RFC9293/3.10.8", "FIN-WAIT-2")      # expired somewhere in between
    require_expiry(1.12, 1.60, 1.0, tol, "RFC9293/3.10.8", "FIN-WAIT-2")      # a slow answer is no late timer
    require_expiry(0.0, 0.88, 1.0, tol, "RFC9293/3.10.8", "FIN-WAIT-2")
    with pytest.raises(TimingFailure, match=r"still running at 1\.130 s, expired by 1\.160 s \(\+0\.130 s\)"):
        require_expiry(1.13, 1.16, 1.0, tol, "RFC9293/3.10.8", "FIN-WAIT-2")   # proven late
    with pytest.raises(TimingFailure, match=r"\(-0\.130 s\)"):
        require_expiry(0.84, 0.87, 1.0, tol, "RFC9293/3.10.8", "FIN-WAIT-2")   # proven early


# --- catalog and profiles -------------------------------------------------------------------

def test_catalog_loads_and_profiles_refer_to_known_cases():
    cat = Catalog.load()
    assert "handshake.lost-third-ack" in cat
    Profile.load("linux").check_cases(cat)
    case = cat["handshake.old-duplicate-syn"]
    assert ("9293#section-3.5", "RFC 9293 §3.5") in case.rfc_links()


@pytest.mark.parametrize("body, message", [
    ('[[case]]\nid = "Bad Id"\ntitle = "t"\nrfc = ["RFC 9293 §3.5"]\nrequirements = []\nlevel = "MUST"\n', "dotted slug"),
    ('[[case]]\nid = "a.b"\ntitle = "t"\nrfc = ["9293"]\nrequirements = []\nlevel = "MUST"\n', "RFC 9293 §3.5"),
    ('[[case]]\nid = "a.b"\ntitle = "t"\nrfc = []\nrequirements = []\nlevel = "OFTEN"\n', "level must be"),
    ('[[case]]\nid = "a.b"\ntitle = "t"\nrfc = []\nrequirements = []\nlevel = "MUST"\nseeds = ["S1"]\n', "unknown key 'seeds'"),
    ('[[case]]\nid = "a.b"\n', "missing 'title'"),
    ('[[case]\nid = "a.b"\n', "not valid TOML"),
])
def test_malformed_catalog_is_one_clear_line(tmp_path, body, message):
    (tmp_path / "x.toml").write_text(body)
    with pytest.raises(CatalogError) as e:
        Catalog.load(tmp_path)
    assert message in str(e.value) and "\n" not in str(e.value) and "x.toml" in str(e.value)


def test_duplicate_case_ids_are_rejected(tmp_path):
    entry = '[[case]]\nid = "a.b"\ntitle = "t"\nrfc = []\nrequirements = []\nlevel = "MUST"\n'
    (tmp_path / "one.toml").write_text(entry)
    (tmp_path / "two.toml").write_text(entry)
    with pytest.raises(CatalogError, match="also defined"):
        Catalog.load(tmp_path)


def test_catalog_loads_the_lwip_profile_too():
    Profile.load("lwip").check_cases(Catalog.load())


def test_catalog_loads_the_lwipv6_profile_too():
    Profile.load("lwipv6").check_cases(Catalog.load())


def test_profile_must_name_its_stack_and_valid_behaviour(tmp_path):
    (tmp_path / "x.toml").write_text('stack = "y"\n')
    with pytest.raises(CatalogError, match="'stack' must be 'x'"):
        Profile.load("x", tmp_path)
    (tmp_path / "x.toml").write_text('stack = "x"\n[behaviour.k]\nanswer = "ack"\n')
    with pytest.raises(CatalogError, match="needs exactly"):
        Profile.load("x", tmp_path)
    with pytest.raises(CatalogError, match="no profile for stack 'zz'"):
        Profile.load("zz", tmp_path)


@pytest.mark.parametrize("where, body, message", [
    ("catalog", '[[case]]\nid = "x"\n', "missing 'title'"),
    ("profile", 'stack = "linux"\n[values.x]\nvalu = 1\n', "unknown key 'valu'"),
])
def test_malformed_catalog_or_profile_stops_the_run_with_one_line(pytester, monkeypatch, tmp_path, where, body,
                                                                   message):
    import shutil
    import harness.catalog as catalog
    cases = tmp_path / "cases"
    shutil.copytree(catalog.CASES_DIR, cases)
    target = cases / "broken.toml" if where == "catalog" else cases / "profiles" / "linux.toml"
    target.write_text(body)
    monkeypatch.setattr(catalog, "CASES_DIR", cases)
    monkeypatch.setattr(catalog, "PROFILES_DIR", cases / "profiles")
    result = pytester.runpytest_inprocess("-p", "harness.plugin")
    assert result.ret == 4
    errors = [l for l in result.errlines if l.strip()]
    assert len(errors) == 1 and message in errors[0], errors


def test_deviation_selects_tests_families_and_parameter_values(tmp_path):
    (tmp_path / "x.toml").write_text('stack = "x"\n'
                                     '[[deviation]]\ncase = "a.b"\nparams = {completion = "synack"}\n'
                                     'reason = "r"\nrule = "RFC9293/3.10.7.4"\n'
                                     '[[deviation]]\ncase = "a.c"\ntests = ["test_c"]\nfamilies = ["ipv6"]\n'
                                     'reason = "r"\nrule = "RFC9293/3.10.7.4"\n')
    profile = Profile.load("x", tmp_path)
    assert profile.deviation("a.b", "test_b", "ipv4", {"family": "ipv4", "completion": "synack"})
    assert profile.deviation("a.b", "test_b", "ipv4", {"family": "ipv4", "completion": "ack"}) is None
    assert profile.deviation("a.b", "test_b", "ipv4", {"family": "ipv4"}) is None
    assert profile.deviation("a.c", "test_c", "ipv6", {"family": "ipv6"})
    assert profile.deviation("a.c", "test_c", "ipv4", {"family": "ipv4"}) is None
    assert profile.deviation("a.c", "test_d", "ipv6") is None
    (tmp_path / "x.toml").write_text('stack = "x"\n[[deviation]]\ncase = "a.b"\nparams = ["synack"]\n'
                                     'reason = "r"\nrule = "RFC9293/3.10.7.4"\n')
    with pytest.raises(CatalogError, match="params is a table"):
        Profile.load("x", tmp_path)


def test_scaled_value_reads_and_sets_the_tunable_in_its_own_unit(tmp_path):
    from harness.stacks import SYSCTL

    class Tunables:
        name, capabilities = "fake", frozenset({SYSCTL})
        knobs = {"t.timeout_ms": "60000"}

        def sysctl(self, key):
            return self.knobs[key]

        def set_sysctl(self, key, value):
            self.knobs[key] = str(value)

    (tmp_path / "x.toml").write_text('stack = "x"\n[values.timeout]\nsysctl = "t.timeout_ms"\nscale = 0.001\n'
                                     'default = 60\nunit = "s"\n')
    bound = Profile.load("x", tmp_path).bind(Tunables())
    assert bound.value("timeout") == 60
    bound.set("timeout", 1)
    assert bound.stack.knobs["t.timeout_ms"] == "1000" and bound.value("timeout") == 1
    (tmp_path / "x.toml").write_text('stack = "x"\n[values.timeout]\nvalue = 60\nscale = 0.001\n')
    with pytest.raises(CatalogError, match="scale is a positive number"):
        Profile.load("x", tmp_path)


# --- profiles based on another (linux-6.1 on linux) ----------------------------------------------

def test_a_profile_states_what_differs_from_its_base(tmp_path):
    (tmp_path / "a.toml").write_text('stack = "a"\n[values.v]\nvalue = 1\n[values.w]\nvalue = 2\n'
                                     '[[deviation]]\ncase = "x.y"\nrule = "RFC9293/3.10.7.4"\nreason = "base"\n')
    (tmp_path / "b.toml").write_text('stack = "b"\nbase = "a"\n[values.w]\nvalue = 3\n'
                                     '[[deviation]]\ncase = "x.y"\nrule = "RFC9293/3.10.7.4"\nreason = "own"\n')
    b = Profile.load("b", tmp_path)
    assert b.values["v"]["value"] == 1 and b.values["w"]["value"] == 3
    assert b.deviation("x.y", "test_t", "ipv4")["reason"] == "own"
    (tmp_path / "c.toml").write_text('stack = "c"\nbase = "c"\n')
    with pytest.raises(CatalogError, match="'base' names another profile"):
        Profile.load("c", tmp_path)


def test_linux_6_1_profile_loads_over_linux():
    p = Profile.load("linux-6.1")
    p.check_cases(Catalog.load())
    assert "sysctl" not in p.values["rto_min"] and p.values["synack_retries"]["sysctl"] == "net.ipv4.tcp_synack_retries"
    assert p.behaviour["time-wait.reopen"]["answer"] == "reopen-isn-clock"


# --- set-up: Debian packages -----------------------------------------------------------------------

def test_apt_install_checks_what_is_installed_and_says_what_to_run(monkeypatch):
    from harness import setup
    assert setup.package_version("dpkg")                       # installed: a version
    assert setup.package_version("tcpconf-no-such-package") is None
    setup.apt_install(["dpkg"], "nothing")                     # all there: nothing to do, no apt-get
    monkeypatch.setattr(setup.os, "geteuid", lambda: 1000)          # a user without root ...
    monkeypatch.setattr(setup.shutil, "which", lambda name: None if name == "sudo" else "/usr/bin/" + name)
    assert setup.as_root(["apt-get", "update"]) is None                 # ... and without sudo
    with pytest.raises(setup.SetupError) as e:
        setup.apt_install(["dpkg", "tcpconf-no-such-package"], "the test")
    assert str(e.value) == ("the test needs Debian's tcpconf-no-such-package: "
                            "as root (or with sudo), apt-get install tcpconf-no-such-package")


def test_a_user_with_passwordless_sudo_installs_through_it(monkeypatch):
    from harness import setup
    monkeypatch.setattr(setup.os, "geteuid", lambda: 1000)
    monkeypatch.setattr(setup.shutil, "which", lambda name: "/usr/bin/" + name)
    asked = []

    def run(cmd, **kw):
        asked.append(cmd)
        return subprocess.CompletedProcess(cmd, 0, "", "")
    monkeypatch.setattr(setup.subprocess, "run", run)
    assert setup.as_root(["apt-get", "update"]) == ["sudo", "-n", "apt-get", "update"]
    assert asked == [["sudo", "-n", "true"]]


def test_an_agent_of_another_protocol_version_is_refused():
    from harness.agent import App, AppError, VERSION
    app = App(lambda req: {"ok": True, "version": VERSION + 1}, "ipv4", "198.18.0.1")
    with pytest.raises(AppError, match=f"EPROTO: the agent speaks protocol {VERSION + 1}, the suite {VERSION}"):
        app.greet()
    assert App(lambda req: {"ok": True, "version": VERSION}, "ipv4", "198.18.0.1").greet()["version"] == VERSION


def test_tcp_info_reads_the_sut_s_own_rto_and_is_none_where_not_offered():
    from harness.agent import App, AppError, SocketHost
    host = SocketHost()
    try:
        app = App(host.dispatch, "ipv4", "127.0.0.1")
        listener = app.listen(0)                                # no traffic: a listener only
        assert app.tcp_info(listener)["state"] == "LISTEN"
        fresh = host._add(socket.socket())                      # never connected: the initial RTO
        info = app.tcp_info(fresh)
        assert (info["state"], info["rto"], info["rtt"], info["retransmits"]) == ("CLOSED", 1_000_000, 0, 0)
        with pytest.raises(AppError, match="read"):
            app.setsockopt(listener, "TCP_INFO", 1)
    finally:
        host.close_all()
    lwip_like = App(lambda req: {"ok": False, "error": "EOPNOTSUPP", "message": "unknown socket option TCP_INFO"},
                    "ipv4", "198.18.0.1")
    assert lwip_like.tcp_info(1) is None
    broken = App(lambda req: {"ok": False, "error": "EBADF", "message": "no socket with id 1"}, "ipv4", "198.18.0.1")
    with pytest.raises(AppError, match="EBADF"):
        broken.tcp_info(1)


# --- harness.rtt: the RTO estimators the profiles name ---------------------------------------

def test_rto_estimators_follow_their_sources():
    from harness.rtt import linux, lwip_ticks, rfc6298, rto_range
    # RFC 6298 §2.2: the first sample R gives SRTT + 4 R/2 = 3 R, raised to the floor
    assert rfc6298([0.1], 0.2, 120) == pytest.approx(0.3)
    assert rfc6298([0.01], 0.2, 120) == 0.2
    # §2.3 with alpha 1/8, beta 1/4: R = 0.1 then 0.2 -> RTTVAR 0.0625, SRTT 0.1125
    assert rfc6298([0.1, 0.2], 0, 120) == pytest.approx(0.1125 + 4 * 0.0625)
    # Linux: the first sample gives RTT + max(2 RTT, rto_min); a falling RTT shrinks mdev slowly (gain 1/32)
    assert linux([0.0001], 0.2, 120) == pytest.approx(0.2001)
    assert linux([0.3], 0.2, 120) == pytest.approx(0.9)
    assert linux([0.3, 0.1], 0.2, 120) < linux([0.3], 0.2, 120)
    # rising samples: Linux's SRTT + rttvar equals RFC 6298's SRTT + 4 RTTVAR
    rising = [0.001, 0.1, 0.2, 0.3]
    assert linux(rising, 0.2, 120) == pytest.approx(rfc6298(rising, 0.2, 120))
    assert linux([5.0, 5.0], 0.2, 1.0) == 1.0                      # capped at rto_max
    # lwIP: sa = 0, sv = 6 ticks: a sample of 0 ticks gives 5 ticks, of 8 ticks 14 (measured on the wire)
    assert lwip_ticks([0]) == 2.5 and lwip_ticks([8]) == 7.0 and lwip_ticks([]) == 3.0
    lo, hi = rto_range("lwip-ticks", [0.001, 4.1], 1.5, 384)        # the handshake is no sample
    assert lo <= 7.0 <= hi
    assert rto_range("constant", [0.001, 0.4, 3.0], 2.0, 2.0) == (2.0, 2.0)   # passt: ACK_TIMEOUT, no estimator
    # 4.4BSD (libslirp): a first sample within one tick (t_rtt = 1) gives srtt 1, rttvar 2 ticks: 3 ticks,
    # slirp's 1.5 s after a fast handshake; a first sample of 2 ticks gives 6; capped at TCPTV_REXMTMAX
    from harness.rtt import bsd_ticks
    assert bsd_ticks([1]) == 1.5 and bsd_ticks([2]) == 3.0 and bsd_ticks([40]) == 12.0
    assert rto_range("bsd-ticks", [0.001], 1.5, 12) == (1.5, 3.0)
    with pytest.raises(ValueError):
        rto_range("vegas", [0.1], 0.2, 120)


def _kept_link():
    """An EthernetLink whose frames are kept rather than sent (no device)."""
    from harness.l2 import EthernetLink
    from harness.trace import Trace

    class Kept(EthernetLink):
        def _send_frame(self, frame):
            self.sent.append(frame)

    link = Kept(Trace(), "test0", "02:00:00:00:00:02", {"ipv6": "2001:2::2"}, "2001:2::1")
    link.sent = []
    return link


@pytest.mark.parametrize("dst, solicited, answered", [
    ("33:33:00:00:00:01", 0, False),         # unsolicited, to all nodes: proves nothing about our frames
    ("02:00:00:00:00:02", 0, True),          # to us alone, S unset (lwIPv6's answer)
    ("33:33:00:00:00:01", 1, True),          # Solicited set
])
def test_a_neighbour_advertisement_answers_our_solicitation_only_if_it_says_so(dst, solicited, answered):
    from scapy.layers.inet6 import ICMPv6ND_NA, ICMPv6NDOptDstLLAddr
    from scapy.layers.l2 import Ether
    link = _kept_link()
    na = (Ether(dst=dst, src="02:02:03:04:05:06") / IPv6(src="2001:2::1", dst="ff02::1", hlim=255) /
          ICMPv6ND_NA(tgt="2001:2::1", S=solicited, O=0) / ICMPv6NDOptDstLLAddr(lladdr="02:02:03:04:05:06"))
    assert link._upkeep(bytes(na)) is None
    assert (link.answered, link.sut_mac) == (answered, "02:02:03:04:05:06")


def test_a_doubled_timer_carries_its_tick_rounding_doubled():
    t = Tolerance(0.025, 0.125, granularity=0.01)
    assert t.doubled(0) == t
    assert t.doubled(2).allowed(0.8) == pytest.approx(0.1 + 0.04)     # 84 jiffies of 10 ms for 4 x 0.201 s
    assert not t.within(0.804, 0.920) and t.doubled(2).within(0.804, 0.920)


@pytest.mark.parametrize("name", ["lwip", "lwipv6", "slirp"])
def test_an_agents_sources_name_every_header_of_the_tree_it_includes(name):
    """A header an agent includes from harness/stacks (agent_proto.h, lwip_ops.h) is one of its stack's
    sources, so that editing it makes the built agent stale: one line saying what to run, not an old agent."""
    import re
    from harness.stacks import stack_class
    sources = stack_class(name).sources
    todo, seen = [sources[0]], set()
    while todo:
        path = todo.pop()
        seen.add(path)
        for included in re.findall(r'^#include "([^"]+)"', path.read_text(), re.M):
            local = path.parent / included
            if local.exists() and local not in seen:
                todo.append(local)
    assert seen <= set(sources), f"{name}: {sorted(p.name for p in seen - set(sources))} missing from its sources"
