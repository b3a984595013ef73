"""libslirp 4.7 (Debian libslirp0), the user-mode network of QEMU and of
rootless containers, with the tester as its guest.

Rules of this file:
- The stack under test is slirp's guest-facing TCP (4.4BSD-derived,
  tcp_input.c, tcp_output.c, tcp_timer.c). The pump (slirp_agent.c next to
  this file, built into build/slirp-agent by `python3 -m harness.setup
  --stack slirp`) runs libslirp in the case's namespace on `tap0`: slirp
  owns 198.18.0.1 and 2001:2::1, the tester is its guest at .2 / ::2.
- slirp's application is the host (harness/stacks/proxied.py): a guest's
  connection to slirp's address becomes connect() to the host's loopback
  (sotranslate_out), and a forwarding rule, added through the pump for each
  `connect` (slirp_add_hostxfwd), turns a host connect() into a connection
  slirp opens to the guest from its address and the client's port
  (tcp_connect, sotranslate_accept). The pump's control lines are its own.
- Of the socket options only SO_LINGER, SO_REUSEADDR and SO_OOBINLINE are
  offered (an abortive close reaches the guest as a reset: soread ->
  tcp_drop; the guest's urgent data reaches the host socket as MSG_OOB,
  sosendoob, so whether it is read inline is the host socket's choice);
  slirp's timers and buffers are compiled in (no `sysctl` capability).
- TCP states are slirp's own (slirp_connection_info, misc.c): capability
  `state`. It prints IPv4 addresses only ("TODO: IPv6"): for IPv6 the states
  and ports are slirp's and the addresses are left out (None).
"""
from __future__ import annotations

import json
import shutil
import socket
import subprocess
from pathlib import Path

from . import ADDRESSES, APP, STATE, StackError
from ..agent import App, AppError, StreamTransport
from ..netns import write_sysctl
from ..setup import apt_install, package_version
from .proxied import LOOPBACK, ProxiedHost
from .tap import BUILD, TapStack

PACKAGES = ("libslirp-dev", "libslirp0")
SOURCE = Path(__file__).with_name("slirp_agent.c")
HEADER = Path("/usr/include/slirp/libslirp.h")
# Host ports of the forwarding rules: above the namespace's ephemeral range
# (32768-60999) and the tester's ports, so a port in slirp's connection
# table says by itself whether it is a rule's.
FORWARD_PORTS = range(61000, 65536)
# slirp_connection_info's state names -> RFC 9293's.
STATES = {"SYN_SENT": "SYN-SENT", "SYN_RCVD": "SYN-RECEIVED", "ESTABLISHED": "ESTABLISHED",
          "CLOSE_WAIT": "CLOSE-WAIT", "FIN_WAIT_1": "FIN-WAIT-1", "CLOSING": "CLOSING",
          "LAST_ACK": "LAST-ACK", "FIN_WAIT_2": "FIN-WAIT-2", "TIME_WAIT": "TIME-WAIT",
          "LISTEN": "LISTEN", "CLOSED": "CLOSED"}
NOT_CARRIED = ("it would set the host socket that slirp proxies, not slirp's TCP, whose timers, "
               "buffers and options are compiled in (libslirp tcp_timer.h, tcp.h)")
KEEPALIVE = ("slirp sends no keep-alives to the guest: slirp_do_keepalive (slirp.c) is false and "
             "not exported, so tcp_timers only re-arms the keep-alive timer")


