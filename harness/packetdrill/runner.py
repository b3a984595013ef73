"""Running a packetdrill script against a stack under test.

Rules of this file:
- The script's local side is the SUT: its system calls go to the stack's
  application control (harness.agent's protocol, through the Stack's App),
  its outbound packets are what the SUT must send. The remote side is the
  tester: one Peer per connection reads the Trace (its cursor is
  packetdrill's sniffer queue: frames of the connection examined in order,
  never flushed), and inbound packets go out on the Stack's Link. Nothing
  here opens a socket or a device of its own.
- A script ends in one of three ways: it passes (every line checked); it
  fails with a ScriptFailure naming `<script>:<line>`, what the line
  expected and what was seen (a ConformanceFailure, so the report shows it
  like any case); or it is skipped with Unsupported, naming the construct
  and its line, before or while it runs, when the stack or this
  interpreter cannot do what the line needs. Never a pass that did not
  check its lines.
- Times follow packetdrill (run.c): absolute and relative times, ranges,
  `*`, blocking calls judged at their return; tolerance = max(
  --tolerance_usecs, --tolerance_percent of the interval from the previous
  event), plus the stack's documented timer granularity. Outbound times are
  the Link's kernel timestamps. Unlike packetdrill, the tester's own
  lateness is never the SUT's fault: a late inbound packet or system call is
  not a failure, and every later expectation accepts the SUT counting from
  either the time the script planned or the time the tester acted
  (`Clock`). So a loaded machine moves no verdict that the SUT did not.
- Unexpected outbound packets follow packetdrill: none is required to be
  absent, a stray one is compared with the next outbound line (and fails
  it), frames of other connections are ignored.

Theory of operation: `Runner.run()` checks the script against what the
stack offers (`precheck`: the agent's hello lists its operations, options
and flags; a script needing more is skipped before anything is sent), runs
the init command, then each event in order: it waits until the event's
time, performs it (inject, call, command, snapshot) or waits for the
outbound packet with a deadline and judges it, and records when it really
happened. A blocking call (`...END`) runs on a thread while later events
go on; calls to the agent never overlap (one request at a time). At the
end the %{ }% blocks run in order over their TCP_INFO snapshots.
"""
from __future__ import annotations

import base64
import os
import re
import shlex
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

from scapy.layers.inet import ICMP, IP, TCP, IPerror, TCPerror, UDPerror
from scapy.layers.inet6 import ICMPv6DestUnreach, ICMPv6PacketTooBig, ICMPv6ParamProblem, ICMPv6TimeExceeded, \
    IPerror6, IPv6, TCPerror as TCPerror6

from ..agent import AppError
from ..peer import Peer
from ..stacks import StackError
from ..verdict import ConformanceFailure, TimingFailure, Tolerance
from . import ast
from .packets import MOD, Flow, Live, PacketError, aggregate, continues, inbound_tcp, mismatches
from .symbols import EPOLL_FLAGS, ERRNO, MSG_FLAGS, OPTION_NAME, POLL_EVENTS, SYMBOLS, names_of

SPIN = 0.0002                  # the last stretch before an event's time is spun, not slept
ANY_TIME_LIMIT = 180.0
PATIENCE = 0.5                 # how long a call expected to succeed waits for the SUT to take in our packets         # a `*` packet has no deadline in packetdrill; its runner kills a script after 180 s
O_RDWR, O_NONBLOCK = 0x2, 0o4000
FD_CALLS = ("socket", "accept", "open", "epoll_create")


class Unsupported(Exception):
    """The script needs what the stack or this interpreter lacks: skip it,
    naming the construct and its line."""

    def __init__(self, construct: str, line: int = 0):
        self.construct = construct
        self.line = line
        super().__init__(construct)


class ScriptFailure(ConformanceFailure):
    """A line of the script did not hold: requirement = `<script>:<line>`."""

    def __init__(self, path: str, line: int, what: str, expected: str, seen: str):
        self.line = line
        super().__init__(f"{path}:{line}", what, expected, seen)


class ScriptTimingFailure(TimingFailure):
    def __init__(self, path: str, line: int, what: str, expected: str, seen: str):
        self.line = line
        super().__init__(f"{path}:{line}", what, expected, seen)


# --- configuration: the script's options and the command line's -----------------------------

IGNORED_OPTIONS = {   # accepted and without effect here (addresses are the suite's; see README)
    "local_ip", "remote_ip", "gateway_ip", "netmask_ip", "local_linklocal_ip", "verbose", "v", "send_omit_free",
    "dry_run", "init_scripts", "speed", "code_command", "code_format", "code_sockopt", "tun_dev",
    "non_fatal",
}
UNSUPPORTED_OPTIONS = {
    "wire_client": "wire mode", "wire_server": "wire mode", "wire_server_at": "wire mode",
    "wire_server_ip": "wire mode", "wire_server_port": "wire mode", "wire_client_dev": "wire mode",
    "wire_server_dev": "wire mode", "so_filename": "a shared-object stack (--so_filename)",
    "so_flags": "a shared-object stack", "is_anyip": "AnyIP (--is_anyip)", "psp_udp_port": "PSP encapsulation",
}


@dataclass
class Config:
    tolerance_usecs: float = 4000
    tolerance_percent: float = 12.5
    tcp_ts_tick_usecs: int = 0
    tcp_ts_ecr_scaled: bool = False
    strict_segments: bool = False
    mss: int = 0
    mtu: int | None = None
    bind_port: int = 8080
    connect_port: int = 8080
    ip_version: str | None = None
    defines: dict = field(default_factory=dict)

    @classmethod
    def from_options(cls, options: list[tuple[str, str | None, int]]) -> "Config":
        """packetdrill's options, the script's first and the command line's
        after them (which win): [(name, value or None, line)]."""
        c = cls()
        for name, value, line in options:
            c.apply(name, value, line)
        return c

    def apply(self, name: str, value: str | None, line: int = 0) -> None:
        def number(kind=int):
            try:
                v = kind(value)
            except (TypeError, ValueError):
                raise OptionError(line, f"bad --{name}: {value}") from None
            return v
        if name == "tolerance_usecs":
            self.tolerance_usecs = number()
            if self.tolerance_usecs <= 0:
                raise OptionError(line, f"bad --tolerance_usecs: {value} (must be > 0)")
        elif name == "tolerance_percent":
            self.tolerance_percent = number(float)
            if not 0 <= self.tolerance_percent <= 100:
                raise OptionError(line, f"bad --tolerance_percent: {value} (0 to 100)")
        elif name == "tcp_ts_tick_usecs":
            self.tcp_ts_tick_usecs = number()
        elif name == "tcp_ts_ecr_scaled":
            self.tcp_ts_ecr_scaled = True
        elif name == "strict_segments":
            self.strict_segments = True
        elif name == "mss":
            self.mss = number()
        elif name == "mtu":
            self.mtu = number()
        elif name == "bind_port":
            self.bind_port = number()
        elif name == "connect_port":
            self.connect_port = number()
        elif name == "ip_version":
            if value not in ("ipv4", "ipv6", "ipv4-mapped-ipv6"):
                raise OptionError(line, f"bad --ip_version: {value} (ipv4, ipv6 or ipv4-mapped-ipv6)")
            self.ip_version = value
        elif name in ("define", "D"):
            if not value or "=" not in value:
                raise OptionError(line, f"bad --define: {value} (SYM=VALUE)")
            k, _, v = value.partition("=")
            self.defines[k] = v
        elif name in IGNORED_OPTIONS:
            pass
        elif name in UNSUPPORTED_OPTIONS:
            raise Unsupported(f"--{name}: {UNSUPPORTED_OPTIONS[name]}", line)
        else:
            raise OptionError(line, f"option '{name}' unknown")

    def families(self) -> tuple:
        if self.ip_version == "ipv4":
            return ("ipv4",)
        if self.ip_version == "ipv6":
            return ("ipv6",)
        return ("ipv4", "ipv6")


class OptionError(ValueError):
    def __init__(self, line: int, message: str):
        self.line = line
        super().__init__(message)


# --- time: packetdrill's schedule, judged without blaming the SUT for the tester -----------

