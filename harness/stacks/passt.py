"""passt (Debian passt 0.0~git20230309.7c7625d), the user-mode network that
gives QEMU and namespaces their network by translating the guest's TCP onto
host sockets, with the tester as the virtual machine.

Rules of this file:
- The stack under test is passt's guest-facing TCP (tcp.c: not a full TCP,
  "a modified TCP state machine focused on the translation of observed
  events"). passt runs in the case's namespace in its QEMU mode: it listens
  on a unix socket and the tester connects to it as QEMU would (`-netdev
  stream`), carrying Ethernet frames behind their length (harness.l2.
  StreamLink). One client only (-1): passt ends when the tester hangs up.
- Addresses as on any link of the suite: the tester (the guest) is .2 / ::2
  (-a), passt answers as the gateway .1 / ::1 (-g) with the SUT's MAC (-M).
  passt needs a template interface for its configuration: `tmpl0`, a TAP
  nobody opens, down, with the one link-local address passt needs for IPv6
  (fe80::1: the source of its neighbour advertisements; the tester never
  sends to it) and no route: nothing reaches the namespace's kernel.
  DHCP, DHCPv6 and router advertisements are off.
- passt's application is the host (harness/stacks/proxied.py): a guest's
  connection to the gateway becomes connect() to the host's loopback (its
  default gateway mapping), and a host connect() to a forwarded port (-t)
  becomes a connection passt opens to the guest on the same port, from the
  client's address and port: the client binds to the SUT's address, which
  the namespace holds on its loopback for that. Forwards are fixed when
  passt starts, so the tester's ports come from them (`peer_ports`).
- Capabilities: app only. passt keeps no TCP state a tester can read (its
  "events" are internal), and its timers are compiled in (no `sysctl`).
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

from pyroute2 import IPRoute

from . import ADDRESSES, APP, Stack, StackError
from ..agent import App, AppError
from ..l2 import StreamLink
from ..netns import Namespace
from ..setup import apt_install, package_version
from .proxied import ProxiedHost
from .tap import PEER_MAC, SUT_MAC, coming_up

PACKAGE = "passt"
# Host ports passt forwards to the same guest ports (-t): the tester's ports.
FORWARDS = range(40000, 40256)
IFA_F_NODAD = 0x02
LINK_LOCAL = "fe80::1"        # passt's own, for neighbour discovery (see _configure)
NOT_CARRIED = ("it would set the host socket that passt proxies; passt's guest-facing TCP takes its "
               "timers (tcp.c ACK_TIMEOUT, SYN_TIMEOUT, FIN_TIMEOUT, ACT_TIMEOUT) from constants")


class PasstHost(ProxiedHost):
    """The host side of passt: loopback sockets of the case's namespace."""

    stack = "passt"

    def not_carried(self, name: str) -> str:
        return NOT_CARRIED

    def __init__(self, make_socket, family: str):
        super().__init__(make_socket)
        self.family = family

    def source(self, family):
        return ADDRESSES[family]["sut"]

    def forward(self, family, address, port):
        if address != ADDRESSES[family]["peer"]:
            raise AppError("EOPNOTSUPP", f"passt's host reaches only the guest ({ADDRESSES[family]['peer']}), through "
                                         f"its forwards (-t): an active open to {address} is the host kernel's, "
                                         f"not passt's")
        if port not in FORWARDS:
            raise AppError("EADDRNOTAVAIL", f"passt forwards host ports {FORWARDS.start}-{FORWARDS.stop - 1} to the "
                                            f"guest (-t, fixed when it starts), not {port}")
        return port