class SlirpHost(ProxiedHost):
    """The host side of slirp, with slirp's forwarding rules and connection table."""

    stack = "slirp"
    carried = ProxiedHost.carried | {"SO_OOBINLINE"}

    def __init__(self, make_socket, pump: StreamTransport, family: str):
        super().__init__(make_socket)
        self.pump = pump
        self.family = family
        self.ports = iter(FORWARD_PORTS)
        self.forwarded: dict[int, int] = {}      # rule's host port -> the client's port (slirp's on the wire)
        self.listening: dict[int, int] = {}      # listener's id -> its port

    def control(self, line: str) -> dict:
        reply = json.loads(self.pump.exchange(line, line.split()[0]))
        if not reply.get("ok"):
            raise AppError(reply.get("error", "EIO"), reply.get("message", ""))
        return reply

    def not_carried(self, name: str) -> str:
        return KEEPALIVE if "KEEP" in name else NOT_CARRIED

    def op_hello(self, **_):
        return dict(super().op_hello(), system=f"libslirp {self.control('hello')['libslirp']}")

    def forward(self, family, address, port):
        """A forwarding rule from the next rule port to the guest's address
        and port (slirp_add_hostxfwd through the pump)."""
        rule = next(self.ports, None)
        if rule is None:
            raise AppError("EADDRNOTAVAIL", f"no forwarding ports left ({FORWARD_PORTS})")
        self.control(f"hostfwd {LOOPBACK[family]} {rule} {address} {port}")
        self.rule = rule
        return rule

    def op_connect(self, family, address, port, bind=None, options=None):
        out = super().op_connect(family, address, port, bind, options)
        self.forwarded[self.rule] = self._sock(out["id"]).getsockname()[1]
        return out

    def op_listen(self, family, address, port, backlog=16, options=None):
        out = super().op_listen(family, address, port, backlog, options)
        self.listening[out["id"]] = int(port)
        return out

    def op_close(self, id):
        self.listening.pop(int(id), None)
        return super().op_close(id)

    def op_state(self, port=None):
        """slirp's TCP control blocks (slirp_connection_info): one line each,
        `TCP[STATE] FD SRC SPORT DST DPORT RECVQ SENDQ`. For a connection the
        guest opened, SRC is the guest and DST what it connected to (slirp's
        side); for one a forwarding rule opened, SRC is the host socket slirp
        accepted (the rule's loopback port) and DST the guest. slirp keeps
        no block for LISTEN: a port of its address is in LISTEN while the
        host listens on it (tcp_input makes the block when a SYN comes, and
        connects to the host), so the host's listeners are reported as such."""
        out = [{"local": [None, p], "remote": [None, 0], "state": "LISTEN"} for p in self.listening.values()
               if port is None or int(port) == p]
        for line in self.control("connections")["info"].splitlines()[1:]:
            parts = line.split()
            if len(parts) != 8 or not parts[0].startswith("TCP["):
                continue
            state = parts[0][4:-1]
            if state not in STATES:          # HOST_FORWARD (a rule's listener), NONE
                continue
            src, sport, dst, dport = parts[2], int(parts[3]), parts[4], int(parts[5])
            if sport in self.forwarded:
                local, remote = (None, self.forwarded[sport]), (dst, dport)
            else:
                local, remote = (dst, dport), (src, sport)
            if self.family == "ipv6":        # misc.c prints IPv4 addresses only
                local, remote = (None, local[1]), (None, remote[1])
            if port is not None and int(port) not in (local[1], remote[1]):
                continue
            out.append({"local": list(local), "remote": list(remote), "state": STATES[state]})
        return {"sockets": out}


HOST_BUFFERS = "4096 16384 65536"   # the host side's socket buffers: min, default, max (octets)


class SlirpStack(TapStack):
    sources = (SOURCE,)
    name = "slirp"
    capabilities = frozenset({APP, STATE})
    families = ("ipv4", "ipv6")
    option_names = {}

    @classmethod
    def agent_path(cls) -> Path:
        return BUILD / "slirp-agent"

    def agent_command(self) -> list[str]:
        return [str(self.agent_path()), "tap0", *(f"{ADDRESSES[f]['sut']}/{ADDRESSES[f]['prefix']}"
                                                  for f in ("ipv4", "ipv6"))]

    def make_app(self, transport: StreamTransport) -> App:
        self.host = SlirpHost(self._socket, transport, self.family)
        return App(self.host.dispatch, self.family, self.sut_addr)

    def _socket(self, family: int) -> socket.socket:
        with self.ns.entered():
            return socket.socket(family, socket.SOCK_STREAM)

    def _configure(self) -> None:
        super()._configure()
        # slirp's application is the host: what the guest sends goes into
        # slirp's socket buffer, then into the kernel buffers of its host-side
        # socket and of the application's, which grow to megabytes on their
        # own (tcp_wmem, tcp_rmem). Bounded here, an application that reads
        # nothing closes slirp's window to the guest after a few hundred KB,
        # as a full application buffer would.
        for key in ("net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem"):
            write_sysctl(key, HOST_BUFFERS)

    def version(self) -> str:
        pkg = package_version("libslirp0")
        return "libslirp " + (f"{pkg} (Debian libslirp0)" if pkg else "4.7")

    def close(self) -> None:
        host = getattr(self, "host", None)
        if host is not None:
            host.close_all()
        super().close()

    # --- set-up ------------------------------------------------------------------------------
    @classmethod
    def setup(cls) -> None:
        if not HEADER.exists() or package_version("libslirp0") is None:
            apt_install(PACKAGES, "the slirp pump")
        if shutil.which("gcc") is None:
            raise StackError("gcc is not installed: apt-get install gcc (the slirp pump is built with it)")
        agent = cls.agent_path()
        if cls.built():
            return
        agent.parent.mkdir(parents=True, exist_ok=True)
        # Not pkg-config: slirp.pc requires glib-2.0.pc, which libslirp-dev does
        # not pull in, and the pump uses no glib.
        cmd = ["gcc", "-O2", "-Wall", "-Wextra", "-o", str(agent), str(SOURCE), "-lslirp"]
        print(f"setup: building {agent.relative_to(BUILD.parent)} ({' '.join(cmd)})", flush=True)
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            raise StackError(f"building the slirp pump failed: {r.stderr.strip().splitlines()[-1] if r.stderr else r.returncode}")

