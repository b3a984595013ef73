"""Link faults for the negative controls.

Each fault breaks exactly one behaviour of the stack under test as the
tester sees it: a segment the stack sent is dropped, one of its fields or
options is changed, or its receive timestamp is shifted; or the path
between the tester and the stack is made longer (`Delay`: every segment,
or one segment in one direction, held on the link). A conformance case run
with the fault must fail, naming its requirement; a case that cannot fail
is a defect (design principle 6).
"""
from __future__ import annotations

from dataclasses import dataclass

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.inet6 import IPv6

from harness.plugin import STATE
from harness.segment import Segment, flags_of


def _rebuilt(pkt) -> bytes:
    """The packet with its lengths and checksums computed again by Scapy."""
    del pkt[TCP].chksum
    del pkt[TCP].dataofs
    if IP in pkt:
        del pkt[IP].len
        del pkt[IP].chksum
    else:
        del pkt[IPv6].plen
    return bytes(pkt)


@dataclass
class Fault:
    """Acts on the `nth` segment from the SUT whose SYN/ACK/FIN/RST bits are
    exactly `flags`: "drop" it, "mute" it (drop it and every later one of
    those flags: the SUT falls silent), add `offset` to a numeric TCP field
    named by the action ("seq", "ack", "window", "urgptr"), "delay" its
    timestamp by `offset` seconds, "strip" its TCP option named `option`
    (Scapy's name: "WScale", "Timestamp"...) or "set" that option to `value`
    (added if the segment lacks it), set its TCP "flags" to `value` (Scapy
    letters), "trim" its payload to `offset` octets, set the IP header field
    `option` ("tos", "ttl", "id"; IPv6 "tc", "hlim") to `value` ("ip"), add
    `offset` to its "chksum" (the segment otherwise intact: a wrong checksum
    as a real device would deliver it), or "corrupt" its TCP checksum (one
    bit flipped)."""

    flags: str
    nth: int
    action: str
    offset: float = 0
    seen: int = 0
    option: str = ""
    value: object = None

    def __call__(self, raw: bytes, t: float):
        seg = Segment.parse(raw, t, "sut")
        if seg is None or (seg.flags & frozenset("SAFR")) != flags_of(self.flags):
            return raw, t
        self.seen += 1
        if self.action == "mute" and self.seen >= self.nth:
            return None
        if self.seen != self.nth:
            return raw, t
        if self.action == "drop":
            return None
        if self.action == "delay":
            return raw, t + self.offset
        if self.action == "corrupt":
            out = bytearray(raw)
            out[len(raw) - len(bytes(seg.pkt[TCP])) + 16] ^= 0x01
            return bytes(out), t
        if self.action == "chksum":
            pkt = seg.pkt.copy()
            pkt[TCP].chksum = (seg.tcp.chksum + int(self.offset)) % (1 << 16)
            return bytes(pkt), t
        pkt = seg.pkt.copy()
        tcp = pkt[TCP]
        if self.action == "flags":
            tcp.flags = self.value
        elif self.action == "trim":
            tcp.remove_payload()
            tcp.add_payload(seg.payload[:int(self.offset)])
        elif self.action == "ip":
            setattr(pkt[IP] if IP in pkt else pkt[IPv6], self.option, self.value)
        elif self.action in ("strip", "set"):
            others = [(n, v) for n, v in tcp.options if n != self.option]
            tcp.options = others + ([(self.option, self.value)] if self.action == "set" else [])
        else:
            setattr(tcp, self.action, (getattr(tcp, self.action) + int(self.offset)) % (1 << 32))
        return _rebuilt(pkt), t


@dataclass
class PredictableIsn:
    """Rewrites the SEG.SEQ of every SYN-ACK the SUT sends to an ISN anyone
    can predict: a counter (`start`, `start + step`, ...) or, with `tick`
    (seconds), a bare clock, start + (receive time / tick). Only for cases
    that close each connection right after its SYN-ACK."""

    start: int = 1_000_000
    step: int = 1
    tick: float = 0.0
    seen: int = 0

    def __call__(self, raw: bytes, t: float):
        seg = Segment.parse(raw, t, "sut")
        if seg is None or (seg.flags & frozenset("SAFR")) != flags_of("SA"):
            return raw, t
        pkt = seg.pkt.copy()
        isn = self.start + (round(t / self.tick) if self.tick else self.step * self.seen)
        pkt[TCP].seq = isn % (1 << 32)
        self.seen += 1
        return _rebuilt(pkt), t


