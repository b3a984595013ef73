"""Link faults for the negative controls.

Each fault breaks exactly one behaviour of the stack under test as the
tester sees it: a segment the stack sent is dropped, one of its fields is
changed, or its receive timestamp is shifted. A conformance case run with
the fault must fail, naming its requirement; a case that cannot fail is a
defect (design principle 6).
"""
from __future__ import annotations

from dataclasses import dataclass

import pytest
from scapy.layers.inet import TCP

from harness.segment import Segment, flags_of


@dataclass
class Fault:
    """Acts on the `nth` segment from the SUT whose SYN/ACK/FIN/RST bits are
    exactly `flags`: "drop" it, add `offset` to its "seq" or "ack" field, or
    "delay" its timestamp by `offset` seconds."""

    flags: str
    nth: int
    action: str
    offset: float = 0
    seen: int = 0

    def __call__(self, raw: bytes, t: float):
        seg = Segment.parse(raw, t, "sut")
        if seg is None or (seg.flags & frozenset("SAFR")) != flags_of(self.flags):
            return raw, t
        self.seen += 1
        if self.seen != self.nth:
            return raw, t
        if self.action == "drop":
            return None
        if self.action == "delay":
            return raw, t + self.offset
        pkt = seg.pkt.copy()
        setattr(pkt[TCP], self.action, (getattr(pkt[TCP], self.action) + int(self.offset)) % (1 << 32))
        del pkt[TCP].chksum
        return bytes(pkt), t


class FaultPlugin:
    """Installs a Fault on the link of every stack a test starts."""

    def __init__(self, fault: Fault):
        self.fault = fault

    @pytest.fixture(autouse=True)
    def _tcpconf_fault(self, request):
        if "stack" in request.fixturenames:
            request.getfixturevalue("stack").link.filters.append(self.fault)
        yield