class Clock:
    """Expected times of events, as packetdrill computes them (run.c), on
    the Link's clock (monotonic seconds).

    An event's expected time is a window [lo, hi]: lo as if the tester had
    been punctual, hi from when it really acted. After an outbound packet
    both are its timestamp; after a tester action (inbound packet, call,
    command) lo is its planned time and hi its actual one, so a SUT that
    counted from either is on time. Absolute times carry the tester's
    accumulated lateness (`slip`) in hi the same way."""

    def __init__(self, t0: float, tolerance: Tolerance):
        self.t0 = t0
        self.tolerance = tolerance
        self.lo = self.hi = t0
        self.slip = 0.0
        self.prev_script = 0.0         # script time of the previous event
        self.prev_planned = t0         # when the previous tester action was planned (inbound bursts)
        self.prev_inbound = False

    def window(self, t: ast.Time, inbound_after_inbound: bool = False) -> tuple[float, float, float, float]:
        """(lo, hi, interval, script time) of an event at `t`: the window
        start and end on the live clock (a range widens hi to its end), the
        script interval from the previous event (for the percentage), and
        the event's script time."""
        if t.kind in (ast.RELATIVE, ast.RELATIVE_RANGE):
            lo, hi = self.lo + t.start, self.hi + t.start
            if inbound_after_inbound:
                lo = hi = self.prev_planned + t.start
            if t.end is not None:
                hi = self.hi + t.end
            interval = (t.end if t.end is not None else t.start)
            script = (self.lo - self.t0) + t.start
        elif t.kind == ast.ANY:
            now = time.monotonic()
            return now, now, 0.0, now - self.t0
        else:
            lo = self.t0 + t.start
            hi = self.t0 + (t.end if t.end is not None else t.start) + self.slip
            interval = max(0.0, (t.end if t.end is not None else t.start) - self.prev_script)
            script = t.start
        return lo, hi, interval, script

    def allowed(self, interval: float) -> float:
        return self.tolerance.allowed(interval)

    def tester_acted(self, planned: float, lo: float, actual: float, script: float, inbound: bool) -> None:
        self.slip += max(0.0, actual - planned)
        self.lo, self.hi = min(lo, actual), max(actual, lo)
        self.prev_planned = planned
        self.prev_script = script
        self.prev_inbound = inbound

    def sut_acted(self, actual: float, script: float) -> None:
        self.lo = self.hi = actual
        self.prev_script = script
        self.prev_inbound = False

    def script_time(self, live: float) -> float:
        return live - self.t0


