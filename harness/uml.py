"""User-mode Linux (Debian `user-mode-linux`: Linux 6.1) as a second kernel
under test, through `--stack remote`:

    python -m harness.uml -- .venv/bin/pytest conformance/ -m "not slow and not matrix"
    python -m harness.uml          # boot, print the pytest options, wait for Ctrl-C

Rules of this file:
- The guest's root is the host's / read-only (hostfs): it runs this
  machine's Python and this checkout's agent (harness/agent.py); nothing is
  built for it or copied into it. Its init is `guest()` below.
- UML's two interfaces use the legacy tuntap transport (the vector transport
  hands the tester TCP segments with partial checksums) on TAPs in one
  namespace tcpconf-<pid>-<n> of this process:
    eth0 on tap0, the link under test: the guest holds 198.18.0.1 and
      2001:2::1, the tester claims .2 and ::2 on tap0 as on any link to a
      remote host, and no kernel on the tester's side has an address there;
    eth1 on tap1, the control link: the agent listens on 198.19.255.1:7070
      in a network namespace of the guest's own, so its TCP connection never
      meets the stack under test (other sockets, other sysctls); tap1 holds
      198.19.255.2 and the tester connects from the namespace
      (`--stack-opt agent-netns=`).
  The console (UML's stdin and stdout) only carries the boot log and the
  ready line: UML 6.1's console stalls for good once a line of input
  overflows the guest's tty buffer (line_unthrottle does not re-arm its
  descriptor), and requests reach 180 kB.
- UML, its namespace and its directory go on every exit path. A UML whose
  owner died outright powers itself off (its console reaches end of input);
  the next start removes what it left, as the next run reaps namespaces.
- build/uml-xstate.so (uml_xstate.c) is preloaded into UML, which otherwise
  cannot run a process on a host with AVX-512 or AMX (see that file).
"""
from __future__ import annotations

import argparse
import os
import select
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from .setup import apt_install

READY = b"tcpconf-uml: agent ready"
SUT = {"ipv4": ("198.18.0.1", 24, "198.18.0.2"), "ipv6": ("2001:2::1", 64, "2001:2::2")}
SUT_MAC, CONTROL_MAC = "02:00:00:74:63:01", "02:00:00:74:63:11"
CONTROL = ("198.19.255.1", "198.19.255.2", 30, 7070)       # guest, host side, prefix, agent port
MODULES = ("kernel/lib/crc-ccitt.ko", "kernel/net/ipv6/ipv6.ko")   # IPv6 is a module in Debian's UML
SYS_finit_module, CLONE_NEWNET, RB_POWER_OFF = 313, 0x40000000, 0x4321FEDC   # x86_64


# --- inside the guest (standard library only: this runs as its PID 1) ----------------------

def guest() -> None:
    """PID 1 of the guest: /proc, IPv6, the addresses of eth0 (here) and
    eth1 (in a namespace of its own, with the agent's listening socket),
    the ready line, then the agent until the console's end of input; then
    power off (PID 1 must not exit)."""
    import ctypes
    import socket
    from .agent import serve_clients

    libc = ctypes.CDLL(None, use_errno=True)

    def check(ret, what):
        if ret != 0:
            raise OSError(ctypes.get_errno(), what)

    def ip(*args):
        subprocess.run(["ip", *args], check=True)

    try:
        check(libc.mount(b"proc", b"/proc", b"proc", 0, None), "mounting /proc")
        _write("/proc/sys/kernel/printk", "1")            # only emergencies reach the console
        for module in MODULES:
            fd = os.open(f"/usr/lib/uml/modules/{os.uname().release}/{module}", os.O_RDONLY)
            check(libc.syscall(SYS_finit_module, fd, b"", 0), f"loading {module}")
            os.close(fd)
        for key, value in (("addr_gen_mode", 1), ("accept_ra", 0), ("router_solicitations", 0)):
            _write(f"/proc/sys/net/ipv6/conf/eth0/{key}", value)
        ip("link", "set", "lo", "up")
        ip("addr", "add", "{}/{}".format(*SUT["ipv4"][:2]), "dev", "eth0")
        ip("addr", "add", "{}/{}".format(*SUT["ipv6"][:2]), "dev", "eth0", "nodad")
        ip("link", "set", "eth0", "up")
        main_ns = os.open("/proc/self/ns/net", os.O_RDONLY)
        check(libc.unshare(CLONE_NEWNET), "creating the control namespace")
        control_ns = os.open("/proc/self/ns/net", os.O_RDONLY)
        check(libc.setns(main_ns, CLONE_NEWNET), "entering the main namespace")
        ip("link", "set", "eth1", "netns", f"/proc/{os.getpid()}/fd/{control_ns}")
        check(libc.setns(control_ns, CLONE_NEWNET), "entering the control namespace")
        ip("addr", "add", f"{CONTROL[0]}/{CONTROL[2]}", "dev", "eth1")
        ip("link", "set", "eth1", "up")
        srv = socket.create_server((CONTROL[0], CONTROL[3]))
        check(libc.setns(main_ns, CLONE_NEWNET), "entering the main namespace")   # the agent's sockets live here
        threading.Thread(target=serve_clients, args=(srv,), daemon=True).start()
        os.write(1, READY + b"\n")
        while os.read(0, 4096):                           # until the host closes the console
            pass
    finally:
        libc.reboot(RB_POWER_OFF)


