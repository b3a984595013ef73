"""Ethernet links: the tester on an Ethernet link, for stacks that speak Ethernet.

Rules of this file:
- The tester owns an address on the link that no kernel holds: it answers
  ARP (IPv4) and neighbour solicitations (IPv6) for it itself, with its own
  MAC, and resolves the SUT's MAC before the first segment. Nothing of the
  tester's kernel can answer or drop anything for that address.
- Only IP packets enter the Trace (raw, Ethernet header and padding
  removed, like a TunLink's); ARP and neighbour discovery are link
  upkeep and stay out of it. Frames the tester sent are never read back.
- EthernetLink keeps that upkeep; a subclass only carries frames:
  PacketLink, an AF_PACKET socket on one interface (the kernel side of a
  TAP whose other side a user-space stack holds, or any interface, a veth
  end or a NIC, towards a remote SUT; it asks for promiscuous reception so
  that frames to the tester's MAC arrive on real NICs too), with the
  kernel's receive timestamps (SO_TIMESTAMPNS) as on a TunLink; and
  StreamLink, frames over a stream socket, each behind its length in four
  octets (network order), as QEMU's `-netdev stream` carries them to a
  user-mode network such as passt, stamped when read (a stream socket has
  no kernel timestamps).
- Checksum offload: a segment whose sender left the TCP checksum to the
  hardware (a veth or TAP with `tx` offload on: CHECKSUM_PARTIAL) reaches an
  AF_PACKET socket unfinished, flagged TP_STATUS_CSUMNOTREADY in its
  PACKET_AUXDATA. A PacketLink finishes such a checksum exactly as the
  hardware would (the ones' complement sum over the segment, whose checksum
  field holds the sender's pseudo-header sum) and counts it in `completed`;
  a segment without the flag is traced as it came, so a wrong checksum from
  a real device stays wrong (RFC 9293 MUST-2). `offloads_off` switches the
  offloads off on an interface of ours.
"""
from __future__ import annotations

import fcntl
import select
import socket
import struct
import threading
import time

from scapy.layers.inet6 import (ICMPv6ND_NA, ICMPv6ND_NS, ICMPv6NDOptDstLLAddr, ICMPv6NDOptSrcLLAddr, IPv6,
                                in6_getnsma, in6_getnsmac)
from scapy.layers.inet import IP
from scapy.layers.l2 import ARP, Ether
from scapy.pton_ntop import inet_pton
from scapy.utils import checksum

from .link import SO_TIMESTAMPNS, Link, kernel_stamp, kernel_stamps_on, realtime_offset

ETH_P_ALL = 0x0003
ETH_P_IP, ETH_P_ARP, ETH_P_IPV6 = 0x0800, 0x0806, 0x86DD
PACKET_OUTGOING = 4
SOL_PACKET, PACKET_ADD_MEMBERSHIP, PACKET_MR_PROMISC, PACKET_AUXDATA = 263, 1, 1, 8
TP_STATUS_CSUMNOTREADY = 1 << 3
MLD = (130, 131, 132, 143)          # ICMPv6 multicast listener query/report/done, MLDv2 report
OFFLOADS = ("rx-gro", "tx-generic-segmentation", "tx-tcp-segmentation", "tx-tcp6-segmentation",
            "tx-checksum-ip-generic", "tx-checksum-ipv4", "tx-checksum-ipv6")
FRAME_LENGTH = struct.Struct("!I")       # a StreamLink frame's length prefix
SIOCOUTQ = 0x5411                        # TIOCOUTQ: unread octets of a stream socket's peer
DRAINED_WITHIN = 0.5                     # seconds a StreamLink waits for the SUT to read a frame


def offloads_off(iface: str) -> None:
    """Switch checksum and segmentation offloads off on `iface` (in the
    calling thread's namespace), so that it sends every segment finished
    and no larger than the MTU, as a wire carries them. Features a driver
    lacks or does not let us change are left as they are."""
    from pyroute2 import Ethtool
    try:
        with Ethtool() as et:
            feats = et.get_features(iface)
            for name in OFFLOADS:
                if name in feats.features and feats.features[name].enable:
                    feats.features[name].enable = False
            et.set_features(iface, feats)
    except Exception:
        pass


