"""A SUT reached through an existing interface: another host, a VM, a
namespace someone else set up.

Rules of this file:
- The suite owns nothing here but its own Ethernet address on the link: it
  claims `tester-address` (an address no kernel on the link holds) with a
  locally administered MAC, answers ARP/ND for it, and sends only to
  `address`. Both must lie in 198.18.0.0/15 or 2001:2::/48.
- The SUT's application is driven by an agent (`python -m harness.agent`,
  standard library only, on the SUT host) over TCP or a unix socket. Without
  one, cases that need app control are skipped, and `port` names a port the
  SUT listens on for server-side cases. The agent may sit on a control link
  of its own in another namespace (`agent-netns`; harness/uml.py does so).
- Tunables the suite changes on the SUT through the agent (--sysctl, a
  case's quick variant) are put back when the case ends.
- Offloads: the tester reads the interface with AF_PACKET; checksum and
  segmentation offloads on the SUT's side of a veth make segments arrive
  unfinished, so switch them off there (`ethtool -K IFACE tx off tso off
  gso off`); the suite switches them off on its own side. The preflight
  looks for them once, before any case (a handshake with the SUT), and
  stops the run with one line saying so; a checksum left to the hardware
  that reaches a case all the same is finished by the link as the hardware
  would (l2), never reported as the SUT's wrong checksum.
"""
from __future__ import annotations

import ipaddress
import socket
from contextlib import nullcontext

from ..agent import App, AppError, connect_agent
from ..l2 import LinkError, PacketLink, offloads_off
from ..netns import Namespace
from . import APP, STATE, SYSCTL, Stack, StackError

ALLOWED = [ipaddress.ip_network("198.18.0.0/15"), ipaddress.ip_network("2001:2::/48")]
TESTER_MAC = "02:00:00:74:63:fe"


def _addresses(text: str, what: str) -> dict:
    out = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        try:
            a = ipaddress.ip_address(part)
        except ValueError:
            raise StackError(f"--stack-opt {what}={text}: {part!r} is not an IP address") from None
        if not any(a in n for n in ALLOWED):
            raise StackError(f"--stack-opt {what}={part}: the suite only sends to 198.18.0.0/15 and 2001:2::/48")
        out["ipv4" if a.version == 4 else "ipv6"] = str(a)
    return out


