"""Links: IP packets in and out of the stack under test, each with a timestamp.

Rules of this file:
- A Link moves raw IP packets; it knows nothing of TCP. Every packet it sends
  or receives is appended to the Trace with its timestamp, and nothing else.
- Timestamps are the kernel's where it gives them: a TunLink keeps an
  AF_PACKET socket with SO_TIMESTAMPNS on its device (the stamps tcpdump
  shows: when the SUT's kernel handed the packet to the device, or took ours
  from it), a PacketLink asks its own socket for them. So a timer is judged
  on when the stack sent, not on when the tester got to read, and a busy
  machine does not move the stamps. Where the kernel gives none, the stamp
  is time.monotonic() right after the read or write. Stamps are on the
  monotonic clock (`python -m harness.bench` measures their error).
- `filters` are applied to every received packet before it is traced: each
  takes (raw, t) and returns (raw, t) or None (dropped). The project's own
  negative controls use them to break exactly one behaviour of a stack; a
  packet a filter drops is recorded as lost (`Trace.drop`), not traced.
- `delays` put the tester a path away from the SUT: each takes (raw,
  sent_by) and returns the seconds that packet spends on the path (they add
  up). The Trace records the tester's end of the path: a packet of ours when
  send() is called (the SUT gets it that much later, written by a thread of
  the link, so it arrives whether or not anyone polls), one of the SUT's
  that much after the stamp of its arrival on the device (it is held until
  then, and no Peer sees it earlier). `--link-delay-ms` adds one for every
  packet; negative controls delay single segments.

Kinds of link: TunLink (an L3 TUN device inside the SUT's namespace whose
descriptor the tester holds: nothing of the tester's own kernel can answer or
drop anything) and, for stacks that speak Ethernet, the EthernetLinks of
`harness.l2` (PacketLink on an interface, StreamLink over a stream socket).
"""
from __future__ import annotations

import fcntl
import heapq
import itertools
import os
import select
import socket
import struct
import threading
import time
from collections import deque

from .trace import Trace

SO_TIMESTAMPNS = 35
ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
MAX_PACKET = 65536


class Link:
    """Base: a readable/writable descriptor carrying IP packets."""

    def __init__(self, trace: Trace):
        self.trace = trace
        self.filters: list = []
        self.delays: list = []
        self._held: list = []                     # (due, n, raw): the SUT's packets still on the path
        self._order = itertools.count()
        self._wire: Wire | None = None            # ours still on the path

    # subclasses provide these three
    def fileno(self) -> int:
        raise NotImplementedError

    def _write(self, raw: bytes) -> None:
        raise NotImplementedError

    def _read_ready(self) -> list[tuple[bytes, float]]:
        """Every packet readable now, each with its receive timestamp."""
        raise NotImplementedError

    def _stamp_sent(self, raw: bytes, t: float) -> float:
        """The kernel's stamp of a packet just written, where there is one."""
        return t

    def path_time(self, raw: bytes, sent_by: str) -> float:
        """The seconds this packet spends on the path the `delays` make
        ("peer": ours, on its way to the SUT; "sut": the SUT's, to us)."""
        return sum(d(raw, sent_by) for d in self.delays) if self.delays else 0.0

    def send(self, raw: bytes):
        delay = self.path_time(raw, "peer")
        if delay > 0:
            t = time.monotonic()
            if self._wire is None:
                self._wire = Wire(self._write)
            self._wire.put(t + delay, raw)
            return self.trace.add(raw, t, "peer")
        self._write(raw)
        t = self._stamp_sent(raw, time.monotonic())
        # A reply the stack produced while processing the write is already
        # readable: stamp it now, not after the sent packet has been parsed.
        replies = self._read_ready()
        entry = self.trace.add(raw, t, "peer")
        for r, rt in replies:
            self._arrive(r, rt)
        return entry

    def _arrive(self, raw: bytes, t: float) -> None:
        delay = self.path_time(raw, "sut")
        if delay > 0:
            heapq.heappush(self._held, (t + delay, next(self._order), raw))
        else:
            self._deliver(raw, t)

    def _release(self) -> bool:
        """Deliver the held packets whose time on the path is over."""
        now, released = time.monotonic(), False
        while self._held and self._held[0][0] <= now:
            due, _, raw = heapq.heappop(self._held)
            self._deliver(raw, due)
            released = True
        return released

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
        if self._release():
            return True
        p = select.poll()
        p.register(self.fileno(), select.POLLIN)
        wake = min(deadline, self._held[0][0]) if self._held else deadline
        left = wake - time.monotonic()
        if not p.poll(max(0, int(left * 1000 + 0.999))):
            return self._release() or time.monotonic() < deadline
        frames = self._read_ready()
        for raw, t in frames:
            self._arrive(raw, t)
        return self._release() or bool(frames) or time.monotonic() < deadline

    def close(self) -> None:
        if self._wire is not None:
            self._wire.close()


