"""lwIPv6 1.5a as Debian builds it (liblwipv6-2: VirtualSquare's fork of lwIP
with its own IPv6 and socket layer), on a TAP device.

Rules of this file:
- The stack is Debian's liblwipv6 as shipped: its options are compiled into
  the library (the unix port's lwipopts.h and lwip/tcp.h of its source), so
  nothing is tunable (no `sysctl` capability); what it does is written down
  in cases/profiles/lwipv6.toml.
- The agent (lwipv6_agent.c next to this file, built into build/lwipv6-agent
  by `python3 -m harness.setup --stack lwipv6`) runs one lwIPv6 stack in the
  case's namespace on `tap0` through lwIPv6's own TAP driver, with the SUT's
  one address, and speaks the app-control protocol of harness.agent.
- lwIPv6's API (lwipv6.h) cannot report a connection's TCP state: no `state`
  capability; a case that asks is skipped naming it.
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from . import ADDRESSES, APP
from ..agent import AppError
from ..setup import apt_install, package_version
from .lwip import OPS, PROTO, _run
from . import StackError
from .tap import BUILD, TapStack

PACKAGES = ("liblwipv6-dev", "liblwipv6-2")
SOURCE = Path(__file__).with_name("lwipv6_agent.c")
HEADER = Path("/usr/include/lwipv6.h")
NO_STATE = ("lwIPv6 cannot report TCP state (capability 'state'): its API, lwipv6.h, has no call that reads "
            "a connection's state, and its PCB lists live in an opaque struct stack")


class Lwipv6Stack(TapStack):
    sources = (SOURCE, PROTO, OPS)
    name = "lwipv6"
    capabilities = frozenset({APP})
    families = ("ipv4", "ipv6")
    sut_mac = "02:02:03:04:05:06"      # the MAC lwIPv6's TAP driver gives its first TAP (tapif.c, low_level_init)
    # lwip_shutdown sends no FIN (sockets.c); lwip_close does (do_delconn -> tcp_close), and the TCP goes on
    # processing the connection's segments as for an open socket (do_delconn only unsets the callbacks: text is
    # acknowledged, then freed), with no orphan timer but FIN-WAIT-2's, which every FIN-WAIT-2 has.
    half_close = False
    option_names = {}

    @classmethod
    def agent_path(cls) -> Path:
        return BUILD / "lwipv6-agent"

    def agent_command(self) -> list[str]:
        return [str(self.agent_path()), "tap0", f"{self.sut_addr}/{ADDRESSES[self.family]['prefix']}"]

    def states(self, port: int | None = None) -> list[dict]:
        raise AppError("EOPNOTSUPP", NO_STATE)

    def version(self) -> str:
        pkg = package_version("liblwipv6-2")
        return "lwIPv6 1.5a" + (f" (Debian liblwipv6-2 {pkg})" if pkg else "")

    # --- set-up ------------------------------------------------------------------------------
    @classmethod
    def setup(cls) -> None:
        if not HEADER.exists():
            apt_install(PACKAGES, "the lwIPv6 agent")
        if shutil.which("gcc") is None:
            raise StackError("gcc is not installed: apt-get install gcc (the lwIPv6 agent is built with it)")
        agent = cls.agent_path()
        if cls.built():
            return
        agent.parent.mkdir(parents=True, exist_ok=True)
        cmd = ["gcc", "-O2", "-Wall", "-Wextra", "-o", str(agent), str(SOURCE), "-llwipv6", "-lpthread", "-lm"]
        print(f"setup: building {agent.relative_to(BUILD.parent)} ({' '.join(cmd)})", flush=True)
        r = _run(cmd, "apt-get install gcc")
        if r.returncode != 0:
            raise StackError(f"building the lwIPv6 agent failed: {r.stderr.strip().splitlines()[-1] if r.stderr else r.returncode}")
