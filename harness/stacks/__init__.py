"""Stacks under test: one module per kind, one registry.

Rules of this package:
- A stack is started per case, for one address family, and gives the case
  its Link (packets), its App (the SUT's application, if it has one) and,
  where it can, the TCP state of its sockets and its tunables.
- What a stack can do is declared in `capabilities`; a case that needs more
  is skipped with the capability it lacks, never failed.
- A new stack is a new module here plus a line in STACKS and a profile in
  cases/profiles/<name>.toml. Nothing else changes.

Addresses: the SUT is .1 and the tester .2 of 198.18.0.0/24 (IPv4) and
2001:2::/64 (IPv6), ranges reserved for benchmarking (RFC 2544, RFC 5180),
and they exist only inside the suite's namespaces.
"""
from __future__ import annotations

import importlib
import time
from dataclasses import dataclass, field

from .. import steps
from ..trace import Trace

STACKS = {
    "linux": "harness.stacks.linux:LinuxStack",
    "remote": "harness.stacks.remote:RemoteStack",
    "gvisor": "harness.stacks.gvisor:GvisorStack",
    "lwip": "harness.stacks.lwip:LwipStack",
    "slirp": "harness.stacks.slirp:SlirpStack",
    "passt": "harness.stacks.passt:PasstStack",
}

ADDRESSES = {
    "ipv4": {"sut": "198.18.0.1", "peer": "198.18.0.2", "prefix": 24},
    "ipv6": {"sut": "2001:2::1", "peer": "2001:2::2", "prefix": 64},
}

# Capabilities a stack may declare.
APP = "app"            # listen/connect/send/recv/... on the SUT side
STATE = "state"        # TCP state of the SUT's sockets
SYSCTL = "sysctl"      # read and set the stack's tunables


class StackError(RuntimeError):
    """The stack could not be started; the message says what to do."""


@dataclass
class StackConfig:
    family: str
    trace: Trace
    sysctls: dict = field(default_factory=dict)    # set before the case starts
    options: dict = field(default_factory=dict)    # --stack-opt KEY=VALUE


class Stack:
    name = "?"
    capabilities: frozenset = frozenset()
    option_names: dict = {}          # --stack-opt names this stack accepts, with help
    needs_root = True                # creates namespaces / TUN devices
    families = ("ipv4", "ipv6")
    server_port: int | None = None   # a fixed listening port of the SUT, if any
    peer_ports: range | None = None  # the tester's ports, where the stack can reach only some (passt's forwards)
    mtu: int = 0                     # MTU of the SUT's link, read by start()

    def __init__(self, config: StackConfig):
        self.config = config
        self.family = config.family
        self.trace = config.trace
        self.sut_addr = ADDRESSES[self.family]["sut"]
        self.peer_addr = ADDRESSES[self.family]["peer"]
        self.link = None
        self.app = None

    # --- lifecycle ---------------------------------------------------------------
    def start(self) -> "Stack":
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    @classmethod
    def check(cls, options: dict) -> None:
        """Validate --stack-opt values before anything starts (StackError)."""

    @classmethod
    def preflight(cls, options: dict) -> list[str]:
        """Once per run, before any case, where the run will start stacks:
        check what the stack needs from this machine that a case cannot
        repair. Returns lines for the run's header (what was found); a
        StackError (one line saying what to do) stops the run."""
        return []

    @classmethod
    def tunables(cls) -> frozenset | None:
        """The names `sysctl`/`set_sysctl` know, if the stack has its own
        (a case setting another is skipped); None: the host's /proc/sys names."""
        return None

    @classmethod
    def profile_name(cls, options: dict) -> str:
        """The profile (cases/profiles/<name>.toml) describing this stack."""
        return cls.name

    # --- optional, by capability --------------------------------------------------
    def sysctl(self, key: str) -> str:
        raise StackError(f"stack {self.name} has no tunables to read")

    def set_sysctl(self, key: str, value) -> None:
        raise StackError(f"stack {self.name} has no tunables to set")

    def states(self, port: int | None = None) -> list[dict]:
        """[{'local': (addr, port), 'remote': (addr, port), 'state': 'ESTABLISHED'}, ...]"""
        return self.app.state(port)

    @steps.check(steps.state_read)
    def state_of(self, port: int, remote_port: int) -> str | None:
        """RFC 9293 state of the SUT's socket port <-> remote_port, None if
        there is none: CLOSED, "no TCB" (a socket the application still
        holds after its connection was reset reports CLOSED, and has none)."""
        for s in self.states(port):
            if s["local"][1] == port and s["remote"][1] == remote_port and s["state"] != "CLOSED":
                return s["state"]
        return None

    @steps.check(steps.state_wait)
    def wait_for_state(self, port: int, remote_port: int, want: str | None, within: float,
                       interval: float = 0.005) -> float | None:
        """Poll until the socket is in state `want` (None: gone), at most
        `within` seconds; the monotonic time it was first seen so, or None."""
        deadline = time.monotonic() + within
        while True:
            now = time.monotonic()
            if self.state_of(port, remote_port) == want:
                return now
            if now >= deadline:
                return None
            time.sleep(min(interval, max(0.0, deadline - now)))

    def version(self) -> str:
        return "unknown"

    def describe(self) -> dict:
        """What the report's environment section shows about this stack."""
        return {"stack": self.name, "version": self.version()}


def stack_class(name: str) -> type:
    if name not in STACKS:
        raise StackError(f"unknown stack {name!r}: choose one of {', '.join(sorted(STACKS))} (--stack NAME)")
    module, _, cls = STACKS[name].partition(":")
    return getattr(importlib.import_module(module), cls)


def check_options(cls: type, options: dict) -> None:
    unknown = sorted(set(options) - set(cls.option_names))
    if unknown:
        known = ", ".join(sorted(cls.option_names)) or "none"
        raise StackError(f"unknown --stack-opt {unknown[0]!r} for stack {cls.name}: it accepts {known}")
    cls.check(options)
