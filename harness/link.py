"""Links: IP packets in and out of the stack under test, each with a timestamp.

Rules of this file:
- A Link moves raw IP packets; it knows nothing of TCP. Every packet it sends
  or receives is appended to the Trace with its timestamp, and nothing else.
- Timestamps are taken right after the packet leaves the write call or
  returns from the read call (time.monotonic). Reads happen when a Peer
  waits (expect / expect_none), so a case that waits is blocked in poll(2)
  when the stack sends, and right after every write, for the replies the
  stack produced synchronously; the stamp is within tens of microseconds
  of the kernel's (`python -m harness.bench` measures it).
- `filters` are applied to every received packet before it is traced: each
  takes (raw, t) and returns (raw, t) or None (dropped). The project's own
  negative controls use them to break exactly one behaviour of a stack; a
  packet a filter drops is recorded as lost (`Trace.drop`), not traced.

Kinds of link: TunLink (an L3 TUN device inside the SUT's namespace whose
descriptor the tester holds: nothing of the tester's own kernel can answer or
drop anything) and, for stacks that speak Ethernet, PacketLink in
`harness.l2`.
"""
from __future__ import annotations

import fcntl
import os
import select
import struct
import time

from .trace import Trace

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
MAX_PACKET = 65536


class Link:
    """Base: a readable/writable descriptor carrying IP packets."""

    def __init__(self, trace: Trace):
        self.trace = trace
        self.filters: list = []

    # subclasses provide these three
    def fileno(self) -> int:
        raise NotImplementedError

    def _write(self, raw: bytes) -> None:
        raise NotImplementedError

    def _read_ready(self) -> list[tuple[bytes, float]]:
        """Every packet readable now, each with its receive timestamp."""
        raise NotImplementedError

    def send(self, raw: bytes):
        self._write(raw)
        t = time.monotonic()
        # A reply the stack produced while processing the write is already
        # readable: stamp it now, not after the sent packet has been parsed.
        replies = self._read_ready()
        entry = self.trace.add(raw, t, "peer")
        for r, rt in replies:
            self._deliver(r, rt)
        return entry

    def _deliver(self, raw: bytes, t: float) -> None:
        for f in self.filters:
            r = f(raw, t)
            if r is None:
                self.trace.drop(raw, t, "sut")
                return
            raw, t = r
        self.trace.add(raw, t, "sut")

    def poll(self, deadline: float) -> bool:
        """Wait until something arrives or `deadline` (monotonic) passes; trace
        every packet that is readable. True if a packet was traced, or if
        anything else was read before the deadline (a frame of link upkeep,
        such as an ARP reply: whoever waits for it must get to look)."""
        p = select.poll()
        p.register(self.fileno(), select.POLLIN)
        left = deadline - time.monotonic()
        if not p.poll(max(0, int(left * 1000 + 0.999))):
            return False
        frames = self._read_ready()
        for raw, t in frames:
            self._deliver(raw, t)
        return bool(frames) or time.monotonic() < deadline

    def close(self) -> None:
        pass


class TunLink(Link):
    """The tester's end of a TUN device: writes are packets the SUT's kernel
    receives on the device, reads are packets it routes out of it."""

    def __init__(self, trace: Trace, fd: int):
        super().__init__(trace)
        self.fd = fd

    @classmethod
    def open(cls, trace: Trace, name: str = "tun0") -> "TunLink":
        """Create a TUN device in the current network namespace."""
        fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC)
        try:
            fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
        except OSError:
            os.close(fd)
            raise
        os.set_blocking(fd, False)
        return cls(trace, fd)

    def fileno(self) -> int:
        return self.fd

    def _write(self, raw: bytes) -> None:
        os.write(self.fd, raw)

    def _read_ready(self):
        out = []
        while True:
            try:
                raw = os.read(self.fd, MAX_PACKET)
            except BlockingIOError:
                return out
            out.append((raw, time.monotonic()))

    def close(self) -> None:
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            from .netns import closer
            closer.submit(os.close, fd)
