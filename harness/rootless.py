"""Run the suite without root: re-execute pytest inside a user namespace.

Rules of this file:
- Only for a user who is not root, only when the kernel allows unprivileged
  user namespaces, and only once (TCPCONF_ROOTLESS marks the re-executed run).
- The new process is root in a user namespace of its own, with its own
  network namespace (empty: nothing it sends can reach the host's
  interfaces) and its own mount namespace, where /run/netns is a private
  tmpfs. Everything the suite creates there dies with the process: nothing
  can leak, whatever happens to the run.
- Where the kernel refuses, the caller prints one line saying what to run.
"""
from __future__ import annotations

import ctypes
import os
import sys

CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWNET = 0x00020000, 0x10000000, 0x40000000
MS_REC, MS_PRIVATE = 0x4000, 0x40000
MARK = "TCPCONF_ROOTLESS"


class RootlessError(OSError):
    pass


def _check(rc: int, what: str) -> None:
    if rc != 0:
        err = ctypes.get_errno()
        raise RootlessError(err, f"{what}: {os.strerror(err)}")


def enter_user_namespace() -> None:
    """Become root of a new user namespace with private network and mount
    namespaces, /run/netns on a private tmpfs. Single-threaded callers only."""
    libc = ctypes.CDLL(None, use_errno=True)
    uid, gid = os.getuid(), os.getgid()
    _check(libc.unshare(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWNET), "unshare(user, mount, net)")
    with open("/proc/self/setgroups", "w") as f:
        f.write("deny")
    with open("/proc/self/uid_map", "w") as f:
        f.write(f"0 {uid} 1")
    with open("/proc/self/gid_map", "w") as f:
        f.write(f"0 {gid} 1")
    _check(libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None), "make mounts private")
    target = b"/run/netns" if os.path.isdir("/run/netns") else b"/run"
    _check(libc.mount(b"tcpconf", target, b"tmpfs", 0, b"mode=0755"), f"mount tmpfs on {target.decode()}")


def reexec(args: list[str], cwd: str) -> None:
    """Re-execute `python -m pytest ARGS` as root of a user namespace (does
    not return), or raise RootlessError."""
    if os.environ.get(MARK):
        raise RootlessError(0, "already inside a user namespace and still not root")
    enter_user_namespace()
    os.environ[MARK] = "1"
    os.chdir(cwd)
    sys.stdout.flush()
    sys.stderr.flush()
    # /proc/self/exe: the interpreter already running (its path may not be
    # reachable from inside the namespace); argv[0] keeps the venv.
    os.execv("/proc/self/exe", [sys.executable, "-m", "pytest", *args])
