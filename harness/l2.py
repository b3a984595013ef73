"""PacketLink: the tester on an Ethernet link, for stacks that speak Ethernet.

Rules of this file:
- The tester owns an address on the link that no kernel holds: it answers
  ARP (IPv4) and neighbour solicitations (IPv6) for it itself, with its own
  MAC, and resolves the SUT's MAC before the first segment. Nothing of the
  tester's kernel can answer or drop anything for that address.
- Only IP packets enter the Trace (raw, Ethernet header and padding
  removed, like a TunLink's); ARP and neighbour discovery are link
  upkeep and stay out of it. Frames this socket sent are never read back.
- Received frames carry the kernel's timestamps (SO_TIMESTAMPNS), as on a
  TunLink.
- The socket is AF_PACKET on one interface: the kernel side of a TAP
  whose other side a user-space stack holds, or any interface (a veth end, a
  NIC) towards a remote SUT; it asks for promiscuous reception so that
  frames to the tester's MAC arrive on real NICs too.
"""
from __future__ import annotations

import socket
import time

from scapy.layers.inet6 import (ICMPv6ND_NA, ICMPv6ND_NS, ICMPv6NDOptDstLLAddr, ICMPv6NDOptSrcLLAddr, IPv6,
                                in6_getnsma, in6_getnsmac)
from scapy.layers.inet import IP
from scapy.layers.l2 import ARP, Ether
from scapy.pton_ntop import inet_pton

from .link import SO_TIMESTAMPNS, Link, kernel_stamp, kernel_stamps_on, realtime_offset

ETH_P_ALL = 0x0003
ETH_P_IP, ETH_P_ARP, ETH_P_IPV6 = 0x0800, 0x0806, 0x86DD
PACKET_OUTGOING = 4
SOL_PACKET, PACKET_ADD_MEMBERSHIP, PACKET_MR_PROMISC = 263, 1, 1


class LinkError(RuntimeError):
    pass


class PacketLink(Link):
    def __init__(self, trace, ifname: str, mac: str, addresses: dict, sut_addr: str):
        """`addresses`: the tester's own, {"ipv4": a, "ipv6": b} (either may be
        absent); `sut_addr`: the address whose MAC to resolve."""
        super().__init__(trace)
        self.ifname, self.mac = ifname, mac
        self.addresses = addresses
        self.sut_addr = sut_addr
        # Other addresses the tester answers ARP and neighbour solicitations
        # for, as routers on the link would (a case's source-route hops).
        self.neighbours: set = set()
        self.sut_mac: str | None = None
        # The SUT's MAC where the stack fixes it: neighbour solicitations then
        # go to it and its address (unicast, RFC 4861 §7.2.2), for stacks that
        # do not listen on the solicited-node multicast group (lwIP without MLD).
        self.sut_mac_hint: str | None = None
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
        self.offset = realtime_offset()

    def fileno(self) -> int:
        return self.sock.fileno()

    # --- frames --------------------------------------------------------------------------
    def _frame(self, raw_ip: bytes, dst_mac: str) -> bytes:
        ethertype = ETH_P_IP if raw_ip[0] >> 4 == 4 else ETH_P_IPV6
        return bytes(Ether(dst=dst_mac, src=self.mac, type=ethertype)) + raw_ip

    def _write(self, raw: bytes) -> None:
        if self.sut_mac is None:
            self.resolve()
        self.sock.send(self._frame(raw, self.sut_mac))

    def _read_ready(self):
        out = []
        while True:
            try:
                frame, anc, _, addr = self.sock.recvmsg(65536, 64)
            except BlockingIOError:
                return out
            t = kernel_stamp(anc, self.offset) or time.monotonic()
            if addr[2] == PACKET_OUTGOING:
                continue
            ip = self._upkeep(frame)
            if ip is not None:
                out.append((ip, t))

    def _upkeep(self, frame: bytes) -> bytes | None:
        """Answer ARP/ND for our address, learn the SUT's MAC; return the IP
        packet of an IP frame that is neither, else None."""
        eth = Ether(frame)
        if eth.type == ETH_P_ARP and ARP in eth:
            arp = eth[ARP]
            if arp.op == 1 and (arp.pdst == self.addresses.get("ipv4") or arp.pdst in self.neighbours):
                self.sock.send(bytes(Ether(dst=eth.src, src=self.mac) /
                                     ARP(op=2, hwsrc=self.mac, psrc=arp.pdst, hwdst=arp.hwsrc, pdst=arp.psrc)))
            if arp.psrc == self.sut_addr:
                self.sut_mac = arp.hwsrc
            return None
        if eth.type == ETH_P_IPV6 and IPv6 in eth:
            if ICMPv6ND_NS in eth and eth[ICMPv6ND_NS].tgt == self.addresses.get("ipv6"):
                ns = eth[IPv6]
                src = ns.src if ns.src != "::" else "ff02::1"
                self.sock.send(bytes(Ether(dst=eth.src, src=self.mac) /
                                     IPv6(src=self.addresses["ipv6"], dst=src, hlim=255) /
                                     ICMPv6ND_NA(tgt=self.addresses["ipv6"], R=0, S=int(ns.src != "::"), O=1) /
                                     ICMPv6NDOptDstLLAddr(lladdr=self.mac)))
                if ns.src == self.sut_addr:
                    self.sut_mac = eth.src
                return None
            if ICMPv6ND_NA in eth:
                if eth[ICMPv6ND_NA].tgt == self.sut_addr:
                    self.sut_mac = eth.src
                return None
            if ICMPv6ND_NS in eth:
                return None
            return frame[14:]
        if eth.type == ETH_P_IP:
            if self.sut_mac is None and IP in eth and eth[IP].src == self.sut_addr:
                self.sut_mac = eth.src
            return frame[14:]
        return None

    def resolve(self, within: float = 3.0) -> str:
        """The SUT's MAC, asked with ARP or a neighbour solicitation (retried
        every 200 ms) until `within` seconds have passed."""
        deadline = time.monotonic() + within
        while self.sut_mac is None:
            if time.monotonic() >= deadline:
                raise LinkError(f"{self.sut_addr} does not answer "
                                f"{'ARP' if ':' not in self.sut_addr else 'neighbour solicitations'} on {self.ifname}")
            self.sock.send(self._solicit())
            end = min(deadline, time.monotonic() + 0.2)
            while self.sut_mac is None and time.monotonic() < end:
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

    def close(self) -> None:
        from .netns import closer
        closer.submit(self.sock.close)             # packet_release waits for an RCU grace period
