"""gVisor's netstack (Debian golang-gvisor-gvisor-dev) on a TAP, driven by a Go agent.

Rules of this file:
- The agent (harness/stacks/gvisor/agent/*.go) is built offline from Debian
  packages only: Go from `golang-go`, netstack's source from
  `golang-gvisor-gvisor-dev` under /usr/share/gocode, in GOPATH mode with
  GOPROXY=off. The binary lives in build/ (git-ignored); a binary older than
  its source is refused, so a run never tests a stale agent.
- The agent configures netstack as gVisor's sandbox, runsc, does (SACK and
  receive-buffer moderation on, Nagle on for every socket): that is gVisor
  as its users get it. `--stack-opt sack=off` gives the library's default.
- Tunables are netstack's stack and TCP options under the agent's own names
  (TUNABLES; cases/profiles/gvisor.toml documents them). Linux sysctl names
  mean nothing here: a case that reads or sets one is skipped, not failed.
- TCP state comes from netstack's demuxer (every registered endpoint:
  listeners, half-open connections not yet accepted, TIME-WAIT), so the
  stack has the `state` capability.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from . import ADDRESSES, APP, STATE, SYSCTL, StackError
from ..agent import AppError
from ..setup import apt_install, package_version
from .tap import BUILD, TapStack

SOURCE = Path(__file__).resolve().parent / "gvisor" / "agent"
GOPATH = "/usr/share/gocode"
NETSTACK = Path(GOPATH) / "src" / "gvisor.dev" / "gvisor" / "pkg" / "tcpip"
NETSTACK_PACKAGE = "golang-gvisor-gvisor-dev"
PACKAGES = ("golang-go", NETSTACK_PACKAGE)
# The agent's `sysctl` names (harness/stacks/gvisor/agent/options.go tunables).
TUNABLES = frozenset({
    "tcp.sack", "tcp.syncookies", "tcp.time_wait_timeout_ms", "tcp.linger_timeout_ms",
    "tcp.min_rto_ms", "tcp.max_rto_ms", "tcp.max_retries", "tcp.invalid_ratelimit_ms", "tcp.recovery",
})
SACK = {"on": "true", "off": "false"}


class GvisorStack(TapStack):
    name = "gvisor"
    capabilities = frozenset({APP, STATE, SYSCTL})
    families = ("ipv4", "ipv6")
    option_names = {"sack": "on (default: as runsc configures netstack) or off (the netstack library's default)"}

    @classmethod
    def check(cls, options: dict) -> None:
        if options.get("sack", "on") not in SACK:
            raise StackError(f"--stack-opt sack={options['sack']}: on or off")
        super().check(options)
        if _stale(cls.agent_path()):
            raise StackError("the gvisor agent is older than its source: run python3 -m harness.setup --stack gvisor")

    @classmethod
    def tunables(cls) -> frozenset:
        return TUNABLES

    @classmethod
    def agent_path(cls) -> Path:
        return BUILD / "gvisor-agent"

    def agent_command(self) -> list[str]:
        fam = ADDRESSES[self.family]
        return [str(self.agent_path()), "-tap", "tap0", "-mac", self.sut_mac,
                "-addr", f"{fam['sut']}/{fam['prefix']}", f"-sack={SACK[self.config.options.get('sack', 'on')]}"]

    def start(self) -> "GvisorStack":
        super().start()
        try:
            self.hello = self.app.hello()
            for key, value in self.config.sysctls.items():
                self.set_sysctl(key, value)
        except BaseException:
            self.close()
            raise
        return self

    # --- tunables -------------------------------------------------------------------------
    def _known(self, key: str) -> None:
        """A case that reads or sets a tunable netstack lacks (a Linux sysctl
        name) is skipped: the stack lacks that capability, it did not fail."""
        if key not in TUNABLES:
            import pytest
            pytest.skip(f"stack gvisor has no tunable {key} (it has {', '.join(sorted(TUNABLES))})")

    def sysctl(self, key: str) -> str:
        self._known(key)
        try:
            return str(self.app.call("sysctl", name=key)["value"])
        except AppError as e:
            raise StackError(f"gvisor tunable {key}: {e}") from None

    def set_sysctl(self, key: str, value) -> None:
        self._known(key)
        try:
            self.app.call("sysctl", name=key, value=str(value))
        except AppError as e:
            raise StackError(f"gvisor tunable {key}={value}: {e}") from None

    def version(self) -> str:
        hello = getattr(self, "hello", None)
        return hello.get("system", "unknown") if hello else package_version(NETSTACK_PACKAGE) or "unknown"

    # --- setup -----------------------------------------------------------------------------
    @classmethod
    def setup(cls) -> None:
        """Install Go and netstack's source from Debian if missing, then build
        the agent offline (python3 -m harness.setup --stack gvisor)."""
        if _go() is None or not NETSTACK.is_dir():
            apt_install(PACKAGES, "the gvisor agent")
        go = _go()
        if go is None:
            raise StackError("no go command: install golang-go (Debian) to build the gvisor agent")
        if not NETSTACK.is_dir():
            raise StackError(f"no netstack source in {NETSTACK}: install golang-gvisor-gvisor-dev (Debian)")
        out = cls.agent_path()
        if out.exists() and not _stale(out):
            return
        out.parent.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, GO111MODULE="off", GOPATH=GOPATH, GOPROXY="off", GOFLAGS="",
                   GOCACHE=str(BUILD / "go-cache"), CGO_ENABLED="0")
        flags = f"-X main.gvisorVersion={package_version(NETSTACK_PACKAGE) or 'unknown'}"
        print(f"setup: building the gvisor agent ({out.relative_to(BUILD.parent)}), offline", flush=True)
        r = subprocess.run([go, "build", "-ldflags", flags, "-o", str(out), "."], cwd=SOURCE, env=env)
        if r.returncode != 0:
            raise StackError("building the gvisor agent failed (the go output above says why)")


def _go() -> str | None:
    return shutil.which("go") or next((p for p in ("/usr/lib/go/bin/go",) if Path(p).exists()), None)


def _stale(binary: Path) -> bool:
    built = binary.stat().st_mtime
    return any(src.stat().st_mtime > built for src in SOURCE.glob("*.go"))
