"""Benchmarks of the harness: `python -m harness.bench` (as root).

Rules of this file:
- Benchmarks live here, never in timed tests. Each prints its figure beside
  its target, measured in one run, side by side.
- Round trip: SYN written to the TUN -> SYN-ACK read from it, from the
  Link's own timestamps (what a case's timing is judged on).
- Case overhead: setup + call + teardown of the quick cases that wait on no
  timer, as pytest reports them.
- Suite wall time / longest case: the full suite with xdist, `--suite`.
- The state x event matrix, `--matrix`: its wall time for both families
  with xdist (target: 3 minutes on 2 cores) and the per-case duration
  (setup + call + teardown) p50 and p99.
- Timer error: intervals between the SUT's SYN-ACK retransmissions measured
  from the Trace against the same intervals from kernel receive timestamps
  (SO_TIMESTAMPNS on an AF_PACKET capture in the SUT's namespace).
- `--verdicts N [--hog]`: the suite N times in a row (with every core kept
  busy by a CPU hog), and whether every test's verdict was the same each time.
- Script overhead: a packetdrill script that waits on no timer (handshake
  and close), run as a pytest item: setup + call + teardown, parse included.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import random
import socket
import struct
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SO_TIMESTAMPNS = 35
PACKET_OUTGOING = 4


def percentile(values: list[float], p: float) -> float:
    v = sorted(values)
    return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))]


def _stack(family="ipv4", **sysctls):
    from .stacks import StackConfig
    from .stacks.linux import LinuxStack
    from .trace import Trace
    return LinuxStack(StackConfig(family, Trace(), {k: str(v) for k, v in sysctls.items()})).start()


def round_trip(n: int) -> list[float]:
    """n handshakes' SYN -> SYN-ACK, seconds."""
    from .peer import Peer
    st = _stack()
    try:
        st.app.listen(8080, backlog=4096)
        rng = random.Random(1)
        out = []
        for i in range(n):
            p = Peer(st.link, "ipv4", st.peer_addr, st.sut_addr, 20000 + i % 40000, 8080, rng)
            p.cursor = len(st.trace.entries)
            syn = p.send("S")
            synack = p.expect("SA")
            out.append(synack.t - syn.t)
            p.send("R", seq=p.iss + 1)
        return out
    finally:
        st.close()


def case_overhead(rounds: int) -> list[float]:
    """Per-case durations (setup+call+teardown) of the cases that wait on no timer."""
    import pytest

    class Durations:
        def __init__(self):
            self.per_item: dict = {}

        def pytest_collection_modifyitems(self, items):
            # the cases that wait on no timer: they take no timing tolerance
            items[:] = [i for i in items if "tolerance" not in getattr(i, "fixturenames", ())]

        def pytest_runtest_logreport(self, report):
            self.per_item[report.nodeid] = self.per_item.get(report.nodeid, 0.0) + report.duration

    out = []
    for _ in range(rounds):
        d = Durations()
        with open(os.devnull, "w") as quiet, contextlib.redirect_stdout(quiet):
            rc = pytest.main(["-q", "-p", "no:xdist", "-m", "not slow and not matrix", str(ROOT / "conformance")], plugins=[d])
        if rc not in (0,):
            raise SystemExit(f"bench: the quick cases did not pass (exit {rc})")
        out += list(d.per_item.values())
    return out


TRIVIAL_SCRIPT = """// handshake and close: no timer
    0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3
   +0 setsockopt(3, SOL_SOCKET, SO_REUSEADDR, [1], 4) = 0
   +0 bind(3, ..., ...) = 0
   +0 listen(3, 1) = 0
   +0 < S 0:0(0) win 65535 <mss 1460>
   +0 > S. 0:0(0) ack 1 <...>
   +0 < . 1:1(0) ack 1 win 65535
   +0 accept(3, ..., ...) = 4
   +0 close(4) = 0
   +0 > F. 1:1(0) ack 1
   +0 < F. 1:1(0) ack 2 win 65535
   +0 > . 2:2(0) ack 2
"""