def finish_checksum(ip: bytes) -> bytes:
    """The IP packet `ip` with its TCP checksum finished as offload hardware
    finishes it: the checksum field holds the pseudo-header sum, the
    hardware puts the complement of the sum over the whole segment there.
    Anything but TCP directly after the IP header is returned unchanged."""
    if ip[0] >> 4 == 4 and ip[9] == 6:
        start = (ip[0] & 0x0F) * 4
    elif ip[0] >> 4 == 6 and len(ip) >= 40 and ip[6] == 6:
        start = 40
    else:
        return ip
    if len(ip) < start + 20:
        return ip
    at = start + 16
    return ip[:at] + struct.pack("!H", checksum(ip[start:])) + ip[at + 2:]


def csum_not_ready(ancillary) -> bool:
    """PACKET_AUXDATA says the sender left the checksum to the hardware."""
    for level, kind, data in ancillary:
        if level == SOL_PACKET and kind == PACKET_AUXDATA and len(data) >= 4:
            return bool(struct.unpack("I", data[:4])[0] & TP_STATUS_CSUMNOTREADY)
    return False


class LinkError(RuntimeError):
    pass


class EthernetLink(Link):
    """The tester's end of an Ethernet link; a subclass carries the frames
    (`_send_frame`, `_recv_frames`, `fileno`)."""

    def __init__(self, trace, name: str, mac: str, addresses: dict, sut_addr: str):
        """`name`: the link, for messages; `addresses`: the tester's own,
        {"ipv4": a, "ipv6": b} (either may be absent); `sut_addr`: the
        address whose MAC to resolve."""
        super().__init__(trace)
        self.ifname, self.mac = name, mac
        self.addresses = addresses
        self.sut_addr = sut_addr
        # Other IPv4 addresses the tester answers ARP for, as routers on the
        # link would (a case's source-route hops).
        self.neighbours: set = set()
        self.sut_mac: str | None = None
        self.answered = False       # the SUT answered a solicitation of ours (see resolve)
        # The SUT's MAC where the stack fixes it: neighbour solicitations then
        # go to it and its address (unicast, RFC 4861 §7.2.2), for stacks that
        # do not listen on the solicited-node multicast group (lwIP without MLD).
        self.sut_mac_hint: str | None = None

    def _send_frame(self, frame: bytes) -> None:
        raise NotImplementedError

    def _recv_frames(self) -> list[tuple[bytes, float]]:
        """Every frame readable now that the tester did not send, with its
        receive timestamp."""
        raise NotImplementedError

    # --- frames --------------------------------------------------------------------------
    def _frame(self, raw_ip: bytes, dst_mac: str) -> bytes:
        ethertype = ETH_P_IP if raw_ip[0] >> 4 == 4 else ETH_P_IPV6
        return bytes(Ether(dst=dst_mac, src=self.mac, type=ethertype)) + raw_ip

    def _write(self, raw: bytes) -> None:
        if self.sut_mac is None:
            self.resolve()
        self._send_frame(self._frame(raw, self.sut_mac))

    def _read_ready(self):
        out = []
        for frame, t in self._recv_frames():
            ip = self._upkeep(frame)
            if ip is not None:
                out.append((ip, t))
        return out
    def _upkeep(self, frame: bytes) -> bytes | None:
        """Answer ARP/ND for our address, learn the SUT's MAC; return the IP
        packet of an IP frame that is neither, else None."""
        eth = Ether(frame)
        if eth.type == ETH_P_ARP and ARP in eth:
            arp = eth[ARP]
            if arp.op == 1 and (arp.pdst == self.addresses.get("ipv4") or arp.pdst in self.neighbours):
                self._send_frame(bytes(Ether(dst=eth.src, src=self.mac) /
                                     ARP(op=2, hwsrc=self.mac, psrc=arp.pdst, hwdst=arp.hwsrc, pdst=arp.psrc)))
            if arp.psrc == self.sut_addr:
                self.sut_mac = arp.hwsrc
                self.answered = self.answered or (arp.op == 2 and arp.pdst == self.addresses.get("ipv4"))
            return None
        if eth.type == ETH_P_IPV6 and IPv6 in eth:
            if ICMPv6ND_NS in eth and eth[ICMPv6ND_NS].tgt == self.addresses.get("ipv6"):
                ns = eth[IPv6]
                src = ns.src if ns.src != "::" else "ff02::1"
                self._send_frame(bytes(Ether(dst=eth.src, src=self.mac) /
                                     IPv6(src=self.addresses["ipv6"], dst=src, hlim=255) /
                                     ICMPv6ND_NA(tgt=self.addresses["ipv6"], R=0, S=int(ns.src != "::"), O=1) /
                                     ICMPv6NDOptDstLLAddr(lladdr=self.mac)))
                if ns.src == self.sut_addr:
                    self.sut_mac = eth.src
                return None
            if ICMPv6ND_NA in eth:
                if eth[ICMPv6ND_NA].tgt == self.sut_addr:
                    self.sut_mac = eth.src
                    # an answer to our solicitation: Solicited set, or sent to us alone
                    # (lwIPv6 leaves S unset but answers to the soliciting MAC)
                    self.answered = self.answered or bool(eth[ICMPv6ND_NA].S) or eth.dst == self.mac
                return None
            if ICMPv6ND_NS in eth or _is_mld(frame):
                return None
            return frame[14:]
        if eth.type == ETH_P_IP:
            if self.sut_mac is None and IP in eth and eth[IP].src == self.sut_addr:
                self.sut_mac = eth.src
            return frame[14:]
        return None

    def resolve(self, within: float = 3.0) -> str:
        """The SUT's MAC, asked with ARP or a neighbour solicitation (retried
        every 200 ms) until the SUT answers one, or `within` seconds have
        passed. Only its answer proves that our frames reach it: a frame of
        its own (a gratuitous ARP when its interface comes up) does not, and
        a TAP's kernel side drops what is sent to it until the carrier the
        agent brought up has activated its queue (linkwatch, later under
        load)."""
        deadline = time.monotonic() + within
        while not self.answered:
            if time.monotonic() >= deadline:
                raise LinkError(f"{self.sut_addr} does not answer "
                                f"{'ARP' if ':' not in self.sut_addr else 'neighbour solicitations'} on {self.ifname}")
            self._send_frame(self._solicit())
            end = min(deadline, time.monotonic() + 0.2)
            while not self.answered and time.monotonic() < end:
                self.poll(end)
        return self.sut_mac

    def _solicit(self) -> bytes:
        if ":" not in self.sut_addr:
            return bytes(Ether(dst="ff:ff:ff:ff:ff:ff", src=self.mac) /
                         ARP(op=1, hwsrc=self.mac, psrc=self.addresses["ipv4"], pdst=self.sut_addr))
        if self.sut_mac_hint is not None:
            return bytes(Ether(dst=self.sut_mac_hint, src=self.mac) /
                         IPv6(src=self.addresses["ipv6"], dst=self.sut_addr, hlim=255) /
                         ICMPv6ND_NS(tgt=self.sut_addr) / ICMPv6NDOptSrcLLAddr(lladdr=self.mac))
        group = in6_getnsma(inet_pton(socket.AF_INET6, self.sut_addr))
        return bytes(Ether(dst=in6_getnsmac(group), src=self.mac) /
                     IPv6(src=self.addresses["ipv6"], dst=socket.inet_ntop(socket.AF_INET6, group), hlim=255) /
                     ICMPv6ND_NS(tgt=self.sut_addr) / ICMPv6NDOptSrcLLAddr(lladdr=self.mac))