def runqueue_wait() -> float:
    """Seconds this thread has spent runnable but waiting for a CPU
    (/proc/thread-self/schedstat), or 0 where the kernel does not say."""
    try:
        with open("/proc/thread-self/schedstat") as f:
            return int(f.read().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return 0.0


def wait_until(when: float) -> None:
    """Sleep until shortly before `when`, then spin (packetdrill's wait_for_event)."""
    while True:
        left = when - time.monotonic()
        if left <= 0:
            return
        if left > SPIN:
            time.sleep(left - SPIN)


# --- the script's sockets -----------------------------------------------------------------

@dataclass
class Conn:
    """One TCP connection of the script: its Peer and packetdrill's numbers."""
    peer: Peer
    flow: Flow
    passive: bool
    fd: "Fd | None" = None
    accepted: bool = False


@dataclass
class Fd:
    num: int
    kind: str = "socket"                 # socket, epoll
    family: str = "ipv4"
    id: int | None = None                # the agent's socket id, once it exists there
    nonblocking: bool = False
    cloexec: bool = False
    pending: dict = field(default_factory=dict)      # options set before listen/connect: name -> value
    pending_lines: dict = field(default_factory=dict)
    bound: bool = False
    listening: bool = False
    conn: Conn | None = None
    interest: dict = field(default_factory=dict)     # epoll: fd -> (events, (data kind, data value))


@dataclass
class Blocking:
    event: ast.Event
    thread: threading.Thread
    started: float
    window: tuple                        # (lo, hi, interval) of the expected return
    slip: float = 0.0                    # the tester's lateness so far when the call started
    issued: float | None = None          # when the thread made the call
    outcome: list = field(default_factory=list)       # [(result, errno name | None, returned at)] or [exc]
    done: threading.Event = field(default_factory=threading.Event)


class Runner:
    """Runs one script once, for one family, against a started Stack."""

    def __init__(self, script: ast.Script, stack, config: Config, *, path: str, rng, granularity: float = 0.0,
                 floor: tuple = (0.0, 0.0), commands: str = "sysctl", set_tunable=None,
                 script_dir: str | None = None, set_mtu=None):
        self.script = script
        self.stack = stack
        self.app = stack.app
        self.link = stack.link
        self.trace = stack.trace
        self.family = stack.family
        self.config = config
        self.path = path
        self.rng = rng
        # packetdrill's rule, max(--tolerance_usecs, --tolerance_percent of the interval), with the
        # suite's --tolerance-ms/--tolerance-pct as floors (README, "packetdrill scripts")
        self.tolerance = Tolerance(max(config.tolerance_usecs / 1e6, floor[0]),
                                   max(config.tolerance_percent / 100, floor[1]), granularity)
        self.commands = commands
        self.set_tunable = set_tunable
        self.script_dir = script_dir
        self.set_mtu = set_mtu
        self.fds: dict[int, Fd] = {}
        self.conns: list[Conn] = []
        self.conn: Conn | None = None      # the connection packets go to (packetdrill's socket under test)
        self.sut_listening = False         # the socket under test is a listener: an inbound SYN opens a child
        self.blocking: Blocking | None = None
        self.app_lock = threading.Lock()
        self.snapshots: list = []          # (line, code, variables)
        self.hello: dict = {}
        self.notes: list[str] = []         # what the report should say (tester lateness, ignored commands)
        self.clock: Clock | None = None
        self.current: ast.Event | None = None
        self.settle = self.tolerance.absolute     # how long a call that must not block waits for the SUT
        self._blocking_pending = False            # the blocking thread's next agent call is the one that blocks
        self._blocking_returned: float | None = None
        self._blocked = threading.Event()
        self._switch = sys.getswitchinterval()
        self._patient = False

    # --- outcome helpers ---------------------------------------------------------------------------
    def fail(self, ev: ast.Event, what: str, expected: str, seen: str):
        raise ScriptFailure(self.path, ev.line, what, expected, seen)

    def unsupported(self, what: str, ev: ast.Event | None = None):
        raise Unsupported(what, ev.line if ev is not None else 0)

    # --- the run -----------------------------------------------------------------------------------------
    def run(self) -> None:
        self.hello = self._call("hello")
        self.precheck()
        if self.script.init is not None:
            self.command(self.script.init, None)
        self.clock = Clock(time.monotonic(), self.tolerance)
        done = False
        try:
            for n, ev in enumerate(self.script.events):
                if n == 0 and not (ev.time.start == 0 and ev.time.kind in (ast.ABSOLUTE, ast.RELATIVE)):
                    self.fail(ev, "first event should be at time 0", "time 0", ev.time.text())
                self.current = ev
                self.step(ev)
            self.finish_blocking(final=True)
            self.run_code()
            done = True
        finally:
            if self.blocking is not None:
                self.blocking.done.wait(5.0)
            sys.setswitchinterval(self._switch)
            # packetdrill runs the cleanup command on every way out, if an init command ran
            if self.script.cleanup is not None and self.script.init is not None:
                try:
                    self.command(self.script.cleanup, None, cleanup=True)
                except (ScriptFailure, Unsupported):
                    if done:
                        raise

    def step(self, ev: ast.Event) -> None:
        a = ev.action
        if isinstance(a, ast.TcpPacket):
            if a.inbound:
                self.inbound(ev, a)
            else:
                self.outbound(ev, a)
        elif isinstance(a, ast.IcmpPacket):
            self.icmp(ev, a)
        elif isinstance(a, ast.Syscall):
            self.syscall(ev, a)
        elif isinstance(a, ast.Command):
            lo, hi, interval, script = self.clock.window(ev.time)
            wait_until(hi)
            t = time.monotonic()
            self.command(a, ev)
            self.clock.tester_acted(hi, lo, t, script, False)
        elif isinstance(a, ast.Code):
            lo, hi, interval, script = self.clock.window(ev.time)
            wait_until(hi)
            t = time.monotonic()
            self.snapshot(ev, a)
            self.clock.tester_acted(hi, lo, t, script, False)
        else:
            self.unsupported(f"{type(a).__name__} lines", ev)

    # --- what the stack must offer --------------------------------------------------------------------
    def precheck(self) -> None:
        """Skip, before anything is sent, a script that needs what the stack's
        agent lacks or this interpreter cannot do."""
        ops = set(self.hello.get("ops", ()))
        options = set(self.hello.get("options", ()))
        flags = set(self.hello.get("flags", ()))
        if self.config.ip_version == "ipv4-mapped-ipv6":
            self.unsupported("--ip_version=ipv4-mapped-ipv6 (IPv4-mapped IPv6 sockets)")
        if self.config.mtu is not None and self.config.mtu != self.stack.mtu:
            if self.set_mtu is None:
                self.unsupported(f"--mtu={self.config.mtu} (the {self.stack.name} stack's link has MTU "
                                 f"{self.stack.mtu}, which the suite cannot change)")
            self.set_mtu(self.config.mtu)
        if self.script.init is not None:
            self.check_command(self.script.init, None)
        for ev in self.script.events:
            a = ev.action
            if isinstance(a, ast.UdpPacket):
                self.unsupported("UDP packets", ev)
            if isinstance(a, ast.IcmpPacket) and not a.inbound:
                self.unsupported("outbound ICMP packets", ev)
            if isinstance(a, (ast.TcpPacket, ast.IcmpPacket)) and getattr(a, "encap", ()):
                self.unsupported("encapsulation (outer IP headers, PSP)", ev)
            if isinstance(a, ast.TcpPacket) and a.ip.flowlabel is not None and self.family == "ipv4":
                self.unsupported("an IPv6 flow label in an IPv4 run", ev)
            if isinstance(a, ast.Code) and "TCP_INFO" not in options:
                self.unsupported(f"%{{ }}% code blocks (they read TCP_INFO, which the {self.stack.name} agent "
                                 f"does not offer)", ev)
            if isinstance(a, ast.Command):
                self.check_command(a, ev)
            if isinstance(a, ast.Syscall):
                self.check_syscall(ev, a, ops, options, flags)

    def check_syscall(self, ev, a: ast.Syscall, ops: set, options: set, flags: set) -> None:
        if a.name not in SYSCALLS:
            self.unsupported(f"system call {a.name}()" + (f" ({UNSUPPORTED_CALLS[a.name]})"
                                                         if a.name in UNSUPPORTED_CALLS else ""), ev)
        need = {"poll": "poll", "epoll_wait": "poll", "ioctl": "ioctl"}.get(a.name)
        if need and need not in ops:
            self.unsupported(f"{a.name}() (the {self.stack.name} agent has no '{need}' operation)", ev)
        if a.end is not None and a.name == "connect" and "poll" not in ops:
            self.unsupported(f"a blocking connect() (the {self.stack.name} agent has no 'poll' operation)", ev)
        if a.name in ("setsockopt", "getsockopt") and len(a.args) >= 3:
            name = self.option_name(a.args[1], a.args[2], ev)
            if name == "SO_ERROR" and a.name == "getsockopt":
                return
            if name not in options:
                self.unsupported(f"socket option {name} (the {self.stack.name} agent does not offer it)", ev)
        if a.name == "epoll_ctl" and len(a.args) == 4 and isinstance(a.args[3], ast.Struct):
            events = self.eval(a.args[3].get("events"), ev)
            special = events & sum(EPOLL_FLAGS.values())
            if special:
                self.unsupported(f"epoll {names_of(special, EPOLL_FLAGS)} (epoll is emulated over poll: "
                                 f"level-triggered only)", ev)
        for flagarg in self.flag_args(a):
            bits = self.eval(flagarg, ev)
            for name, bit in MSG_FLAGS.items():
                if bits & bit and name not in ("MSG_DONTWAIT",):
                    if name in ("MSG_FASTOPEN",):
                        self.unsupported("TCP Fast Open from the client (MSG_FASTOPEN)", ev)
                    if name in ("MSG_ERRQUEUE", "MSG_ZEROCOPY"):
                        self.unsupported(f"{name} (error queues and zerocopy)", ev)
                    if name not in flags:
                        self.unsupported(f"message flag {name} (the {self.stack.name} agent does not offer it)", ev)
        if a.name in ("sendmsg", "recvmsg") and len(a.args) >= 2 and isinstance(a.args[1], ast.Struct):
            control = a.args[1].get("msg_control")
            if isinstance(control, ast.List) and control.items:
                self.unsupported(f"{a.name}() with control messages (msg_control)", ev)

    @staticmethod
    def flag_args(a: ast.Syscall) -> list:
        index = {"send": 3, "recv": 3, "sendto": 3, "recvfrom": 3, "sendmsg": 2, "recvmsg": 2}.get(a.name)
        return [a.args[index]] if index is not None and len(a.args) > index else []

    # --- expressions ------------------------------------------------------------------------------
    def eval(self, e, ev=None) -> int:
        """An integer expression: numbers, symbols (Linux values) and `|`."""
        if isinstance(e, ast.Int):
            return e.value
        if isinstance(e, ast.Word):
            if e.name in SYMBOLS:
                return SYMBOLS[e.name]
            self.fail(ev or self.current, f"unknown symbol: '{e.name}'", "a known symbol", e.name)
        if isinstance(e, ast.Or):
            return self.eval(e.lhs, ev) | self.eval(e.rhs, ev)
        if isinstance(e, ast.Struct) and e.kind == "inet_addr":
            return int.from_bytes(bytes(int(x) for x in e.get("addr").split(".")), "little")
        if isinstance(e, ast.List) and len(e.items) == 1:
            return self.eval(e.items[0], ev)
        self.unsupported(f"the expression {e.text()} where an integer is expected", ev or self.current)

    def option_name(self, level_e, name_e, ev) -> str:
        if isinstance(name_e, ast.Word):
            return name_e.name
        level, num = self.eval(level_e, ev), self.eval(name_e, ev)
        if (level, num) in OPTION_NAME:
            return OPTION_NAME[(level, num)]
        self.unsupported(f"socket option ({level}, {num})", ev)

    # --- the agent ----------------------------------------------------------------------------------
    def _call(self, op: str, **args) -> dict:
        """One agent request; never two at once (a blocking call may be
        running on its thread)."""
        with self.app_lock:
            return self.app.call(op, **args)

    def call(self, ev, op: str, **args):
        """An agent request for a system call: (reply, None) or (None, errno name).
        The blocking thread's call that waits notes when it came back: the
        time the system call returned."""
        waits = self._blocking_pending and threading.current_thread() is not threading.main_thread()
        queued = runqueue_wait() if waits else 0.0
        try:
            return self._call(op, **args), None
        except AppError as e:
            if e.error in ("ETIMEDOUT", "ECONNRESET") and "agent" in e.message:
                raise                                   # the agent itself is gone: a harness error
            if e.error == "EOPNOTSUPP" and getattr(ev.action, "errno", None) != "EOPNOTSUPP":
                # what the stack's agent cannot do, unless the script expects that very error
                raise Unsupported(f"{getattr(ev.action, 'name', op)}(): {e.message}", ev.line) from None
            return None, e.error
        finally:
            if waits:
                # when the call came back, less the time this thread then waited
                # for a CPU (a busy machine's, not the SUT's)
                self._blocking_returned = time.monotonic() - max(0.0, runqueue_wait() - queued)
                self._blocking_pending = False

    # --- packets in ------------------------------------------------------------------------------------
    def new_conn(self, passive: bool, port: int, sut_port: int | None) -> Conn:
        peer = Peer(self.link, self.family, self.stack.peer_addr, self.stack.sut_addr, port, sut_port, self.rng,
                    requirement=self.path)
        peer.cursor = len(self.trace.entries)
        conn = Conn(peer, Flow(), passive)
        self.conns.append(conn)
        return conn

    def remote_port(self) -> int:
        """A port of the tester's for a new passive connection: ephemeral, or
        one the stack can reach where it reaches only some (passt's forwards)."""
        ports = getattr(self.stack, "peer_ports", None)
        return self.rng.choice(ports) if ports else self.rng.randrange(32768, 61000)

    def connect_port(self) -> int:
        """The tester's port the SUT connects to: --connect_port, unless the
        stack reaches only some ports (the live port is the interpreter's
        business: a script never sees it)."""
        ports = getattr(self.stack, "peer_ports", None)
        if ports and self.config.connect_port not in ports:
            return ports[0]
        return self.config.connect_port

    def inbound(self, ev: ast.Event, pkt: ast.TcpPacket) -> None:
        if pkt.syn and "." not in pkt.flags and (self.conn is None or self.sut_listening):
            port = pkt.sport or self.remote_port()
            self.conn = self.new_conn(True, port, pkt.dport or self.config.bind_port)
            self.sut_listening = False
        if self.conn is None:
            self.conn = self.new_conn(True, pkt.sport or self.remote_port(),
                                      pkt.dport or self.config.bind_port)
        conn = self.conn
        peer = conn.peer
        lo, hi, interval, script = self.clock.window(ev.time, self.clock.prev_inbound)
        try:
            packets = self.build(pkt, conn)
        except PacketError as e:
            self.fail(ev, str(e), pkt.text(), "no live packet could be built")
        wait_until(hi)
        planned = hi
        for p in packets:                   # (--mss: several pieces; the event is done with the last)
            seg = self.link.send(bytes(p))
        if pkt.syn and conn.flow.remote_isn is not None:
            peer.iss = conn.flow.remote_isn
        self.clock.tester_acted(planned, lo, seg.t, script, True)
        self.note_late(ev, planned, seg.t, "inbound packet")

    def build(self, pkt: ast.TcpPacket, conn: Conn) -> list:
        peer = conn.peer
        one = inbound_tcp(pkt, conn.flow, self.family, peer.addr, peer.sut_addr, peer.port,
                          peer.sut_port or self.config.bind_port, self.config.tcp_ts_ecr_scaled)
        mss = self.config.mss
        if not mss or pkt.length <= mss:
            return [one]
        out = []
        tcp = one[TCP]
        flags = int(tcp.flags)
        payload = bytes(tcp.payload)
        for off in range(0, len(payload), mss):
            p = one.copy()
            t = p[TCP]
            t.remove_payload()
            last = off + mss >= len(payload)
            t.seq = (tcp.seq + off) % MOD
            t.flags = flags if last else flags & ~0x09       # FIN and PSH only on the last
            del t.chksum
            if IP in p:
                del p[IP].len
                del p[IP].chksum
            else:
                del p[IPv6].plen
            out.append(p / payload[off:off + mss])
        return out

    def icmp(self, ev: ast.Event, pkt: ast.IcmpPacket) -> None:
        conn = self.conn
        if conn is None:
            self.fail(ev, "no matching socket for script packet", pkt.text(), "no connection yet")
        peer = conn.peer
        proto, start, length = pkt.echoed
        seq = (start + (conn.flow.local_isn_live or 0)) % MOD
        sport, dport = peer.sut_port or self.config.bind_port, peer.port
        if self.family == "ipv4":
            types = {"echo_reply": 0, "unreachable": 3, "source_quench": 4, "redirect": 5, "echo_request": 8,
                     "time_exceeded": 11, "parameter_problem": 12}
            codes = {"net_unreachable": 0, "host_unreachable": 1, "protocol_unreachable": 2, "port_unreachable": 3,
                     "frag_needed": 4, "source_route_failed": 5, "net_unknown": 6, "host_unknown": 7,
                     "source_host_isolated": 8, "net_prohibited": 9, "host_prohibited": 10,
                     "net_unreachable_for_tos": 11, "host_unreachable_for_tos": 12, "packet_filtered": 13,
                     "precedence_violation": 14, "precedence_cutoff": 15}
            itype = self.icmp_number(pkt.type, types, "type", ev)
            code = self.icmp_number(pkt.code, codes, "code", ev) if pkt.code else 0
            icmp = ICMP(type=itype, code=code)
            if pkt.mtu is not None:
                icmp.nexthopmtu = pkt.mtu
            quoted = IPerror(src=peer.sut_addr, dst=peer.addr, len=20 + 20 + length)
            inner = TCPerror(sport=sport, dport=dport, seq=seq) if proto == "tcp" else \
                UDPerror(sport=sport, dport=dport)
            p = IP(src=peer.addr, dst=peer.sut_addr, ttl=255) / icmp / quoted / inner
        else:
            quoted = IPerror6(src=peer.sut_addr, dst=peer.addr, plen=20 + length) / \
                TCPerror6(sport=sport, dport=dport, seq=seq)
            codes = {"net_unreachable": 0, "no_route": 0, "admin_prohibited": 1, "not_neighbour": 2,
                     "address_unreachable": 3, "port_unreachable": 4}
            if pkt.type == "packet_too_big":
                icmp = ICMPv6PacketTooBig(mtu=pkt.mtu or 1280)
            elif pkt.type == "unreachable":
                icmp = ICMPv6DestUnreach(code=self.icmp_number(pkt.code or "net_unreachable", codes, "code", ev))
            elif pkt.type == "time_exceeded":
                icmp = ICMPv6TimeExceeded(code=1 if pkt.code == "exceeded_frag_time" else 0)
            elif pkt.type == "parameter_problem":
                icmp = ICMPv6ParamProblem(code={"header_field": 0, "unknown_next_header": 1,
                                                "unknown_option": 2}.get(pkt.code or "header_field", 0))
            else:
                self.unsupported(f"ICMPv6 type {pkt.type}", ev)
            p = IPv6(src=peer.addr, dst=peer.sut_addr, hlim=255) / icmp / quoted
        lo, hi, interval, script = self.clock.window(ev.time, self.clock.prev_inbound)
        wait_until(hi)
        seg = self.link.send(bytes(p))
        self.clock.tester_acted(hi, lo, seg.t, script, True)

    def icmp_number(self, name: str, table: dict, what: str, ev) -> int:
        if name in table:
            return table[name]
        m = re.fullmatch(rf"{what}_(\d+)", name or "")
        if m:
            return int(m.group(1))
        self.fail(ev, f"unknown ICMP {what} {name!r}", f"one of {', '.join(table)} or {what}_N", name)

    def note_late(self, ev, planned: float, actual: float, what: str) -> None:
        late = actual - planned
        if late > self.clock.allowed(0):
            self.notes.append(f"line {ev.line}: the tester sent the {what} {late * 1000:.1f} ms late "
                              f"(not held against the SUT)")

    # --- packets out -----------------------------------------------------------------------------------
    def outbound(self, ev: ast.Event, pkt: ast.TcpPacket) -> None:
        conn = self.conn
        if conn is None:
            self.fail(ev, "no matching socket for script packet", pkt.text(), "no socket under test")
        peer = conn.peer
        lo, hi, interval, script = self.clock.window(ev.time)
        allowed = self.clock.allowed(interval)
        anytime = ev.time.kind == ast.ANY
        base = self.clock.hi
        limit = None if anytime else base + int(max(hi, base) - base) + 2.0        # packetdrill's sniff limit
        parts: list[Live] = []
        while True:
            left = None if limit is None else max(0.0, limit - time.monotonic())
            seg = peer.next_segment(within=left if left is not None else ANY_TIME_LIMIT)
            if seg is None:
                if parts:
                    break
                self.fail(ev, "Timed out waiting for packet", f"{pkt.text()}  (at {self.when(lo, hi)})",
                          f"nothing from the SUT on this connection"
                          f"{' within %.3f s' % (limit - base) if limit else ''}")
            live = Live.of(seg)
            if parts:
                why = continues(parts[-1], live)
                if why is not None:
                    peer.cursor -= 1                         # leave it for the next line
                    break
            parts.append(live)
            total = sum(len(p.payload) for p in parts)
            if self.config.strict_segments or total >= pkt.length or len(live.payload) == 0:
                break
            if len(parts) > 1 and len(parts[-2].payload) != len(live.payload):
                break
        live = aggregate(parts) if len(parts) > 1 else parts[0]
        # TS vals follow the SUT's clock: a tester late by `slip` makes them larger by that much
        ts_allowed = self.clock.allowed(script) * 1e6
        problems = mismatches(pkt, live, conn.flow, self.family, self.config.tcp_ts_tick_usecs, ts_allowed,
                              self.clock.slip * 1e6)
        if problems:
            seen = f"> {live.text(conn.flow, pkt)}  (script time {self.clock.script_time(live.t):.6f} s)"
            if len(parts) > 1:
                seen += f", {len(parts)} segments aggregated"
            self.fail(ev, "error handling packet: " + "; ".join(problems), pkt.text(), seen)
        conn.flow.learn_outbound(pkt, live)
        if pkt.syn and conn.flow.local_isn_live is not None:
            peer.irs = conn.flow.local_isn_live
        if not anytime and not (lo - allowed <= live.t <= hi + allowed):
            self.timing(ev, "outbound packet", lo, hi, allowed, live.t)
        self.clock.sut_acted(live.t, script if not anytime else self.clock.script_time(live.t))

    def when(self, lo: float, hi: float) -> str:
        a, b = self.clock.script_time(lo), self.clock.script_time(hi)
        return f"{a:.6f} s" if abs(b - a) < 1e-6 else f"{a:.6f}..{b:.6f} s"

    def timing(self, ev, what: str, lo: float, hi: float, allowed: float, actual: float) -> None:
        t = ev.time
        kind = "in relative time range" if t.kind == ast.RELATIVE_RANGE else \
            "in time range" if t.kind == ast.ABSOLUTE_RANGE else "at"
        slip = f" (the window includes {((hi - lo) * 1000):.1f} ms the tester was late)" \
            if t.end is None and hi - lo > 1e-6 else ""
        raise ScriptTimingFailure(
            self.path, ev.line, f"timing error: expected {what} {kind} {self.when(lo, hi)} but happened at "
            f"{self.clock.script_time(actual):.6f} s; tolerance {allowed:.6f} s{slip}",
            f"{ev.text()}  ({self.when(lo, hi)} +- {allowed:.3f} s)",
            f"{self.clock.script_time(actual):.6f} s ({(actual - (hi if actual > hi else lo)) * 1000:+.1f} ms)")

    # --- system calls --------------------------------------------------------------------------------------
    def syscall(self, ev: ast.Event, sc: ast.Syscall) -> None:
        if self.blocking is not None and not self.blocking.done.is_set():
            if sc.end is not None:
                # packetdrill waits a second for the first blocking call, then gives up
                if not self.blocking.done.wait(1.0):
                    self.fail(ev, "blocking system call while another blocking system call is already in progress",
                              sc.text(), f"line {self.blocking.event.line} still blocked")
            else:
                # The agent takes one request at a time, and the blocking call
                # may have more to ask once it wakes (connect: poll, then
                # SO_ERROR): this call waits until that one is over.
                self.finish_blocking(final=True)
        self.finish_blocking()
        lo, hi, interval, script = self.clock.window(ev.time)
        wait_until(hi)
        started = time.monotonic()
        if sc.end is not None:
            b = self.start_blocking(ev, sc, started)
            self.clock.tester_acted(hi, lo, b.issued or started, script, False)
            return
        result, err = self.perform(ev, sc, blocking=False)
        self.clock.tester_acted(hi, lo, started, script, False)
        self.check_result(ev, sc, result, err)

    def start_blocking(self, ev, sc: ast.Syscall, started: float) -> Blocking:
        # the call should return at END, on the same base as its start
        t_end = ast.Time(ast.RELATIVE if ev.time.relative else ast.ABSOLUTE, sc.end)
        lo, hi, interval, _ = self.clock.window(t_end)
        interval = max(0.0, sc.end - (ev.time.start if ev.time.kind != ast.ANY else 0.0))
        b = Blocking(ev, None, started, (lo, hi, interval), self.clock.slip)
        self._blocked = threading.Event()
        self._blocking_returned = None

        def body():
            b.issued = time.monotonic()
            try:
                result, err = self.perform(ev, sc, blocking=True, until=hi + self.clock.allowed(interval) + 2.0)
                b.outcome.append((result, err, self._blocking_returned or time.monotonic()))
            except BaseException as e:             # reported on the main thread
                b.outcome.append(e)
            finally:
                b.done.set()
                self._blocked.set()
        b.thread = threading.Thread(target=body, name=f"pkt-blocking-{ev.line}", daemon=True)
        self.blocking = b
        # The thread wakes when the SUT answers; with the default 5 ms GIL
        # switch interval it could wait that long behind the main thread.
        self._switch = sys.getswitchinterval()
        sys.setswitchinterval(0.0002)
        b.thread.start()
        # go on once the call is blocked in the agent (or done): the events
        # that follow are what unblocks it
        self._blocked.wait(5.0)
        return b

    def finish_blocking(self, final: bool = False) -> None:
        b = self.blocking
        if b is None:
            return
        if not b.done.is_set():
            if not final:
                return
            lo, hi, interval = b.window
            b.done.wait(max(0.0, hi + self.clock.allowed(interval) + 2.5 - time.monotonic()))
            if not b.done.is_set():
                self.fail(b.event, "the blocking system call has not returned (packetdrill: exiting while a "
                                   "blocking system call is in progress)", b.event.action.text(),
                          "the call has not returned")
        self.blocking = None
        sys.setswitchinterval(self._switch)
        out = b.outcome[0]
        if isinstance(out, BaseException):
            raise out
        result, err, returned = out
        self.check_result(b.event, b.event.action, result, err)
        lo, hi, interval = b.window
        hi += self.clock.slip - b.slip          # what unblocked it may have been sent late by the tester
        allowed = self.clock.allowed(interval)
        if not (lo - allowed <= returned <= hi + allowed):
            self.timing(b.event, "system call return", lo, hi, allowed, returned)

    def check_result(self, ev, sc: ast.Syscall, result: int, err: str | None) -> None:
        want = self.eval(sc.result, ev)
        got_text = f"{result}" + (f" with errno {ERRNO.get(err, '?')} ({err})" if err else "")
        if sc.name in FD_CALLS and want >= 0:
            ok = result >= 0
        else:
            ok = result == want
        if not ok:
            what = (f"Expected non-negative result but got {got_text}" if sc.name in FD_CALLS and want >= 0
                    else f"Expected result {want} but got {got_text}")
            self.fail(ev, f"runtime error in {sc.name} call: {what}", sc.text(), f"{sc.name}() = {got_text}")
        if sc.errno is not None:
            if sc.errno not in ERRNO:
                self.fail(ev, f"unknown errno symbol: '{sc.errno}'", sc.text(), sc.errno)
            if err != sc.errno:
                self.fail(ev, f"runtime error in {sc.name} call: Expected errno {ERRNO[sc.errno]} ({sc.errno}) but "
                              f"got {ERRNO.get(err, 0) if err else 0} ({err or 'none'})", sc.text(),
                          f"{sc.name}() = {got_text}")

    def fd(self, ev, e) -> Fd:
        n = self.eval(e, ev)
        if n not in self.fds:
            self.fail(ev, f"unable to find fd with script fd {n}", "an open script fd", str(n))
        return self.fds[n]

    def new_fd(self, ev, sc: ast.Syscall, replace: bool = False, **kw) -> Fd:
        """The script fd an fd-creating call's result names (accept may
        name one still open, as in packetdrill: the new one replaces it)."""
        n = self.eval(sc.result, ev)
        if n in self.fds and not replace:
            self.fail(ev, f"duplicate fd {n} in script", "a script fd not in use", str(n))
        f = Fd(n, family=self.family, **kw)
        if n >= 0:
            self.fds[n] = f
        return f

    def perform(self, ev, sc: ast.Syscall, blocking: bool, until: float | None = None) -> tuple[int, str | None]:
        fn = getattr(self, "sys_" + sc.name, None)
        if fn is None:
            self.unsupported(f"system call {sc.name}()", ev)
        args = sc.args
        if sc.name in ARGC and len(args) not in ARGC[sc.name]:
            self.fail(ev, f"Expected {' or '.join(map(str, ARGC[sc.name]))} args but got {len(args)}", sc.text(),
                      f"{len(args)} arguments")
        self._patient = not blocking and self.expects_success(ev, sc)
        return fn(ev, sc, args, blocking, until)

    def expects_success(self, ev, sc: ast.Syscall) -> bool:
        try:
            return self.eval(sc.result, ev) >= 0
        except (ScriptFailure, Unsupported):
            return False

    def wait_time(self, f: Fd | None, blocking: bool, until: float | None, nonblock_flag: bool = False) -> float:
        """How long a call may wait: a `...` call until its deadline; one
        that must not block, the time the SUT may take to take in what the
        script injected before it (a user-space stack does it on its own
        thread, a busy kernel in ksoftirqd): up to PATIENCE where the script
        expects the call to succeed (it returns as soon as it can), the
        tolerance where it expects EAGAIN (the wait is the answer)."""
        if blocking and until is not None and not (f is not None and f.nonblocking) and not nonblock_flag:
            self.blocks_now()
            return max(0.0, until - time.monotonic())
        return max(self.settle, PATIENCE) if self._patient else self.settle

    def blocks_now(self) -> None:
        """The blocking thread's next agent call is the one that blocks: the
        main thread may go on."""
        self._blocking_pending = True
        self._blocked.set()

    # socket, bind, listen, accept, connect -----------------------------------------------------------
    def sys_socket(self, ev, sc, args, blocking, until):
        dom = args[0]
        family = self.family
        if not isinstance(dom, ast.Elided):
            d = self.eval(dom, ev)
            family = {2: "ipv4", 10: "ipv6"}.get(d)
            if family is None:
                self.unsupported(f"socket domain {dom.text()}", ev)
            if family != self.family:
                self.unsupported(f"an {family} socket in an {self.family} run", ev)
        stype = self.eval(args[1], ev)
        if stype & 0xF != 1:
            self.unsupported(f"socket type {args[1].text()} (only SOCK_STREAM)", ev)
        proto = args[2]
        if not isinstance(proto, ast.Elided) and self.eval(proto, ev) not in (0, 6):
            self.unsupported(f"socket protocol {proto.text()}", ev)
        f = self.new_fd(ev, sc, nonblocking=bool(stype & O_NONBLOCK))
        f.family = family
        self.sut_listening = False
        self.conn = None                    # the new socket is the socket under test
        return (f.num if f.num >= 0 else 3), None

    def sys_bind(self, ev, sc, args, blocking, until):
        f = self.fd(ev, args[0])
        if f.bound or f.id is not None:
            return -1, "EINVAL"
        f.bound = True
        return 0, None

    def sys_listen(self, ev, sc, args, blocking, until):
        f = self.fd(ev, args[0])
        backlog = self.eval(args[1], ev)
        if f.listening:
            return 0, None
        reply, err = self.call(ev, "listen", family=f.family, address=self.stack.sut_addr, port=self.config.bind_port,
                               backlog=backlog, options=dict(f.pending))
        if err:
            return -1, err
        f.id = reply["id"]
        f.listening = True
        self.sut_listening = True
        return 0, None

    def sys_accept(self, ev, sc, args, blocking, until):
        f = self.fd(ev, args[0])
        if not f.listening:
            return -1, "EINVAL"
        reply, err = self.call(ev, "accept", id=f.id, timeout=self.wait_time(f, blocking, until))
        if err:
            return -1, err
        peer_port = reply.get("peer", [None, None])[1]
        child = self.new_fd(ev, sc, replace=True)
        child.id = reply["id"]
        waiting = [c for c in self.conns if c.passive and not c.accepted]
        # the child whose remote port the agent names; a proxying stack (slirp,
        # passt) names its host-side client: then the oldest child not yet accepted
        conn = next((c for c in waiting if c.peer.port == peer_port), waiting[0] if waiting else None)
        if conn is None:
            conn = self.new_conn(True, peer_port, self.config.bind_port)
        conn.accepted = True
        conn.fd = child
        child.conn = conn
        self.conn = conn
        self.sut_listening = False
        return child.num, None

    def sys_connect(self, ev, sc, args, blocking, until):
        f = self.fd(ev, args[0])
        if not isinstance(args[1], ast.Elided):
            self.unsupported(f"connect() to {args[1].text()} (disconnect with AF_UNSPEC, explicit addresses)", ev)
        if f.conn is not None:
            return self.connect_again(ev, f)
        bind = [self.stack.sut_addr, self.config.bind_port] if f.bound else None
        cursor = len(self.trace.entries)
        reply, err = self.call(ev, "connect", family=f.family, address=self.stack.peer_addr,
                               port=self.connect_port(), bind=bind, options=dict(f.pending))
        if err:
            return -1, err
        f.id = reply["id"]
        conn = self.new_conn(False, self.connect_port(), self.config.bind_port if f.bound else None)
        conn.peer.cursor = cursor
        conn.fd = f
        f.conn = conn
        self.conn = conn
        self.sut_listening = False
        if f.nonblocking:
            return -1, "EINPROGRESS"
        wait = self.wait_time(f, blocking, until)
        revents, err = self.poll_one(ev, f, ["POLLOUT"], wait)
        if err:
            return -1, err
        if not revents:
            return -1, "EINPROGRESS" if not blocking else "ETIMEDOUT"
        reply, err = self.call(ev, "error", id=f.id)
        if err:
            return -1, err
        if reply.get("error"):
            return -1, reply["error"]
        return 0, None

    def connect_again(self, ev, f: Fd):
        """connect() on a socket already connecting or connected: EALREADY or
        EISCONN, from what poll says of it."""
        revents, err = self.poll_one(ev, f, ["POLLOUT"], 0.0)
        if err:
            return -1, err
        if not revents:
            return -1, "EALREADY"
        reply, err = self.call(ev, "error", id=f.id)
        if reply and reply.get("error"):
            return -1, reply["error"]
        return -1, "EISCONN"

    def poll_one(self, ev, f: Fd, events: list, timeout: float):
        if "poll" not in self.hello.get("ops", ()):
            self.unsupported(f"waiting for a connection (the {self.stack.name} agent has no 'poll' operation)", ev)
        reply, err = self.call(ev, "poll", fds=[[f.id, events]], timeout=timeout)
        if err:
            return None, err
        return reply["revents"][0], None

    # close, shutdown --------------------------------------------------------------------------------
    def sys_close(self, ev, sc, args, blocking, until):
        f = self.fd(ev, args[0])
        del self.fds[f.num]
        if f.kind == "epoll":
            return 0, None
        for other in self.fds.values():
            other.interest.pop(f.num, None)
        if f.conn is not None and f.conn.fd is f:
            f.conn.fd = None
        if f.id is not None:
            reply, err = self.call(ev, "close", id=f.id)
            if err:
                return -1, err
        return 0, None

    def sys_shutdown(self, ev, sc, args, blocking, until):
        f = self.fd(ev, args[0])
        how = {0: "rd", 1: "wr", 2: "rdwr"}.get(self.eval(args[1], ev))
        if how is None:
            return -1, "EINVAL"
        if f.id is None:
            return -1, "ENOTCONN"
        reply, err = self.call(ev, "shutdown", id=f.id, how=how)
        return (-1, err) if err else (0, None)

    # data ---------------------------------------------------------------------------------------------
    def flags_of(self, ev, e) -> tuple[list, bool]:
        bits = self.eval(e, ev)
        names = [n for n, b in MSG_FLAGS.items() if bits & b and n != "MSG_DONTWAIT"]
        return names, bool(bits & MSG_FLAGS["MSG_DONTWAIT"])

    def send(self, ev, f: Fd, count: int, flags: list, dontwait: bool, blocking, until):
        if f.id is None:
            return -1, "EPIPE"                      # Linux: never connected (tcp_sendmsg in CLOSE)
        args = {"flags": flags} if flags else {}
        reply, err = self.call(ev, "send", id=f.id, data=base64.b64encode(bytes(count)).decode(),
                               timeout=self.wait_time(f, blocking, until, dontwait), **args)
        if err:
            return -1, err
        sent = reply["sent"]
        if sent == 0 and count > 0:
            return -1, "EAGAIN"
        return sent, None

    def recv(self, ev, f: Fd, count: int, flags: list, dontwait: bool, blocking, until):
        if f.id is None:
            return -1, "ENOTCONN"
        if count == 0:
            return 0, None
        args = {"flags": flags} if flags else {}
        reply, err = self.call(ev, "recv", id=f.id, max=max(1, count),
                               timeout=self.wait_time(f, blocking, until, dontwait), **args)
        if err:
            return -1, ("EAGAIN" if err == "EAGAIN" else err)
        return len(base64.b64decode(reply["data"])), None

    def sys_write(self, ev, sc, args, blocking, until):
        if isinstance(args[1], ast.Int) and args[1].value == 0:
            self.unsupported("write() from a NULL buffer (EFAULT)", ev)
        return self.send(ev, self.fd(ev, args[0]), self.eval(args[2], ev), [], False, blocking, until)

    def sys_send(self, ev, sc, args, blocking, until):
        flags, dontwait = self.flags_of(ev, args[3])
        return self.send(ev, self.fd(ev, args[0]), self.eval(args[2], ev), flags, dontwait, blocking, until)

    def sys_sendto(self, ev, sc, args, blocking, until):
        f = self.fd(ev, args[0])
        if f.conn is None:
            self.unsupported("sendto() on an unconnected socket (TCP Fast Open)", ev)
        flags, dontwait = self.flags_of(ev, args[3])
        return self.send(ev, f, self.eval(args[2], ev), flags, dontwait, blocking, until)

    def iov_total(self, ev, iov) -> int:
        if not isinstance(iov, ast.List):
            self.unsupported(f"the iovec {iov.text()}", ev)
        total = 0
        for item in iov.items:
            if not (isinstance(item, ast.Struct) and item.kind == "iovec"):
                self.unsupported(f"the iovec {item.text()}", ev)
            total += item.get("iov_len")
        return total

    def sys_writev(self, ev, sc, args, blocking, until):
        return self.send(ev, self.fd(ev, args[0]), self.iov_total(ev, args[1]), [], False, blocking, until)

    def sys_sendmsg(self, ev, sc, args, blocking, until):
        f = self.fd(ev, args[0])
        msg = args[1]
        if not (isinstance(msg, ast.Struct) and msg.kind == "msghdr"):
            self.unsupported(f"sendmsg() with {msg.text()}", ev)
        if f.conn is None:
            self.unsupported("sendmsg() on an unconnected socket (TCP Fast Open)", ev)
        if self.eval(msg.get("msg_flags"), ev) != 0:
            self.fail(ev, "sendmsg: msg_flags must be 0", sc.text(), msg.get("msg_flags").text())
        flags, dontwait = self.flags_of(ev, args[2])
        return self.send(ev, f, self.iov_total(ev, msg.get("msg_iov")), flags, dontwait, blocking, until)

    def sys_read(self, ev, sc, args, blocking, until):
        if isinstance(args[1], ast.Int) and args[1].value == 0:
            self.unsupported("read() into a NULL buffer (EFAULT)", ev)
        return self.recv(ev, self.fd(ev, args[0]), self.eval(args[2], ev), [], False, blocking, until)

    def sys_recv(self, ev, sc, args, blocking, until):
        flags, dontwait = self.flags_of(ev, args[3])
        return self.recv(ev, self.fd(ev, args[0]), self.eval(args[2], ev), flags, dontwait, blocking, until)

    sys_recvfrom = sys_recv

    def sys_readv(self, ev, sc, args, blocking, until):
        return self.recv(ev, self.fd(ev, args[0]), self.iov_total(ev, args[1]), [], False, blocking, until)

    def sys_recvmsg(self, ev, sc, args, blocking, until):
        msg = args[1]
        if not (isinstance(msg, ast.Struct) and msg.kind == "msghdr"):
            self.unsupported(f"recvmsg() with {msg.text()}", ev)
        want_flags = self.eval(msg.get("msg_flags"), ev)
        flags, dontwait = self.flags_of(ev, args[2])
        if want_flags != 0:
            self.unsupported(f"recvmsg() expecting msg_flags {names_of(want_flags, MSG_FLAGS)} (the agent does "
                             f"not report msg_flags)", ev)
        return self.recv(ev, self.fd(ev, args[0]), self.iov_total(ev, msg.get("msg_iov")), flags, dontwait,
                         blocking, until)

    # options, fcntl, ioctl --------------------------------------------------------------------------
    def option_value(self, ev, e):
        if isinstance(e, ast.List) and len(e.items) == 1:
            return self.eval(e.items[0], ev)
        if isinstance(e, ast.Struct) and e.kind == "linger":
            return [e.get("onoff"), e.get("linger")]
        if isinstance(e, ast.Str):
            return e.value
        if isinstance(e, (ast.Int, ast.Word, ast.Or)):
            return self.eval(e, ev)
        self.unsupported(f"the option value {e.text()}", ev)

    def sys_setsockopt(self, ev, sc, args, blocking, until):
        f = self.fd(ev, args[0])
        name = self.option_name(args[1], args[2], ev)
        value = self.option_value(ev, args[3])
        if f.id is None:
            f.pending[name] = value
            f.pending_lines[name] = ev.line
            return 0, None
        reply, err = self.call(ev, "setsockopt", id=f.id, name=name, value=value)
        return (-1, err) if err else (0, None)

    def sys_getsockopt(self, ev, sc, args, blocking, until):
        f = self.fd(ev, args[0])
        name = self.option_name(args[1], args[2], ev)
        if len(args) > 4 and isinstance(args[4], ast.List):
            length = self.eval(args[4], ev)
            want_len = 4 if not isinstance(args[3], (ast.Str, ast.Struct)) else None
            if isinstance(args[3], ast.Struct) and args[3].kind == "linger":
                want_len = 8
            if isinstance(args[3], ast.Str):
                want_len = len(args[3].value)
            if want_len is not None and length != want_len:
                self.fail(ev, f"runtime error in getsockopt call: Bad getsockopt optlen: expected: {length} actual: "
                              f"{want_len}", sc.text(), f"optlen {want_len}")
        if name == "SO_ERROR":
            if f.id is None:
                value = 0
            else:
                reply, err = self.call(ev, "error", id=f.id)
                if err:
                    return -1, err
                value = ERRNO.get(reply.get("error"), 0) if reply.get("error") else 0
        elif f.id is None:
            if name not in f.pending:
                self.unsupported(f"getsockopt({name}) before listen() or connect() (the agent creates the "
                                 f"socket then)", ev)
            value = f.pending[name]
        else:
            reply, err = self.call(ev, "getsockopt", id=f.id, name=name)
            if err:
                return -1, err
            value = reply["value"]
        want = self.option_value(ev, args[3]) if not isinstance(args[3], ast.Elided) else None
        if want is not None and value != want:
            self.fail(ev, f"runtime error in getsockopt call: Bad getsockopt optval: expected: {want} actual: {value}",
                      sc.text(), f"{name} = {value}")
        return 0, None

    def sys_fcntl(self, ev, sc, args, blocking, until):
        f = self.fd(ev, args[0])
        cmd = self.eval(args[1], ev)
        if cmd == 3:                                        # F_GETFL
            return O_RDWR | (O_NONBLOCK if f.nonblocking else 0), None
        if cmd == 4:                                        # F_SETFL
            f.nonblocking = bool(self.eval(args[2], ev) & O_NONBLOCK) if len(args) > 2 else False
            return 0, None
        if cmd == 1:                                        # F_GETFD
            return int(f.cloexec), None
        if cmd == 2:                                        # F_SETFD
            f.cloexec = bool(self.eval(args[2], ev) & 1) if len(args) > 2 else False
            return 0, None
        self.unsupported(f"fcntl command {args[1].text()}", ev)

    def sys_ioctl(self, ev, sc, args, blocking, until):
        f = self.fd(ev, args[0])
        req = args[1]
        name = req.name if isinstance(req, ast.Word) else {0x541B: "SIOCINQ", 0x5411: "SIOCOUTQ",
                                                           0x894B: "SIOCOUTQNSD"}.get(self.eval(req, ev))
        if name == "FIONBIO":
            f.nonblocking = bool(self.eval(args[2], ev)) if len(args) > 2 else f.nonblocking
            return 0, None
        if name in ("FIONREAD", "TIOCOUTQ"):
            name = {"FIONREAD": "SIOCINQ", "TIOCOUTQ": "SIOCOUTQ"}[name]
        if name not in ("SIOCINQ", "SIOCOUTQ", "SIOCOUTQNSD"):
            self.unsupported(f"ioctl {req.text()}", ev)
        if f.id is None:
            return -1, "EINVAL"
        reply, err = self.call(ev, "ioctl", id=f.id, name=name)
        if err:
            return -1, err
        if len(args) > 2 and not isinstance(args[2], ast.Elided):
            want = self.option_value(ev, args[2])
            if reply["value"] != want:
                self.fail(ev, f"runtime error in ioctl call: Bad ioctl value: expected: {want} actual: "
                              f"{reply['value']}", sc.text(), f"{name} = {reply['value']}")
        return 0, None

    # poll and epoll -----------------------------------------------------------------------------------
    def sys_poll(self, ev, sc, args, blocking, until):
        fds = args[0]
        if not isinstance(fds, ast.List):
            self.unsupported(f"poll() with {fds.text()}", ev)
        nfds = self.eval(args[1], ev)
        if nfds != len(fds.items):
            self.fail(ev, "poll: nfds does not match the number of pollfds", sc.text(), str(nfds))
        timeout_ms = self.eval(args[2], ev)
        entries, wants = [], []
        for item in fds.items:
            if not (isinstance(item, ast.Struct) and item.kind == "pollfd"):
                self.unsupported(f"poll() entry {item.text()}", ev)
            f = self.fd(ev, item.get("fd"))
            if f.id is None:
                self.unsupported("poll() on a socket before listen() or connect()", ev)
            entries.append([f.id, self.event_names(self.eval(item.get("events"), ev))])
            wants.append(self.eval(item.get("revents"), ev))
        if blocking and until is not None:
            self.blocks_now()
            wait = max(0.0, until - time.monotonic()) if timeout_ms < 0 else min(timeout_ms / 1000,
                                                                                  max(0.0, until - time.monotonic()))
        else:
            wait = self.settle if timeout_ms != 0 else 0.0
            if timeout_ms > 0:
                wait = timeout_ms / 1000
        reply, err = self.call(ev, "poll", fds=entries, timeout=wait)
        if err:
            return -1, err
        ready = 0
        for i, (names, want) in enumerate(zip(reply["revents"], wants)):
            got = sum(POLL_EVENTS[n] for n in names)
            ready += bool(got)
            if got != want:
                self.fail(ev, f"runtime error in poll call: Expected revents of {names_of(want, POLL_EVENTS)} but got "
                              f"{names_of(got, POLL_EVENTS)} for pollfd {i}", sc.text(),
                          f"revents {names_of(got, POLL_EVENTS)}")
        return ready, None

    @staticmethod
    def event_names(mask: int) -> list:
        return [n for n, b in POLL_EVENTS.items() if mask & b and n != "POLLNVAL"]

    def sys_epoll_create(self, ev, sc, args, blocking, until):
        f = self.new_fd(ev, sc, kind="epoll")
        return f.num, None

    sys_epoll_create1 = sys_epoll_create

    def sys_epoll_ctl(self, ev, sc, args, blocking, until):
        ep = self.fd(ev, args[0])
        op = self.eval(args[1], ev)
        target = self.fd(ev, args[2])
        if ep.kind != "epoll":
            return -1, "EINVAL"
        if op in (1, 3):
            spec = args[3]
            if not (isinstance(spec, ast.Struct) and spec.kind == "epollev"):
                self.unsupported(f"epoll_ctl() with {spec.text()}", ev)
            events = self.eval(spec.get("events"), ev)
            which, data = next((n, v) for n, v in spec.fields if n != "events")
            data = self.eval(data, ev)
            if which == "fd" and data != target.num:
                self.fail(ev, "epoll_ctl: the event's fd= must be the fd argument", sc.text(), str(data))
            if op == 1 and target.num in ep.interest:
                return -1, "EEXIST"
            if op == 3 and target.num not in ep.interest:
                return -1, "ENOENT"
            ep.interest[target.num] = (events, (which, data))
        elif op == 2:
            if ep.interest.pop(target.num, None) is None:
                return -1, "ENOENT"
        else:
            return -1, "EINVAL"
        return 0, None

    def sys_epoll_wait(self, ev, sc, args, blocking, until):
        ep = self.fd(ev, args[0])
        maxevents = self.eval(args[2], ev)
        timeout_ms = self.eval(args[3], ev)
        order = [n for n in ep.interest if n in self.fds and self.fds[n].id is not None]
        entries = [[self.fds[n].id, self.event_names(ep.interest[n][0] & 0xFFFF)] for n in order]
        if blocking and until is not None:
            self.blocks_now()
            wait = max(0.0, until - time.monotonic()) if timeout_ms < 0 else min(timeout_ms / 1000,
                                                                                  max(0.0, until - time.monotonic()))
        else:
            wait = timeout_ms / 1000 if timeout_ms > 0 else 0.0
        if not entries:
            time.sleep(wait)
            ready = []
        else:
            reply, err = self.call(ev, "poll", fds=entries, timeout=wait)
            if err:
                return -1, err
            ready = [(n, sum(POLL_EVENTS[x] for x in names)) for n, names in zip(order, reply["revents"]) if names]
        ready = ready[:maxevents]
        spec = args[1]
        if ready and isinstance(spec, ast.Struct) and spec.kind == "epollev":
            want_events = self.eval(spec.get("events"), ev)
            n, got = ready[0]
            if got != want_events:
                self.fail(ev, f"runtime error in epoll_wait call: Expected events {names_of(want_events, POLL_EVENTS)} "
                              f"but got {names_of(got, POLL_EVENTS)}", sc.text(), f"events {names_of(got, POLL_EVENTS)}")
            which, data = next((k, v) for k, v in spec.fields if k != "events")
            want_data = self.eval(data, ev)
            got_which, got_data = ep.interest[n][1]
            if want_data != got_data:
                self.fail(ev, f"runtime error in epoll_wait call: Expected {which}={want_data} but got "
                              f"{got_which}={got_data}", sc.text(), f"{got_which}={got_data}")
        return len(ready), None

    # --- shell commands ----------------------------------------------------------------------------------
    SYSCTL_PATH = re.compile(r"/proc/sys/([A-Za-z0-9_./-]+)")

    def sysctls_of(self, text: str) -> list[tuple[str, str]] | None:
        """The (key, value) pairs a command sets, if it is nothing but sysctl
        settings (`sysctl [-q] [-w] k=v ...`, `echo v > /proc/sys/...`,
        separated by newlines, `;` or `&&`); None otherwise."""
        out = []
        for part in re.split(r"\n|;|&&", text):
            part = part.strip()
            if not part or part.startswith("#"):
                continue
            if "$" in part or "`" in part:
                return None
            try:
                words = shlex.split(part)
            except ValueError:
                return None
            if words[0] == "sysctl":
                rest = [w for w in words[1:] if w not in ("-q", "-w", "-e", "-qw", "-wq")]
                if not rest or any("=" not in w or w.startswith("-") for w in rest):
                    return None
                out += [(k.replace("/", "."), v) for k, _, v in (w.partition("=") for w in rest)]
            elif words[0] == "echo" and ">" in part:
                m = re.fullmatch(r"echo\s+(.*?)\s*>\s*(\S+)", part)
                p = self.SYSCTL_PATH.fullmatch(m.group(2)) if m else None
                if not p:
                    return None
                out.append((p.group(1).replace("/", "."), shlex.split(m.group(1))[0] if m.group(1) else ""))
            else:
                return None
        return out

    def check_command(self, cmd: ast.Command, ev) -> None:
        pairs = self.sysctls_of(cmd.text_)
        if pairs is None:
            if self.commands == "ignore":
                return
            if self.commands == "run" and self.stack.name == "linux":
                return
            hint = ("; --pkt-commands=run runs it in the SUT's namespace (linux)" if self.stack.name == "linux"
                    else "") + "; --pkt-commands=ignore leaves it out"
            self.unsupported(f"shell command `{one_line(cmd.text_)}` (only sysctl settings become tunables{hint})",
                             ev or _Line(self.script.init_line))
        if pairs and self.set_tunable is None:
            self.unsupported(f"sysctl settings (stack {self.stack.name} has no tunables)",
                             ev or _Line(self.script.init_line))
        for key, value in pairs:
            why = self.set_tunable(key, value, check=True)
            if why:
                self.unsupported(f"sysctl {key}={value} ({why})", ev or _Line(self.script.init_line))

    def command(self, cmd: ast.Command, ev, cleanup: bool = False) -> None:
        pairs = self.sysctls_of(cmd.text_)
        line = ev.line if ev else (self.script.cleanup_line if cleanup else self.script.init_line)
        if pairs is not None:
            for key, value in pairs:
                try:
                    self.set_tunable(key, value, check=False)
                except StackError as e:
                    raise ScriptFailure(self.path, line, f"error executing `{one_line(cmd.text_)}`: {e}",
                                        cmd.text(), str(e)) from None
            return
        if self.commands == "ignore":
            self.notes.append(f"line {ev.line if ev else (self.script.cleanup_line if cleanup else self.script.init_line)}"
                              f": shell command `{one_line(cmd.text_)}` not run (--pkt-commands=ignore)")
            return
        ns = getattr(self.stack, "ns", None)
        env = dict(os.environ, PACKETDRILL_PID=str(os.getpid()))

        def enter():
            from pyroute2 import netns
            netns.setns(ns.name)
        r = subprocess.run(["/bin/sh", "-c", cmd.text_], cwd=self.script_dir, env=env, capture_output=True,
                           text=True, preexec_fn=enter if ns is not None else None, timeout=60)
        if r.returncode != 0:
            what = ("error executing cleanup command" if cleanup else "error executing init command" if ev is None
                    else f"error executing `{one_line(cmd.text_)}` command")
            raise ScriptFailure(self.path, line, f"{what}: non-zero status {r.returncode}", cmd.text(),
                                (r.stderr or r.stdout).strip()[-400:] or f"status {r.returncode}")

    # --- code blocks ------------------------------------------------------------------------------------
    def snapshot(self, ev, code: ast.Code) -> None:
        conn = self.conn
        f = conn.fd if conn is not None and conn.fd is not None else \
            next((x for x in reversed(list(self.fds.values())) if x.id is not None and x.kind == "socket"), None)
        if f is None or f.id is None:
            self.fail(ev, "runtime error in code: no socket to use for code", code.text(), "no open socket")
        reply, err = self.call(ev, "getsockopt", id=f.id, name="TCP_INFO")
        if err:
            if err == "EOPNOTSUPP":
                self.unsupported(f"%{{ }}% code (TCP_INFO: {err})", ev)
            self.fail(ev, f"runtime error in code: can't get TCP_INFO: {err}", code.text(), err)
        info = dict(reply["value"])
        info["state"] = info.get("state_number", info.get("state"))
        self.snapshots.append((ev, code, {"tcpi_" + k: v for k, v in info.items()}))

    def run_code(self) -> None:
        """The blocks in order, over one namespace (packetdrill runs them as
        one Python file at the end): a failed assert fails at its block's line."""
        env: dict = {k: v for k, v in SYMBOLS.items() if k.startswith(("TCP_", "TCPI_"))}
        for ev, code, variables in self.snapshots:
            env.update(variables)
            names = set(re.findall(r"\b(tcpi_[a-z0-9_]+|bbr_\w+|dctcp_\w+|tcpv_\w+|SK_MEMINFO_\w+)\b", code.text_))
            missing = sorted(n for n in names if n not in env)
            if missing:
                self.unsupported(f"{', '.join(missing)} in %{{ }}% code (the {self.stack.name} agent's TCP_INFO "
                                 f"does not report it)", ev)
            source = code.text_ + "\n"          # as the file packetdrill writes: a trailing `\` joins an empty line
            try:
                exec(compile(source, f"{self.path}:{ev.line}", "exec"), env)
            except AssertionError as e:
                shown = {n: env[n] for n in sorted(names) if n in env}
                self.fail(ev, "error in Python code: AssertionError" + (f": {e}" if str(e) else ""), code.text(),
                          ", ".join(f"{k}={v}" for k, v in shown.items()) or "the assertion failed")
            except Exception as e:                  # a bug in the script's code
                self.fail(ev, f"error in Python code: {type(e).__name__}: {e}", code.text(), "the code raised")


@dataclass
class _Line:
    line: int


def one_line(text: str) -> str:
    t = " ".join(text.split())
    return t if len(t) <= 80 else t[:77] + "..."


# argument counts packetdrill checks ("Expected N args but got M")
ARGC = {"socket": (3,), "bind": (3,), "listen": (2,), "accept": (3,), "connect": (3,), "read": (3,),
        "write": (3,), "send": (4,), "recv": (4,), "sendto": (6,), "recvfrom": (6,), "sendmsg": (3,),
        "recvmsg": (3,), "close": (1,), "shutdown": (2,), "setsockopt": (5,), "getsockopt": (5,),
        "fcntl": (2, 3), "ioctl": (2, 3), "poll": (3,), "epoll_create": (1,), "epoll_ctl": (4,),
        "epoll_wait": (4,), "readv": (3,), "writev": (3,)}
SYSCALLS = frozenset(n[4:] for n in dir(Runner) if n.startswith("sys_"))
UNSUPPORTED_CALLS = {
    "splice": "pipes", "sendfile": "files", "pipe": "pipes", "open": "files", "cap_set": "capabilities",
    "psp_rx_assoc": "PSP", "psp_tx_assoc": "PSP",
}