def script_overhead(runs: int) -> tuple[list[float], float]:
    """Per-item durations (setup+call+teardown) of a packetdrill script that
    waits on no timer, `runs` copies of it collected from one directory; and
    the CPU time (user + system) the tester spent per run, which a busy
    machine does not inflate as it does wall time."""
    import resource

    import pytest

    def cpu() -> float:
        r = resource.getrusage(resource.RUSAGE_SELF)
        return r.ru_utime + r.ru_stime

    class Durations:
        def __init__(self):
            self.per_item: dict = {}
            self.cpu: list = []

        def pytest_runtest_logstart(self, nodeid, location):
            self.started = cpu()

        def pytest_runtest_logfinish(self, nodeid, location):
            self.cpu.append(cpu() - self.started)

        def pytest_runtest_logreport(self, report):
            self.per_item[report.nodeid] = self.per_item.get(report.nodeid, 0.0) + report.duration

    with tempfile.TemporaryDirectory() as tmp:
        for n in range(runs):
            Path(tmp, f"trivial-{n}.pkt").write_text(TRIVIAL_SCRIPT)
        d = Durations()
        with open(os.devnull, "w") as quiet, contextlib.redirect_stdout(quiet):
            rc = pytest.main(["-q", "-p", "no:xdist", "-c", str(ROOT / "pyproject.toml"), "--rootdir", str(ROOT),
                              "--family", "ipv4", tmp], plugins=[d])
        if rc != 0:
            raise SystemExit(f"bench: the trivial script did not pass (exit {rc})")
    return list(d.per_item.values()), percentile(d.cpu, 50)


def verdicts(junit: Path) -> dict:
    """test id -> passed / failed / skipped / xfailed, from a JUnit XML file."""
    out = {}
    for tc in ET.parse(junit).getroot().iter("testcase"):
        kinds = {c.tag: c for c in tc}
        if "failure" in kinds or "error" in kinds:
            v = "failed"
        elif "skipped" in kinds:
            v = "xfailed" if "xfail" in (kinds["skipped"].get("type", "") + kinds["skipped"].get("message", "")) \
                else "skipped"
        else:
            v = "passed"
        out[f"{tc.get('classname')}::{tc.get('name')}"] = v
    return out


def stability(runs: int, workers: int, hog: bool, args: list[str]) -> list[dict]:
    """The suite `runs` times in a row (optionally with every core kept busy
    by a CPU hog); the verdicts of each run."""
    hogs = []
    if hog:
        for _ in range(os.cpu_count() or 1):
            hogs.append(subprocess.Popen([sys.executable, "-c", "while True: pass"]))
    try:
        out = []
        with tempfile.TemporaryDirectory() as tmp:
            for n in range(runs):
                junit = Path(tmp) / f"run{n}.xml"
                t0 = time.monotonic()
                subprocess.run([sys.executable, "-m", "pytest", str(ROOT / "conformance"), "-q", "-n", str(workers),
                                f"--junitxml={junit}", *args], cwd=ROOT, capture_output=True, text=True)
                out.append(verdicts(junit))
                print(f"  run {n + 1}/{runs}: {time.monotonic() - t0:.0f} s, "
                      f"{sum(v == 'failed' for v in out[-1].values())} failed", flush=True)
        return out
    finally:
        for h in hogs:
            h.kill()
            h.wait()


def suite_ratio(workers: int) -> tuple[float, float]:
    """(wall time, longest case) of the full suite with xdist."""
    with tempfile.TemporaryDirectory() as tmp:
        junit = Path(tmp) / "junit.xml"
        t0 = time.monotonic()
        r = subprocess.run([sys.executable, "-m", "pytest", str(ROOT / "conformance"), "-q", "-n", str(workers),
                            f"--junitxml={junit}"], cwd=ROOT, capture_output=True, text=True)
        wall = time.monotonic() - t0
        if r.returncode != 0:
            raise SystemExit(f"bench: the suite did not pass:\n{r.stdout[-2000:]}")
        longest = max(float(tc.get("time", 0)) for tc in ET.parse(junit).getroot().iter("testcase"))
    return wall, longest


