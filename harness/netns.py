"""Network namespaces of the suite: created, entered, configured, removed.

Rules of this file:
- Every namespace is named `tcpconf-<pid>-<n>`: <pid> is the process that
  owns it, so a later run can reap what a dead one left (`reap_stale`).
- pyroute2 does all namespace work; this file adds the naming, the registry
  of live namespaces and the guarantee that they go away on every exit path
  (normal teardown, atexit, the xdist controller reaping a crashed worker).
- Entering a namespace switches the calling thread only (setns(2)); sockets,
  TUN devices and netlink sockets created inside stay in it after leaving.
- Sysctls are read and written through /proc/sys while inside the namespace:
  a new namespace starts from compiled-in defaults, not from the host's.
"""
from __future__ import annotations

import atexit
import itertools
import os
import queue
import re
import threading
from contextlib import contextmanager

from pyroute2 import netns as _netns

PREFIX = "tcpconf"
NAME_RE = re.compile(rf"^{PREFIX}-(\d+)-(\d+)$")
RUN_DIR = "/run/netns"

_counter = itertools.count()
_live: dict[str, "Namespace"] = {}
_lock = threading.Lock()


class NamespaceError(RuntimeError):
    pass


def sysctl_path(key: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_.\-]+", key) or ".." in key:
        raise NamespaceError(f"bad sysctl name {key!r}: expected e.g. net.ipv4.tcp_synack_retries")
    return "/proc/sys/" + key.replace(".", "/")


def write_sysctl(key: str, value) -> None:
    """Set a sysctl of the namespace the calling thread is in."""
    path = sysctl_path(key)
    try:
        with open(path, "w") as f:
            f.write(str(value))
    except FileNotFoundError:
        raise NamespaceError(f"unknown sysctl {key}: no {path} in the SUT namespace") from None
    except OSError as e:
        raise NamespaceError(f"cannot set sysctl {key}={value}: {e.strerror}") from None


class Namespace:
    """One network namespace owned by this process."""

    def __init__(self, name: str):
        self.name = name
        self.removed = False

    @classmethod
    def create(cls) -> "Namespace":
        name = f"{PREFIX}-{os.getpid()}-{next(_counter)}"
        ns = cls(name)
        with _lock:
            _live[name] = ns
        if threading.current_thread() is threading.main_thread():
            # In-process: unshare on this thread and bind-mount it (no fork).
            _netns.pushns()
            try:
                _netns.setns(name, flags=os.O_CREAT | os.O_EXCL, fork=False)
            finally:
                _netns.popns()
        else:
            _netns.create(name)
        return ns

    @contextmanager
    def entered(self):
        """Run the body with this thread inside the namespace."""
        _netns.pushns(self.name)
        try:
            yield self
        finally:
            _netns.popns()

    def sysctl(self, key: str) -> str:
        with self.entered(), open(sysctl_path(key)) as f:
            return f.read().strip()

    def set_sysctl(self, key: str, value) -> None:
        with self.entered():
            write_sysctl(key, value)

    def remove(self) -> None:
        if self.removed:
            return
        self.removed = True
        with _lock:
            _live.pop(self.name, None)
        try:
            _netns.remove(self.name)
        except OSError:
            pass


def owned() -> list[str]:
    """Namespaces this process created and has not removed yet."""
    with _lock:
        return list(_live)


def pid_alive(pid: int) -> bool:
    """True if `pid` runs (a zombie, killed but not yet waited for, is dead)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def suite_namespaces() -> list[str]:
    try:
        return sorted(n for n in os.listdir(RUN_DIR) if NAME_RE.match(n))
    except FileNotFoundError:
        return []


def reap() -> list[str]:
    """Remove the namespaces of processes that are gone (a run killed
    outright, an xdist worker killed with SIGKILL)."""
    reaped = []
    for name in suite_namespaces():
        pid = int(NAME_RE.match(name).group(1))
        if pid != os.getpid() and not pid_alive(pid):
            try:
                _netns.remove(name)
                reaped.append(name)
            except OSError:
                pass
    return reaped


class Closer:
    """Closes TUN/TAP descriptors off the test's critical path.

    Unregistering a network device waits for an RCU grace period (20-30 ms
    here); a case should not pay for it. Descriptors and namespaces queued
    here are released by one background thread, and `drain()` (called at
    exit) waits until every one is gone.
    """

    def __init__(self):
        self.q: queue.Queue = queue.Queue()
        self.thread: threading.Thread | None = None

    def submit(self, fn, *args) -> None:
        if self.thread is None or not self.thread.is_alive():
            self.thread = threading.Thread(target=self._run, name="tcpconf-closer", daemon=True)
            self.thread.start()
        self.q.put((fn, args))

    def _run(self) -> None:
        while True:
            fn, args = self.q.get()
            try:
                fn(*args)
            except Exception:
                pass
            finally:
                self.q.task_done()

    def drain(self) -> None:
        if self.thread is not None:
            self.q.join()


closer = Closer()


@atexit.register
def _cleanup() -> None:
    closer.drain()
    for name in owned():
        _live[name].remove()
