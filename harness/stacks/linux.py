"""The Linux kernel of this machine, in a fresh network namespace per case.

Rules of this file:
- One namespace per case: loopback up, the link to the tester, the SUT's
  address on it (IPv6 with nodad, so bind never meets a tentative address),
  sysctls from --sysctl and the case applied before any socket exists.
- The link is a TUN device `tun0` whose descriptor the tester holds, where
  this process can open /dev/net/tun (root; any user where it is mode
  0666), with no queueing discipline (noqueue): a segment the SUT sends
  reaches the descriptor in the context that sent it. Under pfifo_fast, a
  busy machine defers part of a burst to ksoftirqd (the qdisc run yields
  when need_resched), and segments released together come 0.1 s apart,
  as if released by two different ACKs. Elsewhere (a user who is not root, in a user namespace of its own,
  where the node is 0600 or missing) it is a veth pair in the same
  namespace: the SUT's address on `veth0`, the tester on `veth1` with
  harness.l2.PacketLink (AF_PACKET, as for a remote SUT), `veth1` without
  any address or IPv6 so that the namespace's kernel stays silent there,
  and `veth0` without offloads so that it sends segments as a wire carries
  them. `preflight` picks the link once per run, says which in the header,
  and stops the run with one line where neither can be had.
- The SUT's application is this process: sockets are created inside the
  namespace (setns on this thread) and driven by the same SocketHost that
  the remote agent runs, so every stack shares one app-control semantics.
- TCP state comes from sock_diag (pyroute2's DiagSocket opened inside the
  namespace), request sockets (SYN-RECEIVED) included.
"""
from __future__ import annotations

import os
import select
import socket
import time

from pyroute2 import IPRoute
from pyroute2.netlink.diag import DiagSocket
from scapy.layers.inet import ICMP, IP
from scapy.layers.inet6 import ICMPv6EchoReply, ICMPv6EchoRequest, IPv46, IPv6

from ..agent import LINUX_STATES, App, SocketHost
from ..l2 import PacketLink, offloads_off
from ..link import TunLink
from ..netns import Namespace, NamespaceError, write_sysctl
from . import APP, STATE, SYSCTL, ADDRESSES, Stack, StackError

IFA_F_NODAD = 0x02
ALL_STATES = 0xFFFFFFFF
TUN_DEVICE = "/dev/net/tun"
TESTER_MAC = "02:00:00:74:63:02"     # locally administered, the tester's end of the veth pair


def tun_unusable() -> str | None:
    """Why this process cannot open the TUN device (None: it can)."""
    try:
        os.close(os.open(TUN_DEVICE, os.O_RDWR | os.O_CLOEXEC))
    except OSError as e:
        return f"{TUN_DEVICE}: {e.strerror}"
    return None


def veth_unusable() -> str | None:
    """Why this process cannot have a veth pair read with AF_PACKET (None:
    it can), tried in a scratch namespace of the suite."""
    try:
        ns = Namespace.create()
    except OSError as e:
        return f"a network namespace: {e.strerror}"
    try:
        with ns.entered(), IPRoute() as ipr:
            ipr.link("add", ifname="veth0", kind="veth", peer={"ifname": "veth1"})
            socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0).close()
    except Exception as e:
        return f"a veth pair read with AF_PACKET: {getattr(e, 'strerror', None) or e}"
    finally:
        ns.remove()
    return None