def matrix(workers: int, args: list[str]) -> tuple[float, list[float], dict]:
    """(wall time, per-case durations, verdicts) of the whole matrix with xdist."""
    with tempfile.TemporaryDirectory() as tmp:
        junit = Path(tmp) / "junit.xml"
        t0 = time.monotonic()
        subprocess.run([sys.executable, "-m", "pytest", str(ROOT / "conformance" / "test_matrix.py"), "-q",
                        "-n", str(workers), f"--junitxml={junit}", *args], cwd=ROOT, capture_output=True, text=True)
        wall = time.monotonic() - t0
        times = [float(tc.get("time", 0)) for tc in ET.parse(junit).getroot().iter("testcase")]
        return wall, times, verdicts(junit)


def timer_error(connections: int) -> tuple[list[float], list[float]]:
    """|interval from the Trace - interval from kernel timestamps| for each
    SYN-ACK retransmission interval of `connections` half-open connections
    Packets are paired by their bytes (retransmissions differ in TSval).
    Also returns the kernel timer's relative lateness per interval."""
    from .peer import Peer
    retries = 2
    st = _stack(**{"net.ipv4.tcp_synack_retries": retries})
    try:
        with st.ns.entered():
            cap = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(0x0003))
        cap.bind(("tun0", 0x0003))            # Python applies htons to this one
        cap.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        cap.setblocking(False)
        st.app.listen(8080, backlog=4096)
        rng = random.Random(2)
        peers = [Peer(st.link, "ipv4", st.peer_addr, st.sut_addr, 30000 + i, 8080, rng) for i in range(connections)]
        for p in peers:                          # 50 ms apart: one timer at a time, as in a case
            p.send("S")
            end = time.monotonic() + 0.05
            while time.monotonic() < end:
                st.link.poll(end)
        deadline = time.monotonic() + sum(2 ** k for k in range(retries + 1)) + 1.0
        while time.monotonic() < deadline:
            st.link.poll(deadline)
        kernel: dict[bytes, list[float]] = {}
        while True:
            try:
                data, anc, _, addr = cap.recvmsg(65536, 64)
            except BlockingIOError:
                break
            if addr[2] != PACKET_OUTGOING:
                continue
            for level, kind, raw in anc:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                    sec, nsec = struct.unpack("qq", raw[:16])
                    kernel.setdefault(data, []).append(sec + nsec / 1e9)
        cap.close()
        pairs: dict[int, list] = {}          # peer port -> [(trace stamp, kernel stamp)], by identical bytes
        seen: dict[bytes, int] = {}
        for e in st.trace.entries:
            if e.sent_by == "sut" and e.raw in kernel:
                n = seen.get(e.raw, 0)
                seen[e.raw] = n + 1
                if n < len(kernel[e.raw]):
                    pairs.setdefault(e.dport, []).append((e.t, kernel[e.raw][n]))
        errors, lateness = [], []
        for got in pairs.values():
            for n, ((a, ka), (b, kb)) in enumerate(zip(got, got[1:])):
                errors.append(abs((b - a) - (kb - ka)))
                lateness.append((kb - ka) / 2 ** n - 1)      # the kernel timer's own lateness
        return errors, lateness
    finally:
        st.close()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m harness.bench", description=__doc__.split("\n\n")[0])
    ap.add_argument("--handshakes", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=5, help="runs of the quick cases for the overhead")
    ap.add_argument("--connections", type=int, default=40, help="half-open connections for the timer error")
    ap.add_argument("--scripts", type=int, default=50, help="runs of the trivial packetdrill script")
    ap.add_argument("--suite", action="store_true", help="also run the full suite (slow cases: about 70 s)")
    ap.add_argument("--matrix", action="store_true", help="only run the state x event matrix and time it")
    ap.add_argument("-n", "--workers", type=int, default=12, help="xdist workers for --suite and --verdicts")
    ap.add_argument("--verdicts", type=int, default=0, metavar="RUNS",
                    help="only run the suite RUNS times in a row and compare the verdicts")
    ap.add_argument("--hog", action="store_true", help="with --verdicts: keep every core busy meanwhile")
    a, pytest_args = ap.parse_known_args(argv)
    if a.verdicts:
        runs = stability(a.verdicts, a.workers, a.hog, pytest_args)
        differ = sorted(t for t in set().union(*runs) if len({r.get(t) for r in runs}) > 1)
        print(f"verdicts of {len(runs[0])} tests over {len(runs)} runs{' with a CPU hog' if a.hog else ''}: "
              f"{'identical' if not differ else f'{len(differ)} differ'}")
        for t in differ:
            print(f"  {t}: {[r.get(t) for r in runs]}")
        return 1 if differ else 0
    if a.matrix:
        wall, times, got = matrix(a.workers, pytest_args)
        kinds = {k: sum(v == k for v in got.values()) for k in ("passed", "xfailed", "skipped", "failed")}
        print(f"matrix wall time                {wall:7.1f} s   target <= 180 s   ({len(times)} tests, -n {a.workers}: "
              + ", ".join(f"{n} {k}" for k, n in kinds.items() if n) + ")")
        print(f"matrix case duration            p50 {percentile(times, 50) * 1e3:7.1f} ms  "
              f"p99 {percentile(times, 99) * 1e3:7.1f} ms")
        return 1 if kinds["failed"] else 0
    if os.geteuid() != 0:
        print("bench: needs root (network namespaces): sudo .venv/bin/python -m harness.bench", file=sys.stderr)
        return 2
    # The kernel switches receive timestamping on (a global static key) in a
    # deferred work item; until it has, captured packets are stamped when
    # read. Keep it on from the start so the capture below is stamped at once.
    stamps_on = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    stamps_on.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    rtt = round_trip(a.handshakes)
    print(f"SYN -> SYN-ACK round trip       p50 {percentile(rtt, 50) * 1e6:7.1f} us  p99 {percentile(rtt, 99) * 1e6:7.1f} us"
          f"   target <= 100 us   ({len(rtt)} handshakes)", flush=True)
    err, late = timer_error(a.connections)
    print(f"timer error vs kernel stamps    p50 {percentile(err, 50) * 1e3:7.3f} ms  p99 {percentile(err, 99) * 1e3:7.3f} ms"
          f"   target <= 2 ms     ({len(err)} intervals)", flush=True)
    print(f"kernel SYN-ACK timer lateness   p50 {percentile(late, 50) * 100:+7.2f} %   max {max(late) * 100:+7.2f} %"
          f"    tolerance {12.5:.1f} %  (1 s and 2 s intervals)", flush=True)
    cases = case_overhead(a.rounds)
    print(f"case overhead, no timer         p50 {percentile(cases, 50) * 1e3:7.1f} ms  p99 {percentile(cases, 99) * 1e3:7.1f} ms"
          f"   target <= 30 ms    ({len(cases)} cases)", flush=True)
    scripts, cpu = script_overhead(a.scripts)
    print(f"packetdrill script, no timer    p50 {percentile(scripts, 50) * 1e3:7.1f} ms  p99 {percentile(scripts, 99) * 1e3:7.1f} ms"
          f"   target <= 30 ms    ({len(scripts)} runs of a handshake and close; tester CPU p50 {cpu * 1e3:.1f} ms)",
          flush=True)
    if a.suite:
        wall, longest = suite_ratio(a.workers)
        print(f"suite wall time / longest case  {wall / longest:5.2f}  (wall {wall:.1f} s, longest {longest:.1f} s,"
              f" -n {a.workers})   target <= 1.25", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