class PasstStack(Stack):
    name = "passt"
    capabilities = frozenset({APP})
    families = ("ipv4", "ipv6")
    option_names = {}
    peer_ports = FORWARDS
    mtu = 65520          # passt's link MTU: 65535 minus the Ethernet header, rounded to 32 bits (-m)

    @classmethod
    def check(cls, options: dict) -> None:
        if shutil.which(PACKAGE) is None:
            raise StackError("passt is not installed: run python3 -m harness.setup --stack passt")

    @classmethod
    def setup(cls) -> None:
        apt_install((PACKAGE,), "--stack passt")

    def start(self) -> "PasstStack":
        self.proc = None
        self.dir = tempfile.mkdtemp(prefix="tcpconf-passt-")
        os.chmod(self.dir, 0o777)               # passt binds its socket after it dropped root for nobody
        self.ns = Namespace.create()
        with coming_up(self, "passt"):
            with self.ns.entered():
                self._configure()
                self.log = open(os.path.join(self.dir, "stderr"), "w+b")
                self.proc = subprocess.Popen(self._command(), stdin=subprocess.DEVNULL, stdout=self.log,
                                             stderr=self.log, start_new_session=True)
                sock = self._connect(os.path.join(self.dir, "passt.sock"))
            self.link = StreamLink(self.trace, sock, PEER_MAC, {self.family: self.peer_addr}, self.sut_addr,
                                   name="passt")
            self.link.resolve()
            self.host = PasstHost(self._socket, self.family)
            self.app = App(self.host.dispatch, self.family, self.sut_addr)
            self.app.greet()
        return self

    def _configure(self) -> None:
        with IPRoute() as ipr:
            ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")
            ipr.link("add", ifname="tmpl0", kind="tuntap", mode="tap")
            idx = ipr.link_lookup(ifname="tmpl0")[0]
            # passt takes its link-local address from the template (nl_addr) and
            # runs no IPv6 without one (conf_ip6).
            ipr.addr("add", index=idx, address=LINK_LOCAL, prefixlen=64, flags=IFA_F_NODAD)
            # The host's clients connect from the SUT's address: passt keeps a
            # peer address that is not loopback (tcp.c tcp_conn_from_sock), so its
            # connection to the guest comes from the gateway (a loopback peer
            # becomes the link-local address for IPv6).
            lo = ipr.link_lookup(ifname="lo")[0]
            for fam in ADDRESSES.values():
                ipr.addr("add", index=lo, address=fam["sut"], prefixlen=32 if "." in fam["sut"] else 128,
                         flags=IFA_F_NODAD)

    def _command(self) -> list[str]:
        four, six = ADDRESSES["ipv4"], ADDRESSES["ipv6"]
        return [PACKAGE, "--foreground", "--one-off", "--socket", os.path.join(self.dir, "passt.sock"),
                "--interface", "tmpl0", "--mac-addr", SUT_MAC,
                "--address", four["peer"], "--netmask", str(four["prefix"]), "--gateway", four["sut"],
                "--address", six["peer"], "--gateway", six["sut"],
                "--tcp-ports", f"{FORWARDS.start}-{FORWARDS.stop - 1}", "--udp-ports", "none",
                "--no-dhcp", "--no-dhcpv6", "--no-ra", "--dns", "none"]

    def _connect(self, path: str, within: float = 5.0) -> socket.socket:
        """passt's unix socket, once it listens (it binds it after reading
        its configuration)."""
        deadline = time.monotonic() + within
        while True:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.connect(path)
                return s
            except (FileNotFoundError, ConnectionRefusedError):
                s.close()
                if self.proc.poll() is not None:
                    raise OSError(f"passt exited with status {self.proc.returncode}") from None
                if time.monotonic() >= deadline:
                    raise OSError(f"passt did not listen on {path} within {within:g} s") from None
                time.sleep(0.005)

    def _socket(self, family: int) -> socket.socket:
        with self.ns.entered():
            return socket.socket(family, socket.SOCK_STREAM)

    def version(self) -> str:
        return f"passt {package_version(PACKAGE) or 'unknown'} (Debian)"

    def close(self) -> None:
        host = getattr(self, "host", None)
        if host is not None:
            host.close_all()
        if self.link is not None:
            self.link.close()                   # with --one-off, passt ends when its client hangs up
        proc = getattr(self, "proc", None)
        if proc is not None:
            try:
                proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait()
        log = getattr(self, "log", None)
        if log is not None:
            log.close()
        ns = getattr(self, "ns", None)
        if ns is not None:
            ns.remove()
        if getattr(self, "dir", None):
            shutil.rmtree(self.dir, ignore_errors=True)