def _write(path: str, value) -> None:
    with open(path, "w") as f:
        f.write(str(value))


# --- on the host ----------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parent.parent
SHIM_SOURCE = Path(__file__).with_name("uml_xstate.c")
SHIM = ROOT / "build" / "uml-xstate.so"


DIR_PREFIX = "tcpconf-uml-"               # + <pid of the owner>-<random>, in the temporary directory


def reap() -> list[str]:
    """Remove the directories of UMLs whose owner is gone (killed outright:
    its UML powered itself off, netns.reap() takes its namespace)."""
    from .netns import pid_alive
    gone = []
    for d in Path(tempfile.gettempdir()).glob(f"{DIR_PREFIX}*-*"):
        owner = d.name[len(DIR_PREFIX):].split("-")[0]
        if owner.isdigit() and int(owner) != os.getpid() and not pid_alive(int(owner)):
            shutil.rmtree(d, ignore_errors=True)
            gone.append(str(d))
    return gone


class UmlError(RuntimeError):
    """UML could not be started; the message says what to do."""


def group(pgid: int) -> list[int]:
    """The processes of process group `pgid` that have not exited."""
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                state, _, pgrp = f.read().rpartition(")")[2].split()[:3]
        except (OSError, ValueError):
            continue
        if int(pgrp) == pgid and state not in ("Z", "X"):
            out.append(int(pid))
    return out


def build_shim() -> Path:
    if SHIM.exists() and SHIM.stat().st_mtime >= SHIM_SOURCE.stat().st_mtime:
        return SHIM
    if shutil.which("gcc") is None:
        raise UmlError("gcc is not installed: apt-get install gcc (it builds build/uml-xstate.so for UML)")
    SHIM.parent.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["gcc", "-O2", "-Wall", "-shared", "-fPIC", "-o", str(SHIM), str(SHIM_SOURCE), "-ldl"],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise UmlError(f"building {SHIM.name} failed: {r.stderr.strip()[-300:]}")
    return SHIM


def setup() -> None:
    """What UML needs here: Debian's package and the shim
    (python3 -m harness.setup --uml)."""
    apt_install(("user-mode-linux", "gcc"), "user-mode Linux")
    build_shim()


