"""lwIP 2.1.3 as Debian builds it (liblwip0: the unix port), on a TAP device.

Rules of this file:
- The stack is Debian's liblwip as shipped: its options are compiled into
  the library (/usr/include/lwip/lwipopts.h and lwIP's opt.h defaults), so
  nothing is tunable here (no `sysctl` capability); what it does is written
  down in cases/profiles/lwip.toml.
- The agent (lwip_agent.c next to this file, built into build/lwip-agent by
  `python3 -m harness.setup --stack lwip`) runs lwIP in the case's
  namespace on `tap0` with the SUT's one address, and speaks the
  app-control protocol of harness.agent. TCP states come from lwIP's PCB
  lists (capability `state`).
- The agent drives the TAP with its own small driver: Debian's tapif
  corrupts the heap on any frame over ~590 bytes (see lwip_agent.c). It
  keeps tapif's MAC, 02:12:34:56:78:ab, and like tapif joins no multicast
  group, so the tester solicits the SUT's IPv6 address by unicast.
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from . import ADDRESSES, APP, STATE, StackError
from ..setup import apt_install, package_version
from .tap import BUILD, TapStack

# The library comes with liblwip-dev: named liblwip0 on Debian 12, liblwip0t64 on Ubuntu 24.04.
PACKAGES = ("liblwip-dev", "gcc", "libc6-dev", "pkg-config")
SOURCE = Path(__file__).with_name("lwip_agent.c")
PROTO = Path(__file__).with_name("agent_proto.h")     # the protocol's plumbing, shared with lwipv6's agent
OPS = Path(__file__).with_name("lwip_ops.h")          # the operations served alike, shared with lwipv6's agent
TAPIF_H = Path("/usr/include/lwip/netif/tapif.h")


def _run(cmd: list, what: str, **kw) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, **kw)
    except FileNotFoundError:
        raise StackError(f"{cmd[0]} is not installed: {what}") from None


class LwipStack(TapStack):
    sources = (SOURCE, PROTO, OPS)
    name = "lwip"
    capabilities = frozenset({APP, STATE})
    families = ("ipv4", "ipv6")
    sut_mac = "02:12:34:56:78:ab"      # the MAC lwIP's unix port (tapif.c) gives itself
    option_names = {}

    @classmethod
    def agent_path(cls) -> Path:
        return BUILD / "lwip-agent"

    def agent_command(self) -> list[str]:
        return [str(self.agent_path()), self.sut_mac, f"{self.sut_addr}/{ADDRESSES[self.family]['prefix']}"]

    def agent_env(self) -> dict:
        return {"PRECONFIGURED_TAPIF": "tap0"}     # the TAP, named as lwIP's unix port names it

    def _configure(self) -> None:
        super()._configure()
        self.link.sut_mac_hint = self.sut_mac

    def version(self) -> str:
        lwip = self.app.hello().get("lwip", "?") if self.app is not None else "?"
        pkg = package_version("liblwip-dev")
        return f"lwIP {lwip}" + (f" (Debian liblwip-dev {pkg})" if pkg else "")

    # --- set-up ------------------------------------------------------------------------------
    @classmethod
    def setup(cls) -> None:
        if not TAPIF_H.exists() or shutil.which("gcc") is None or shutil.which("pkg-config") is None:
            apt_install(PACKAGES, "the lwIP agent")
        agent = cls.agent_path()
        if cls.built():
            return
        flags = _run(["pkg-config", "--cflags", "--libs", "lwip"], "apt-get install pkg-config")
        if flags.returncode != 0:
            raise StackError("pkg-config finds no lwip: apt-get install liblwip-dev")
        agent.parent.mkdir(parents=True, exist_ok=True)
        cmd = ["gcc", "-O2", "-Wall", "-Wextra", "-o", str(agent), str(SOURCE), *flags.stdout.split(), "-lpthread", "-lm"]
        print(f"setup: building {agent.relative_to(BUILD.parent)} ({' '.join(cmd)})", flush=True)
        r = _run(cmd, "apt-get install gcc")
        if r.returncode != 0:
            raise StackError(f"building the lwIP agent failed: {r.stderr.strip().splitlines()[-1] if r.stderr else r.returncode}")
