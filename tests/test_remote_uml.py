"""`--stack remote` against a second kernel: user-mode Linux 6.1 booted by
harness/uml.py. The quick suite gives passes, documented deviations and
capability skips only, against the linux-6.1 profile; UML, its namespace
and its directory are gone afterwards, also when it does not come up and
when its owner is killed outright."""
from pathlib import Path
import os
import re
import select
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET

import pytest

from faults import Fault, FaultPlugin
from harness import netns
from harness.uml import Uml, UmlError, group, reap as uml_reap

ROOT = Path(__file__).resolve().parent.parent

pytestmark = [pytest.mark.root, pytest.mark.xdist_group("suite"),    # one UML at a time (see conftest.SUITE_GROUP)
              pytest.mark.skipif(Uml.binary() is None,
                                 reason="user-mode Linux is not installed (python3 -m harness.setup --uml)")]


@pytest.fixture(scope="module")
def uml():
    with Uml() as u:
        # The guest's timers run on its host processes: on two cores shared
        # with the project's other tests they get the CPU a hypervisor would
        # give its guest (UML's processes are one process group).
        os.setpriority(os.PRIO_PGRP, u.proc.pid, -5)
        yield u


def _verdicts(junit) -> dict:
    """test id -> (verdict, message)"""
    out = {}
    for tc in ET.parse(junit).getroot().iter("testcase"):
        verdict, message = "passed", ""
        for c in tc:
            if c.tag in ("failure", "error"):
                verdict, message = "failed", c.get("message", "")
            elif c.tag == "skipped":
                verdict = "xfailed" if c.get("type") == "pytest.xfail" else "skipped"
                message = c.get("message", "")
        out[f"{tc.get('classname')}::{tc.get('name')}"] = (verdict, message)
    return out


def test_quick_suite_against_linux_6_1(uml, tmp_path):
    assert uml.release().startswith("6.1.")
    assert "profile=linux-6.1" in uml.options()
    assert uml.boot_time < 15, f"UML took {uml.boot_time:.1f} s to boot"
    junit = tmp_path / "uml.xml"
    run = subprocess.run([sys.executable, "-m", "pytest", "conformance/", "-m", "not slow and not matrix", "-q", "-p", "no:randomly",
                          *uml.options(), f"--junitxml={junit}"], cwd=ROOT, capture_output=True, text=True,
                         timeout=600)
    verdicts = _verdicts(junit)
    failed = {t: m for t, (v, m) in verdicts.items() if v == "failed"}
    failures = run.stdout[run.stdout.find("= FAILURES ="):][:12000]      # each failure with its trace
    assert not failed and run.returncode == 0, f"{failed}\n{failures or run.stdout[-3000:]}\nconsole: {uml.console[-10:]}"
    skips = {t: m for t, (v, m) in verdicts.items() if v == "skipped"}
    # a capability 6.1 lacks, or a variant of a case that has no meaning in one family
    assert all(m.startswith("stack remote ") or re.search(r"IPv[46]|ipv[46]|ICMPv6", m) for m in skips.values()), \
        f"skips that are neither a capability nor a family's: {skips}"
    counts = {v: sum(1 for x, _ in verdicts.values() if x == v) for v in ("passed", "xfailed", "skipped")}
    assert counts["passed"] > 50 and counts["xfailed"] > 0, counts
    # 6.1 lacks tcp_rto_max_ms: the variant that shortens the cap is skipped, saying so
    assert any("cannot set rto_max" in m for m in skips.values()), skips


def test_reopened_time_wait_iss_off_the_isn_clock_fails(uml, run_case):
    """Negative control of the linux-6.1 answer of time-wait.reopen: the
    SYN-ACK of the new incarnation with an ISS 2**22 ticks (0.27 s) off the
    ISN clock fails the case, naming MAY-2."""
    result = run_case("conformance/test_close.py::test_syn_above_rcv_nxt_reopens_time_wait[ipv4]", *uml.options(),
                      plugins=[FaultPlugin(Fault("SA", nth=2, action="seq", offset=1 << 22))])
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert "RFC9293/MAY-2" in out and "advanced by the ISN clock" in out
    assert "expected:" in out and "seen:" in out


def test_stop_leaves_nothing():
    u = Uml().start()
    pgid, ns, where = u.proc.pid, u.ns.name, u.dir
    assert group(pgid) and ns in netns.suite_namespaces() and where.exists()
    u.stop()
    assert not group(pgid)
    assert ns not in netns.suite_namespaces()
    assert not where.exists()


def test_failed_boot_leaves_nothing():
    u = Uml(boot_timeout=0.2)
    with pytest.raises(UmlError, match="not ready within"):
        u.start()
    assert u.proc.returncode is not None and not group(u.proc.pid)
    assert u.ns.name not in netns.suite_namespaces()
    assert not u.dir.exists()


def _uml_of(ns: str) -> list[int]:
    """The processes of the UML whose umid is `ns`."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if f"umid={ns}".encode() in f.read().split(b"\0"):
                    found.append(int(pid))
        except OSError:
            pass
    return found


def test_uml_of_a_killed_owner_powers_off():
    """`python -m harness.uml` killed with SIGKILL: its UML sees the end of its
    console and powers off; the next run reaps its namespace and directory."""
    owner = subprocess.Popen([sys.executable, "-m", "harness.uml"], cwd=ROOT, stderr=subprocess.PIPE, text=True)
    try:
        said = ""
        for line in owner.stderr:
            said += line
            if "Ctrl-C stops it" in line:
                break
        assert "--stack-opt netns=" in said, said
        ns = said.split("--stack-opt netns=")[1].split()[0]
        pidfds = [os.pidfd_open(pid) for pid in _uml_of(ns)]
        assert pidfds
    finally:
        owner.kill()
        owner.wait()
    deadline = time.monotonic() + 15
    try:
        for fd in pidfds:                     # readable once the process has exited
            assert select.select([fd], [], [], max(0.0, deadline - time.monotonic()))[0], "UML outlived its owner"
    finally:
        for fd in pidfds:
            os.close(fd)
    netns.reap()
    assert ns not in netns.suite_namespaces()
    left = list(Path(tempfile.gettempdir()).glob(f"tcpconf-uml-{owner.pid}-*"))
    assert left and set(uml_reap()) >= {str(d) for d in left}
    assert not any(d.exists() for d in left)