class Uml:
    """One booted UML with the agent on its control link."""

    def __init__(self, mem: str = "128M", boot_timeout: float = 30.0):
        self.mem, self.boot_timeout = mem, boot_timeout
        self.proc = self.ns = self.dir = None
        self.boot_time = 0.0                      # seconds to the ready line; 0 before it
        self.console: list[str] = []              # the guest's console, line by line

    @staticmethod
    def binary() -> str | None:
        return shutil.which("linux.uml")

    @staticmethod
    def release() -> str:
        return subprocess.run([Uml.binary(), "--version"], capture_output=True, text=True).stdout.strip()

    def start(self) -> "Uml":
        from pyroute2 import IPRoute
        from .netns import Namespace, write_sysctl

        if self.binary() is None:
            raise UmlError("user-mode Linux is not installed: run python3 -m harness.setup --uml")
        shim = build_shim()
        try:
            reap()
            self.dir = Path(tempfile.mkdtemp(prefix=f"{DIR_PREFIX}{os.getpid()}-"))
            init = self.dir / "init"
            init.write_text(f"#!/bin/sh\ncd {shlex.quote(str(ROOT))} && "
                            f"exec {shlex.quote(sys.executable)} -S -m harness.uml --guest\n")
            init.chmod(0o755)
            self.ns = Namespace.create()
            cmd = [self.binary(), f"mem={self.mem}", "root=/dev/root", "rootfstype=hostfs", "hostfs=/", "ro",
                   f"init={init}", f"eth0=tuntap,tap0,{SUT_MAC}", f"eth1=tuntap,tap1,{CONTROL_MAC}",
                   "con0=fd:0,fd:1", "con=null", "ssl=null", f"umid={self.ns.name}", f"uml_dir={self.dir}", "quiet"]
            t0 = time.monotonic()
            with self.ns.entered(), IPRoute() as ipr:
                ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")
                for tap in ("tap0", "tap1"):
                    ipr.link("add", ifname=tap, kind="tuntap", mode="tap")
                    write_sysctl(f"net.ipv6.conf.{tap}.disable_ipv6", 1)
                    ipr.link("set", index=ipr.link_lookup(ifname=tap)[0], state="up")
                ipr.addr("add", index=ipr.link_lookup(ifname="tap1")[0], address=CONTROL[1], prefixlen=CONTROL[2])
                with open(self.dir / "uml.log", "wb") as log:
                    self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
                                                 env=dict(os.environ, LD_PRELOAD=str(shim), TMPDIR=str(self.dir)),
                                                 start_new_session=True)
            self._wait_ready(t0 + self.boot_timeout)
            self.boot_time = time.monotonic() - t0
            threading.Thread(target=self._read_console, name="tcpconf-uml-console", daemon=True).start()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self, deadline: float) -> None:
        fd, buf = self.proc.stdout.fileno(), b""
        while True:
            *lines, buf = buf.split(b"\n")
            for line in lines:
                if READY in line:
                    return
                self.console.append(line.decode(errors="replace").rstrip("\r"))
            left = deadline - time.monotonic()
            chunk = os.read(fd, 65536) if left > 0 and select.select([fd], [], [], left)[0] else b""
            if not chunk:
                why = "stopped" if self.proc.poll() is not None else f"was not ready within {self.boot_timeout:g} s"
                tail = "\n  ".join(self.console[-12:])
                raise UmlError(f"UML {why}; its console said:\n  {tail}")
            buf += chunk

    def _read_console(self) -> None:
        for line in self.proc.stdout:
            self.console.append(line.decode(errors="replace").rstrip("\r\n"))
            del self.console[:-200]

    def options(self) -> list[str]:
        """The pytest options that point the suite at this UML."""
        from .catalog import PROFILES_DIR
        profile = "linux-" + ".".join(self.release().split(".")[:2])
        if not (PROFILES_DIR / f"{profile}.toml").exists():
            profile = "linux"
        opts = {"iface": "tap0", "netns": self.ns.name,
                "address": ",".join(a[0] for a in SUT.values()),
                "tester-address": ",".join(a[2] for a in SUT.values()),
                "agent": f"{CONTROL[0]}:{CONTROL[3]}", "agent-netns": self.ns.name, "profile": profile}
        out = ["--stack", "remote"]
        for key, value in opts.items():
            out += ["--stack-opt", f"{key}={value}"]
        return out

    def stop(self) -> None:
        if self.proc is not None:
            try:
                self.proc.stdin.close()           # end of input: a guest that is up powers off
            except OSError:
                pass
            try:
                self.proc.wait(timeout=5 if self.boot_time else 0)
            except subprocess.TimeoutExpired:
                pass
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)   # UML's processes: one per guest process
            except ProcessLookupError:
                pass
            self.proc.wait()
            deadline = time.monotonic() + 10
            for pid in group(self.proc.pid):      # still exiting: wait for each (a pidfd reads when it is gone)
                try:
                    fd = os.pidfd_open(pid)
                except ProcessLookupError:
                    continue
                select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
                os.close(fd)
        if self.ns is not None:
            self.ns.remove()
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> "Uml":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m harness.uml",
        description="Boot user-mode Linux with the suite's agent inside, in a namespace of its own, and run "
                    "COMMAND with PYTEST_ADDOPTS pointing pytest at it (--stack remote); without COMMAND, print "
                    "those options and wait for Ctrl-C. Everything goes at the end.",
        epilog="example: python -m harness.uml -- .venv/bin/pytest conformance/ -m 'not slow and not matrix'")
    p.add_argument("--mem", default="128M", help="the guest's memory (default 128M)")
    p.add_argument("command", nargs="*", help="the command to run against it, after --")
    a = p.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        with Uml(mem=a.mem) as uml:
            opts = shlex.join(uml.options())
            print(f"uml: Linux {uml.release()} (user-mode) up in {uml.boot_time:.1f} s, namespace {uml.ns.name}",
                  file=sys.stderr, flush=True)
            if not a.command:
                print(f"uml: run the suite against it (one run at a time, without -n):\n"
                      f"  .venv/bin/pytest conformance/ {opts}\numl: Ctrl-C stops it", file=sys.stderr, flush=True)
                try:
                    uml.proc.wait()
                except KeyboardInterrupt:
                    pass
                return 0
            env = dict(os.environ, PYTEST_ADDOPTS=f"{os.environ.get('PYTEST_ADDOPTS', '')} {opts}".strip())
            child = subprocess.Popen(a.command, env=env)
            try:
                while True:
                    try:
                        return child.wait()
                    except KeyboardInterrupt:     # the command got it too, and ends its own way
                        continue
            finally:
                if child.poll() is None:          # we were told to stop (SIGTERM): so is the command
                    child.terminate()
                    child.wait()
    except UmlError as e:
        print(f"uml: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    if sys.argv[1:] == ["--guest"]:
        guest()
    else:
        sys.exit(main())