@dataclass
class Delay:
    """Holds segments on the link `seconds` longer (Link.delays): every
    segment both ways (a path that long each way), or only the `nth` segment
    sent by `sent_by` ("peer": ours, on its way to the SUT; "sut": the
    SUT's, on its way to us) whose SYN/ACK/FIN/RST bits are exactly `flags`."""

    seconds: float
    sent_by: str | None = None
    flags: str = ""
    nth: int = 0
    seen: int = 0
    on_path = True
    action = "hold"

    def __call__(self, raw: bytes, sent_by: str) -> float:
        if self.sent_by is None:
            return self.seconds
        seg = Segment.parse(raw, 0.0, sent_by)
        if sent_by != self.sent_by or seg is None or (seg.flags & frozenset("SAFR")) != flags_of(self.flags):
            return 0.0
        self.seen += 1
        return self.seconds if self.seen == self.nth else 0.0


class FaultPlugin:
    """Installs a fault (or a list of them, applied in turn) on the link of
    every stack a test starts: a Delay among the link's delays, anything
    else among its filters."""

    def __init__(self, fault):
        self.fault = fault

    @pytest.fixture(autouse=True)
    def _tcpconf_fault(self, request):
        if "stack" in request.fixturenames:
            link = request.getfixturevalue("stack").link
            for fault in self.fault if isinstance(self.fault, list) else [self.fault]:
                (link.delays if getattr(fault, "on_path", False) else link.filters).append(fault)
        yield


class Patch:
    """Changes a name in a conformance module (the test file's basename,
    e.g. "test_mss") or in a harness module ("harness.icmp") for the run: a
    constant the case judges by, or a function that builds what the case
    sends, as a stack or link that breaks the case's premise would."""

    def __init__(self, module: str, name: str, value):
        self.module, self.name, self.value = module, name, value

    @pytest.fixture(autouse=True)
    def _tcpconf_patch(self, request, monkeypatch):
        import sys
        for mod in list(sys.modules.values()):
            path = getattr(mod, "__file__", "") or ""
            if mod.__name__ == self.module or path.endswith(f"conformance/{self.module}.py"):
                monkeypatch.setattr(mod, self.name, self.value)
        yield


class BehaviourPatch:
    """Documents one behaviour of the stack wrongly (answer and follows):
    the case then expects the other answer and must fail."""

    def __init__(self, key: str, answer: str, follows: bool = True):
        self.key, self.answer, self.follows = key, answer, follows

    @pytest.fixture(autouse=True)
    def _tcpconf_behaviour_patch(self, request):
        if "profile" not in request.fixturenames:
            yield
            return
        behaviour = request.getfixturevalue("profile").profile.behaviour
        saved = behaviour.get(self.key)
        behaviour[self.key] = dict(saved, answer=self.answer, follows=self.follows)
        yield
        behaviour[self.key] = saved


class ProfilePatch:
    """Documents the stack wrongly: the profile's values given here replace
    what the profile says (and what it would read from the SUT) in every
    test, as a profile that forgot a rule would."""

    def __init__(self, **values):
        self.values = values

    @pytest.fixture(autouse=True)
    def _tcpconf_profile_patch(self, request):
        if "profile" not in request.fixturenames:
            yield
            return
        values = request.getfixturevalue("profile").profile.values
        saved = dict(values)
        values.update({k: {"value": v, "doc": f"patched by a negative control: {v}"} for k, v in self.values.items()})
        yield
        values.clear()
        values.update(saved)


class ProfileRules:
    """Documents the stack's departures from the state x event table
    otherwise (its profile's [[rule]] entries): `added` in front of them,
    those of the row `without` left out, for the tests of a run."""

    def __init__(self, added=(), without: str | None = None):
        self.added, self.without = tuple(added), without

    @pytest.fixture(autouse=True)
    def _tcpconf_profile_rules(self, request, monkeypatch):
        profile = request.config.stash[STATE]["profile"]
        monkeypatch.setattr(profile, "rules", (*self.added, *(o for o in profile.rules if o.row != self.without)))
        yield


# --- what every negative control asserts --------------------------------------------------------

def node(test: str) -> str:
    """The node id of a conformance test, `file::name` (IPv4 unless it names its parameters)."""
    return "conformance/" + test + ("" if test.endswith("]") else "[ipv4]")


def cell(test_id: str) -> str:
    """The node id of a cell of the state x event matrix, IPv4."""
    return node(f"test_matrix.py::test_cell[{test_id}-ipv4]")


def assert_control_fails(result, requirement: str, fault=None) -> None:
    """The case failed, naming `requirement`, expected against seen, with the trace both ways;
    on timing when the fault delayed a segment."""
    __tracebackhide__ = True
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert requirement in out, f"the failure does not name {requirement}"
    assert "expected:" in out and "seen:" in out, "the failure does not show expected against seen"
    assert "tcpdump trace" in out and "tcpdump -S" in out, "the failure does not show the trace both ways"
    if getattr(fault, "action", None) == "delay":
        assert "timing:" in out


def assert_case_passes(result) -> None:
    """The control of the control: the case, on the same link unbroken, passes (or is a documented xfail)."""
    __tracebackhide__ = True
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed", 0) == 0 and outcomes.get("error", 0) == 0, result.stdout.str()
    assert outcomes.get("passed", 0) + outcomes.get("xfailed", 0) == 1