class RemoteStack(Stack):
    name = "remote"
    option_names = {
        "iface": "interface towards the SUT (required)",
        "netns": "network namespace holding iface (default: the current one)",
        "address": "the SUT's address(es), IPv4 and/or IPv6, comma-separated (required)",
        "tester-address": "address(es) the tester claims on the link, unused by anyone (required)",
        "agent": "host:port or unix socket path of `python -m harness.agent` on the SUT",
        "agent-netns": "network namespace to reach a host:port agent from (default: the current one)",
        "port": "a port the SUT listens on, for server-side cases without an agent",
        "profile": "profile of the SUT, cases/profiles/<name>.toml (default linux)",
        "mac": f"the tester's MAC (default {TESTER_MAC})",
    }

    @classmethod
    def profile_name(cls, options: dict) -> str:
        return options.get("profile", "linux")

    @classmethod
    def check(cls, options: dict) -> None:
        for key in ("iface", "address", "tester-address"):
            if key not in options:
                raise StackError(f"stack remote needs --stack-opt {key}=... ({cls.option_names[key]})")
        sut, tester = _addresses(options["address"], "address"), _addresses(options["tester-address"], "tester-address")
        if set(sut) != set(tester):
            raise StackError("--stack-opt address and tester-address must cover the same families")
        if "port" in options and not options["port"].isdigit():
            raise StackError(f"--stack-opt port={options['port']}: a port number")

    @classmethod
    def preflight(cls, options: dict) -> list[str]:
        """Reach the SUT once before any case (a StackError is one line), and
        where it listens (agent, or `port`) see whether its side of the link
        leaves TCP checksums to the hardware (a SYN, its SYN-ACK, a reset):
        then it leaves segmentation to it too, and segments larger than its
        MSS would reach the tester, so the run stops, saying what to switch
        off."""
        import random
        from ..peer import Peer
        from ..trace import Trace
        from . import StackConfig
        family = next(f for f in ("ipv4", "ipv6") if f in _addresses(options["address"], "address"))
        st = cls(StackConfig(family, Trace(), {}, options)).start()
        try:
            rng = random.Random()
            port = st.server_port
            if st.app is not None:
                port = rng.randrange(1024, 32768)
                st.app.listen(port)
            if port is None:
                return []
            peer = Peer(st.link, family, st.peer_addr, st.sut_addr, rng.randrange(32768, 61000), port, rng)
            peer.send("S")
            answer = peer.next_segment(within=1.0)
            if answer is not None and answer.syn:
                peer.send("R", seq=peer.iss + 1)
        finally:
            st.close()
        if st.link.completed:
            raise StackError(f"the SUT's side of {options['iface']} leaves TCP checksums and segmentation to a NIC "
                             f"(offload), and a veth or TAP has none: switch the offloads off on the SUT's side "
                             f"(ethtool -K IFACE tx off) and run again")
        return []

    outlives_case = True     # the host keeps its sockets from case to case (see the peer fixture)

    def __init__(self, config):
        opts = config.options
        self.check(opts)
        self.sut_addrs = _addresses(opts["address"], "address")
        self.tester_addrs = _addresses(opts["tester-address"], "tester-address")
        self.families = tuple(f for f in ("ipv4", "ipv6") if f in self.sut_addrs)
        super().__init__(config)
        if self.family in self.sut_addrs:
            self.sut_addr, self.peer_addr = self.sut_addrs[self.family], self.tester_addrs[self.family]
        self.capabilities = frozenset({APP, STATE, SYSCTL}) if "agent" in opts else frozenset()
        self.server_port = int(opts["port"]) if "port" in opts and "agent" not in opts else None
        self.restore: dict = {}

    def start(self) -> "RemoteStack":
        opts = self.config.options
        ns = Namespace(opts["netns"]) if opts.get("netns") else None
        try:
            if ns is not None:
                with ns.entered():
                    self._open_link(opts)
            else:
                self._open_link(opts)
            self.link.resolve()
            if "agent" in opts:
                with Namespace(opts["agent-netns"]).entered() if opts.get("agent-netns") else nullcontext():
                    transport = connect_agent(opts["agent"])
                self.app = App(transport, self.family, self.sut_addr)
                self.app.greet()
                for key, value in self.config.sysctls.items():
                    self.set_sysctl(key, value)
                self._forget_earlier_cases()
        except (OSError, LinkError, AppError) as e:
            self.close()
            raise StackError(f"remote SUT on {opts['iface']}: {e}") from None
        except BaseException:
            self.close()
            raise
        return self

    def _open_link(self, opts: dict) -> None:
        try:
            socket.if_nametoindex(opts["iface"])
        except OSError:
            raise StackError(f"no interface {opts['iface']!r}"
                             + (f" in namespace {opts['netns']}" if opts.get("netns") else "")) from None
        offloads_off(opts["iface"])
        from pyroute2 import IPRoute
        with IPRoute() as ipr:
            self.mtu = ipr.get_links(ipr.link_lookup(ifname=opts["iface"])[0])[0].get_attr("IFLA_MTU")
        self.link = PacketLink(self.trace, opts["iface"], opts.get("mac", TESTER_MAC),
                               {self.family: self.peer_addr}, self.sut_addr)

    # --- capabilities through the agent -------------------------------------------------------
    def sysctl(self, key: str) -> str:
        return str(self.app.call("sysctl", name=key)["value"])

    def set_sysctl(self, key: str, value) -> None:
        old = self.app.call("sysctl", name=key, value=str(value))["value"]
        self.restore.setdefault(key, old)

    def _forget_earlier_cases(self) -> None:
        """A remote host outlives the case: what its TCP keeps about the
        tester's address between connections (RFC 2140; Linux's tcp_metrics:
        RTT, RTTVAR, ssthresh) would seed this case's connection from the
        last one's, and its first RTO with it. The agent drops it where it
        can; an agent without the operation has nothing to drop, one without
        the privilege leaves it (as it leaves the sysctls)."""
        try:
            self.app.call("forget", address=self.peer_addr)
        except AppError as e:
            if e.error not in ("EOPNOTSUPP", "EPERM"):
                raise

    def version(self) -> str:
        if self.app is None:
            return "unknown (no agent)"
        return self.app.hello().get("system", "unknown")

    def close(self) -> None:
        if self.app is not None:
            for key, value in self.restore.items():
                try:
                    self.app.call("sysctl", name=key, value=value)
                except Exception:
                    pass
            try:
                self.app.call("bye")
            except Exception:
                pass
        if self.link is not None:
            self.link.close()