class PacketLink(EthernetLink):
    """Frames on an interface, through an AF_PACKET socket."""

    def __init__(self, trace, ifname: str, mac: str, addresses: dict, sut_addr: str):
        super().__init__(trace, ifname, mac, addresses, sut_addr)
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)   # no hook until bind (see DeviceStamps)
        try:
            self.sock.bind((ifname, ETH_P_ALL))
            index = socket.if_nametoindex(ifname)
            mreq = index.to_bytes(4, "little") + PACKET_MR_PROMISC.to_bytes(2, "little") + bytes(10)
            self.sock.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, mreq)
        except OSError:
            self.sock.close()
            raise
        self.sock.setblocking(False)
        kernel_stamps_on()
        self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self.sock.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
        self.offset = realtime_offset()
        self.completed = 0             # segments whose checksum the sender left to the hardware

    def fileno(self) -> int:
        return self.sock.fileno()

    def _send_frame(self, frame: bytes) -> None:
        self.sock.send(frame)

    def _recv_frames(self):
        out = []
        while True:
            try:
                frame, anc, _, addr = self.sock.recvmsg(65536, 128)
            except BlockingIOError:
                return out
            t = kernel_stamp(anc, self.offset) or time.monotonic()
            if addr[2] == PACKET_OUTGOING:
                continue
            if csum_not_ready(anc):
                frame = frame[:14] + finish_checksum(frame[14:])
                self.completed += 1
            out.append((frame, t))

    def close(self) -> None:
        super().close()
        from .netns import closer
        closer.submit(self.sock.close)             # packet_release waits for an RCU grace period