class Wire:
    """The tester's packets on their way to the SUT: each written by this
    thread when its time on the path is over (in the order they are due)."""

    def __init__(self, write):
        self.write = write
        self.queue: list = []
        self.order = itertools.count()
        self.closed = False
        self.cv = threading.Condition()
        self.thread = threading.Thread(target=self._run, name="tcpconf-path", daemon=True)
        self.thread.start()

    def put(self, due: float, raw: bytes) -> None:
        with self.cv:
            heapq.heappush(self.queue, (due, next(self.order), raw))
            self.cv.notify()

    def _run(self) -> None:
        with self.cv:
            while not self.closed:
                now = time.monotonic()
                if not self.queue or self.queue[0][0] > now:
                    self.cv.wait(self.queue[0][0] - now if self.queue else None)
                    continue
                _, _, raw = heapq.heappop(self.queue)
                try:
                    self.write(raw)
                except OSError:
                    pass                            # lost on the path, as on a real one

    def close(self) -> None:
        """Stop; what is still on the path is lost. Returns once no write can
        happen any more (the descriptor may then be closed)."""
        with self.cv:
            self.closed = True
            self.cv.notify()
        self.thread.join()


_stamps_on = None


def kernel_stamps_on() -> None:
    """Keep the kernel's receive timestamping on in this process. It is a
    global switch the kernel flips in deferred work; until it has, captured
    packets are stamped when read, so it is switched on once, early."""
    global _stamps_on
    if _stamps_on is None:
        _stamps_on = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        _stamps_on.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)


def realtime_offset() -> float:
    """CLOCK_REALTIME - CLOCK_MONOTONIC, to put kernel stamps on the monotonic clock."""
    return min(time.time() - time.monotonic() for _ in range(3))


def kernel_stamp(ancillary, offset: float) -> float | None:
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
            sec, nsec = struct.unpack("qq", data[:16])
            return sec + nsec / 1e9 - offset
    return None


class DeviceStamps:
    """Kernel timestamps of the packets crossing one device, both ways: an
    AF_PACKET socket on it (created in the device's namespace)."""

    def __init__(self, ifname: str):
        kernel_stamps_on()
        # Protocol 0 at creation, ETH_P_ALL at bind: the hook is registered
        # once, not registered and then moved (an RCU grace period, ~6 ms).
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, 0)
        self.sock.bind((ifname, ETH_P_ALL))            # Python applies htons here
        self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self.sock.setblocking(False)
        self.offset = realtime_offset()
        self.seen = {True: deque(maxlen=4096), False: deque(maxlen=4096)}   # by "sent by the device"

    def _drain(self) -> None:
        while True:
            try:
                data, anc, _, addr = self.sock.recvmsg(MAX_PACKET, 64)
            except BlockingIOError:
                return
            t = kernel_stamp(anc, self.offset)
            if t is not None:
                self.seen[addr[2] == PACKET_OUTGOING].append((data, t))

    def stamp(self, raw: bytes, outgoing: bool, default: float) -> float:
        """The kernel's stamp of `raw` (the device sent it, or took it in),
        else `default`."""
        self._drain()
        q = self.seen[outgoing]
        for i, (data, t) in enumerate(q):
            if data == raw:
                for _ in range(i + 1):
                    q.popleft()
                return t
        return default

    def close(self) -> None:
        from .netns import closer
        closer.submit(self.sock.close)             # packet_release waits for an RCU grace period


class TunLink(Link):
    """The tester's end of a TUN device: writes are packets the SUT's kernel
    receives on the device, reads are packets it routes out of it."""

    def __init__(self, trace: Trace, fd: int, stamps: DeviceStamps | None = None):
        super().__init__(trace)
        self.fd = fd
        self.stamps = stamps

    @classmethod
    def open(cls, trace: Trace, name: str = "tun0") -> "TunLink":
        """Create a TUN device in the current network namespace; call
        `stamp_with_kernel()` once the device is up."""
        fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC)
        try:
            fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
        except OSError:
            os.close(fd)
            raise
        os.set_blocking(fd, False)
        link = cls(trace, fd)
        link.name = name
        return link

    def stamp_with_kernel(self) -> None:
        """From now on, stamp packets with the kernel's timestamps (the device
        must be up; call in its namespace)."""
        self.stamps = DeviceStamps(self.name)

    def _stamp_sent(self, raw: bytes, t: float) -> float:
        return self.stamps.stamp(raw, False, t) if self.stamps else t

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
                break
            out.append((raw, time.monotonic()))
        if self.stamps and out:
            out = [(raw, self.stamps.stamp(raw, True, t)) for raw, t in out]
        return out

    def close(self) -> None:
        super().close()
        if self.stamps is not None:
            self.stamps.close()
            self.stamps = None
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            from .netns import closer
            closer.submit(os.close, fd)