class LinuxStack(Stack):
    name = "linux"
    capabilities = frozenset({APP, STATE, SYSCTL})
    option_names = {}
    use_tun: bool | None = None          # per process: the TUN device opens (see preflight)

    @classmethod
    def preflight(cls, options: dict) -> list[str]:
        """The link this run uses, for the header; a StackError (one line)
        where neither a TUN device nor a veth pair can be had."""
        tun = tun_unusable()
        if tun is None:
            return [f"link: TUN device ({TUN_DEVICE})"]
        veth = veth_unusable()
        if veth is not None:
            raise StackError(f"stack linux has no link to the SUT: {tun}, and {veth}: "
                             f"make the TUN device usable (chmod 0666 {TUN_DEVICE}) or run as root")
        return [f"link: veth pair read with AF_PACKET ({tun})"]

    def start(self) -> "LinuxStack":
        self.ns = Namespace.create()
        try:
            with self.ns.entered():
                self._configure()
        except BaseException:
            self.close()
            raise
        self.host = SocketHost(self._socket)
        self.app = App(self.host.dispatch, self.family, self.sut_addr)
        return self

    def _configure(self) -> None:
        fam = ADDRESSES[self.family]
        if LinuxStack.use_tun is None:
            LinuxStack.use_tun = tun_unusable() is None
        with IPRoute() as ipr:
            lo = ipr.link_lookup(ifname="lo")[0]
            ipr.link("set", index=lo, state="up")
            if self.use_tun:
                dev = "tun0"
                self.link = TunLink.open(self.trace, dev)
            else:
                dev = "veth0"
                ipr.link("add", ifname=dev, kind="veth", peer={"ifname": "veth1"})
                self._write_proc("net.ipv6.conf.veth1.disable_ipv6", 1)
                offloads_off(dev)
                ipr.link("set", index=ipr.link_lookup(ifname="veth1")[0], state="up")
            idx = ipr.link_lookup(ifname=dev)[0]
            if self.use_tun:
                ipr.tc("replace", "noqueue", index=idx, handle="0:")
            if self.family == "ipv4":
                self._write_proc(f"net.ipv6.conf.{dev}.disable_ipv6", 1)
                ipr.addr("add", index=idx, address=fam["sut"], prefixlen=fam["prefix"])
            else:
                # No link-local address, router solicitation or DAD on the
                # link the tester reads: only the case's packets cross it.
                self._write_proc(f"net.ipv6.conf.{dev}.addr_gen_mode", 1)
                self._write_proc(f"net.ipv6.conf.{dev}.router_solicitations", 0)
                ipr.addr("add", index=idx, address=fam["sut"], prefixlen=fam["prefix"],
                         flags=IFA_F_NODAD)
            ipr.link("set", index=idx, state="up")
            self.mtu = ipr.get_links(idx)[0].get_attr("IFLA_MTU")
            if self.use_tun:
                self.link.stamp_with_kernel()
            else:
                self.link = PacketLink(self.trace, "veth1", TESTER_MAC, {self.family: self.peer_addr},
                                       self.sut_addr)
        for key, value in self.config.sysctls.items():
            self._write_proc(key, value)
        self.diag = DiagSocket()
        self.diag.bind()
        self._wait_reachable()

    def _wait_reachable(self, within: float = 2.0) -> None:
        """Echo-request the SUT's address through the link until it answers.

        Address set-up finishes in kernel work items that wait for the RTNL
        lock (held, for instance, while an earlier case's TUN device is
        unregistered); until they have run, the first segments to a new
        address can be dropped (Ip6InAddrErrors) although bind() succeeds.
        The echo proves the receive path before the case starts; it is not
        part of the case's trace."""
        if self.family == "ipv4":
            probe = IP(src=self.peer_addr, dst=self.sut_addr) / ICMP(id=0x7463, seq=1)
        else:
            probe = IPv6(src=self.peer_addr, dst=self.sut_addr) / ICMPv6EchoRequest(id=0x7463, seq=1)
        raw = bytes(probe)
        fd = self.link.fileno()
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            self.link._write(raw)
            end = min(deadline, time.monotonic() + 0.01)
            while time.monotonic() < end:
                if not select.select([fd], [], [], max(0.0, end - time.monotonic()))[0]:
                    break
                for packet, _ in self.link._read_ready():
                    reply = IPv46(packet)
                    if ICMP in reply and reply[ICMP].type == 0 or ICMPv6EchoReply in reply:
                        return
        raise StackError(f"the SUT's address {self.sut_addr} did not answer an echo request within {within:g} s")

    @staticmethod
    def _write_proc(key: str, value) -> None:
        try:
            write_sysctl(key, value)
        except NamespaceError as e:
            raise StackError(f"{e} (--sysctl KEY=VALUE)") from None

    def _socket(self, family: int) -> socket.socket:
        with self.ns.entered():
            return socket.socket(family, socket.SOCK_STREAM)

    # --- capabilities ----------------------------------------------------------------
    def sysctl(self, key: str) -> str:
        try:
            return self.ns.sysctl(key)
        except FileNotFoundError:
            raise StackError(f"unknown sysctl {key}") from None

    def set_sysctl(self, key: str, value) -> None:
        try:
            self.ns.set_sysctl(key, value)
        except NamespaceError as e:
            raise StackError(str(e)) from None

    def states(self, port: int | None = None) -> list[dict]:
        fam = socket.AF_INET if self.family == "ipv4" else socket.AF_INET6
        out = []
        for msg in self.diag.get_sock_stats(family=fam, states=ALL_STATES):
            local = (msg["idiag_src"], msg["idiag_sport"])
            remote = (msg["idiag_dst"], msg["idiag_dport"])
            if port is not None and port not in (local[1], remote[1]):
                continue
            out.append({"local": local, "remote": remote,
                        "state": LINUX_STATES.get(msg["idiag_state"], str(msg["idiag_state"]))})
        return out

    def version(self) -> str:
        return os.uname().release

    def describe(self) -> dict:
        return {**super().describe(), "link": "TUN" if self.use_tun else "veth (AF_PACKET)"}

    def close(self) -> None:
        host = getattr(self, "host", None)
        if host is not None:
            host.close_all()
        diag = getattr(self, "diag", None)
        if diag is not None:
            diag.close()
        if self.link is not None:
            self.link.close()
        ns = getattr(self, "ns", None)
        if ns is not None:
            ns.remove()