class StreamLink(EthernetLink):
    """Frames over a connected stream socket, each behind its length (four
    octets, network order): the tester is the virtual machine of a user-mode
    network that speaks QEMU's `-netdev stream` protocol (passt)."""

    def __init__(self, trace, sock: socket.socket, mac: str, addresses: dict, sut_addr: str, name: str = "stream"):
        super().__init__(trace, name, mac, addresses, sut_addr)
        self.sock = sock
        self.sock.setblocking(False)     # and it stays so: a delayed frame is sent by the link's own thread
        self.sending = threading.Lock()  # while the case's thread reads; one frame at a time on the stream
        self.buf = b""

    def fileno(self) -> int:
        return self.sock.fileno()

    def _send_frame(self, frame: bytes) -> None:
        """Send one frame and wait (at most DRAINED_WITHIN) until the SUT has
        read it: frames sent at different times reach it as separate reads,
        as on a link, not as one batch (passt handles a batch of one
        4-tuple's segments together, tap.c)."""
        with self.sending:
            data = memoryview(FRAME_LENGTH.pack(len(frame)) + frame)
            deadline = time.monotonic() + 5.0
            while data:
                try:
                    data = data[self.sock.send(data):]
                except BlockingIOError:
                    if not select.select([], [self.sock], [], max(0.0, deadline - time.monotonic()))[1]:
                        raise LinkError(f"{self.ifname}: the SUT takes no frame for 5 s") from None
            deadline = time.monotonic() + DRAINED_WITHIN
            while self._unread() and time.monotonic() < deadline:
                time.sleep(0.0001)

    def _unread(self) -> int:
        """Octets sent that the SUT has not read yet (SIOCOUTQ)."""
        return struct.unpack("i", fcntl.ioctl(self.sock.fileno(), SIOCOUTQ, b"\0" * 4))[0]

    def _recv_frames(self):
        while True:
            try:
                chunk = self.sock.recv(1 << 20)
            except BlockingIOError:
                break
            if not chunk:
                raise LinkError(f"{self.ifname}: the SUT closed the link")
            self.buf += chunk
        t = time.monotonic()
        out = []
        while len(self.buf) >= FRAME_LENGTH.size:
            (n,) = FRAME_LENGTH.unpack_from(self.buf)
            if len(self.buf) < FRAME_LENGTH.size + n:
                break
            out.append((self.buf[FRAME_LENGTH.size:FRAME_LENGTH.size + n], t))
            self.buf = self.buf[FRAME_LENGTH.size + n:]
        return out

    def close(self) -> None:
        super().close()
        self.sock.close()


def _is_mld(frame: bytes) -> bool:
    """Multicast listener discovery (link upkeep of IPv6, like ND): ICMPv6
    behind a hop-by-hop header, as RFC 3810 §5 sends it."""
    return len(frame) > 14 + 48 and frame[14 + 6] == 0 and frame[14 + 40] == 58 and frame[14 + 48] in MLD
