"""libslirp 4.7 (Debian libslirp0), the user-mode network of QEMU and of
rootless containers, with the tester as its guest.

Rules of this file:
- The stack under test is slirp's guest-facing TCP (4.4BSD-derived,
  tcp_input.c, tcp_output.c, tcp_timer.c). The pump (slirp_agent.c next to
  this file, built into build/slirp-agent by `python3 -m harness.setup
  --stack slirp`) runs libslirp in the case's namespace on `tap0`: slirp
  owns 198.18.0.1 and 2001:2::1, the tester is its guest at .2 / ::2.
- slirp's application is the host: what a guest connects to becomes a
  connect() to the host's loopback, and a host forwarding rule turns a
  host connect() into a connection slirp opens towards the guest. So the
  app-control protocol is served here, in the tester, by a SocketHost whose
  sockets live in the case's namespace (SlirpHost): `listen` listens on
  127.0.0.1 / ::1, `connect` adds a forwarding rule to the guest's address
  and port and connects to it, bound to the port slirp then uses on the
  wire. The pump's control lines (hostfwd, connections) are its own.
- Socket options act on those host sockets, not on slirp's TCP: only the
  ones whose effect slirp carries to the guest are offered (SO_LINGER: an
  abortive close is read as ECONNRESET, and slirp resets the guest's
  connection, soread -> tcp_drop; SO_REUSEADDR). Every other one answers
  EOPNOTSUPP naming why, and the case is skipped. Nothing is tunable: slirp's
  timers and limits are compiled in (no `sysctl` capability).
- TCP states are slirp's own (slirp_connection_info, misc.c): capability
  `state`. It prints IPv4 addresses only ("TODO: IPv6"): for IPv6 the states
  and ports are slirp's and the addresses are left out (None).
"""
from __future__ import annotations

import itertools
import json
import shutil
import socket
import subprocess
from pathlib import Path

from . import ADDRESSES, APP, STATE, StackError
from ..agent import App, AppError, SocketHost, StreamTransport
from ..setup import apt_install, package_version
from .tap import BUILD, TapStack

PACKAGES = ("libslirp-dev", "libslirp0")
SOURCE = Path(__file__).with_name("slirp_agent.c")
HEADER = Path("/usr/include/slirp/libslirp.h")
LOOPBACK = {"ipv4": "127.0.0.1", "ipv6": "::1"}
# Host ports of the forwarding rules: above the namespace's ephemeral range
# (32768-60999) and the tester's ports, so a port in slirp's connection
# table says by itself whether it is a rule's.
FORWARD_PORTS = range(61000, 65536)
# slirp_connection_info's state names -> RFC 9293's.
STATES = {"SYN_SENT": "SYN-SENT", "SYN_RCVD": "SYN-RECEIVED", "ESTABLISHED": "ESTABLISHED",
          "CLOSE_WAIT": "CLOSE-WAIT", "FIN_WAIT_1": "FIN-WAIT-1", "CLOSING": "CLOSING",
          "LAST_ACK": "LAST-ACK", "FIN_WAIT_2": "FIN-WAIT-2", "TIME_WAIT": "TIME-WAIT",
          "LISTEN": "LISTEN", "CLOSED": "CLOSED"}
# Socket options whose effect slirp carries to its guest-facing TCP.
CARRIED = {"SO_REUSEADDR", "SO_LINGER"}
NOT_CARRIED = ("it would set the host socket that slirp proxies, not slirp's TCP, whose timers, "
               "buffers and options are compiled in (libslirp tcp_timer.h, tcp.h)")
KEEPALIVE = ("slirp sends no keep-alives to the guest: slirp_do_keepalive (slirp.c) is false and "
             "not exported, so tcp_timers only re-arms the keep-alive timer")


class SlirpHost(SocketHost):
    """The host side of slirp: the app-control protocol on this namespace's
    loopback sockets, with slirp's forwarding rules and connection table."""

    stack = "slirp"

    def __init__(self, make_socket, pump: StreamTransport, family: str):
        super().__init__(make_socket)
        self.pump = pump
        self.family = family
        self.ports = itertools.count(FORWARD_PORTS.start)
        self.forwarded: dict[int, int] = {}      # rule's host port -> the client's port (slirp's on the wire)

    def control(self, line: str) -> dict:
        reply = json.loads(self.pump.exchange(line, line.split()[0]))
        if not reply.get("ok"):
            raise AppError(reply.get("error", "EIO"), reply.get("message", ""))
        return reply

    def op_hello(self, **_):
        info = self.control("hello")
        return dict(super().op_hello(), options=sorted(CARRIED), system=f"libslirp {info['libslirp']}")

    @staticmethod
    def _refuse(name: str) -> None:
        if name not in CARRIED:
            why = KEEPALIVE if "KEEP" in name else NOT_CARRIED
            raise AppError("EOPNOTSUPP", f"{name} on slirp: {why}")

    def op_setsockopt_on(self, s, name, value) -> None:
        self._refuse(name)
        SocketHost.op_setsockopt_on(s, name, value)

    def op_getsockopt(self, id, name):
        self._refuse(name)
        return super().op_getsockopt(id, name)

    def op_listen(self, family, address, port, backlog=16, options=None):
        """A guest's SYN to slirp's address and `port` makes slirp connect to
        the host's loopback on that port (sotranslate_out). The backlog is
        the host's largest: the accept queue is the host kernel's, not
        slirp's, and a full one would hold slirp's SYN-ACK back by the host
        kernel's own SYN retransmissions (1 s and more)."""
        return super().op_listen(family, LOOPBACK[family], port, max(int(backlog), socket.SOMAXCONN), options)

    def op_connect(self, family, address, port, bind=None, options=None):
        """A forwarding rule from a loopback port to the guest's address and
        port, and a connect() to it: slirp accepts it and opens the
        connection to the guest from its own address and the client's port
        (tcp_connect, sotranslate_accept)."""
        loop = LOOPBACK[family]
        rule = next(self.ports, None)
        if rule is None:
            raise AppError("EADDRNOTAVAIL", f"no forwarding ports left ({FORWARD_PORTS})")
        self.control(f"hostfwd {loop} {rule} {address} {int(port)}")
        out = super().op_connect(family, loop, rule, [loop, int(bind[1])] if bind else None, options)
        self.forwarded[rule] = self._sock(out["id"]).getsockname()[1]
        return out

    def op_state(self, port=None):
        """slirp's TCP control blocks (slirp_connection_info): one line each,
        `TCP[STATE] FD SRC SPORT DST DPORT RECVQ SENDQ`. For a connection the
        guest opened, SRC is the guest and DST what it connected to (slirp's
        side); for one a forwarding rule opened, SRC is the host socket slirp
        accepted (the rule's loopback port) and DST the guest."""
        out = []
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

    def op_bye(self):
        self.close_all()
        return {}


class SlirpStack(TapStack):
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
        if agent.exists() and agent.stat().st_mtime >= SOURCE.stat().st_mtime:
            return
        agent.parent.mkdir(parents=True, exist_ok=True)
        # Not pkg-config: slirp.pc requires glib-2.0.pc, which libslirp-dev does
        # not pull in, and the pump uses no glib.
        cmd = ["gcc", "-O2", "-Wall", "-Wextra", "-o", str(agent), str(SOURCE), "-lslirp"]
        print(f"setup: building {agent.relative_to(BUILD.parent)} ({' '.join(cmd)})", flush=True)
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            raise StackError(f"building the slirp pump failed: {r.stderr.strip().splitlines()[-1] if r.stderr else r.returncode}")

