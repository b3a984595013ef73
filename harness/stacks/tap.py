"""User-space stacks on a TAP device, each in a fresh network namespace.

Rules of this file:
- One namespace per case holds a TAP device `tap0` (no address, IPv6 off:
  the namespace's kernel stays silent on it) and the stack's agent process,
  started inside the namespace, which opens the TAP and runs the stack.
- The tester reads and writes Ethernet frames on the kernel side of the TAP
  (harness.l2.PacketLink) and drives the agent over its stdin/stdout with
  the app-control protocol (harness.agent); a stack whose application is
  host sockets (slirp) serves the protocol in the tester instead
  (`make_app`), and its agent only carries frames.
- A subclass says how to build and start its agent (`agent_command`,
  `setup`), its MAC if the stack fixes it, and which families it has.
- An agent that dies fails the case (the protocol raises ECONNRESET); its
  process and namespace are removed on every exit path. One that fails to
  come up is one StackError line ending with what it wrote to stderr
  (`coming_up`, which passt's start shares: passt is its own agent).
"""
from __future__ import annotations

import os
import signal
import subprocess
import tempfile
from contextlib import contextmanager
from pathlib import Path

from pyroute2 import IPRoute

from ..agent import App, AppError, StreamTransport
from ..l2 import LinkError, PacketLink
from ..netns import Namespace, write_sysctl
from . import APP, Stack, StackError

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "build"
PEER_MAC = "02:00:00:74:63:02"      # locally administered, the tester's
SUT_MAC = "02:00:00:74:63:01"       # where the stack lets us choose


@contextmanager
def coming_up(stack: Stack, speaker: str = "agent"):
    """Around a stack's start, whose process writes its stderr to `stack.log`:
    an error of the app-control protocol, the link or the system closes the
    stack and becomes one StackError line with the tail of that log (read
    before close() drops the log), said by `speaker`; any other exception
    closes the stack and goes on."""
    try:
        yield
    except (AppError, LinkError, OSError) as e:
        said = _log_tail(getattr(stack, "log", None))
        stack.close()
        raise StackError(f"{stack.name} did not come up: {e}" + (f" ({speaker} said: {said})" if said else "")) from None
    except BaseException:
        stack.close()
        raise


def _log_tail(log) -> str:
    """The last 400 bytes of a process's stderr file, as text."""
    if log is None or log.closed:
        return ""
    log.seek(0)
    return log.read()[-400:].decode(errors="replace").strip()


class TapStack(Stack):
    capabilities = frozenset({APP})
    families = ("ipv4", "ipv6")
    sut_mac = SUT_MAC

    # --- what a subclass provides -------------------------------------------------------
    def agent_command(self) -> list[str]:
        raise NotImplementedError

    def agent_env(self) -> dict:
        return {}

    @classmethod
    def agent_path(cls) -> Path:
        raise NotImplementedError

    def make_app(self, transport: StreamTransport) -> App:
        """The case's App: by default the agent serves the app-control
        protocol itself, on its stdin and stdout (`transport`)."""
        return App(transport, self.family, self.sut_addr)

    sources: tuple = ()        # the agent's C sources: a binary older than one of them is stale

    @classmethod
    def built(cls) -> bool:
        """The agent exists and is newer than each of its sources."""
        agent = cls.agent_path()
        return agent.exists() and all(agent.stat().st_mtime >= src.stat().st_mtime for src in cls.sources)

    @classmethod
    def check(cls, options: dict) -> None:
        """Before anything starts: the agent must be built from its current
        sources (one line if not)."""
        if not cls.agent_path().exists():
            raise StackError(f"the {cls.name} agent is not built: run python3 -m harness.setup --stack {cls.name}")
        if not cls.built():
            raise StackError(f"the {cls.name} agent is older than its source: "
                             f"run python3 -m harness.setup --stack {cls.name}")

    @classmethod
    def setup(cls) -> None:
        """Install and build what the agent needs (python3 -m harness.setup --stack NAME)."""
        raise NotImplementedError

    # --- lifecycle -------------------------------------------------------------------------
    def start(self) -> "TapStack":
        if not self.agent_path().exists():
            raise StackError(f"the {self.name} agent is not built: run python3 -m harness.setup --stack {self.name}")
        self.proc = None
        self.ns = Namespace.create()
        with coming_up(self):
            with self.ns.entered():
                self._configure()
                self.log = tempfile.TemporaryFile()
                env = dict(os.environ, **self.agent_env())
                self.proc = subprocess.Popen(self.agent_command(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                             stderr=self.log, env=env, start_new_session=True)
            transport = StreamTransport(self.proc.stdout.fileno(), self.proc.stdin.fileno(), timeout=10.0,
                                        keep=self.proc)
            self.app = self.make_app(transport)
            self.app.greet()
            self.link.resolve()
        return self

    def _configure(self) -> None:
        with IPRoute() as ipr:
            ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")
            ipr.link("add", ifname="tap0", kind="tuntap", mode="tap")
            write_sysctl("net.ipv6.conf.tap0.disable_ipv6", 1)
            idx = ipr.link_lookup(ifname="tap0")[0]
            ipr.link("set", index=idx, state="up")
            self.mtu = ipr.get_links(idx)[0].get_attr("IFLA_MTU")
        self.link = PacketLink(self.trace, "tap0", PEER_MAC, {self.family: self.peer_addr}, self.sut_addr)

    def close(self) -> None:
        proc = getattr(self, "proc", None)
        if proc is not None and proc.poll() is None:
            try:
                self.app.call("bye")
            except Exception:
                pass
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=2)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait()
        if proc is not None:
            proc.stdin.close()
            proc.stdout.close()
        if self.link is not None:
            self.link.close()
        ns = getattr(self, "ns", None)
        if ns is not None:
            ns.remove()
        log = getattr(self, "log", None)
        if log is not None:
            log.close()
