"""The suite as a user runs it: the quick run against Linux with its Allure
contract, bad input, no root, and cleanup after Ctrl-C."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import ROOT
from harness import netns

pytestmark = pytest.mark.root
PYTEST = [sys.executable, "-m", "pytest", "-p", "no:randomly"]


def run(*args, timeout=300):
    """Run pytest from the repository root; the result carries the pid."""
    p = subprocess.Popen([*PYTEST, *args], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = p.communicate(timeout=timeout)
    return subprocess.CompletedProcess(p.args, p.returncode, out, err), p.pid


def mine(pid: int) -> list:
    return [n for n in netns.suite_namespaces() if n.startswith(f"{netns.PREFIX}-{pid}-")]


def test_quick_run_is_green_and_keeps_the_allure_contract(tmp_path):
    results = tmp_path / "allure"
    r, _ = run("conformance/", "-m", "not slow", "-n", "4", f"--alluredir={results}")
    assert r.returncode == 0, r.stdout[-3000:]
    found = [json.loads(p.read_text()) for p in results.glob("*-result.json")]
    assert found, "no Allure results written"
    for res in found:
        labels = {l["name"]: l["value"] for l in res["labels"]}
        params = {p["name"]: p["value"] for p in res.get("parameters", [])}
        assert labels.get("stack") == "linux", res["fullName"]
        assert labels.get("case", "").count(".") >= 1, res["fullName"]
        assert params.get("family", "").strip("'") in ("ipv4", "ipv6"), res["fullName"]
        names = {a["name"] for a in res.get("attachments", [])}
        assert "capture.pcap" in names and "tcpdump -S (absolute sequence numbers)" in names


@pytest.mark.parametrize("args, message", [
    (["--stack", "nope"], "unknown stack 'nope'"),
    (["--stack-opt", "iface=eth0"], "unknown --stack-opt 'iface' for stack linux"),
    (["--sysctl", "net.ipv4.no_such=1"], "no such sysctl"),
    (["--sysctl", "net.ipv4.tcp_sack"], "expected KEY=VALUE"),
])
def test_bad_input_is_one_line_and_leaves_nothing(args, message):
    r, pid = run("conformance/", *args)
    assert r.returncode == 4
    errors = [l for l in r.stderr.splitlines() if l.strip()]
    assert len(errors) == 1 and message in errors[0] and "Traceback" not in r.stderr + r.stdout
    assert mine(pid) == []


def test_without_root_one_line_says_what_to_do():
    r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                        *PYTEST, "conformance/"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode != 0
    lines = [l for l in (r.stdout + r.stderr).splitlines() if l.strip()]
    assert len(lines) == 1 and "needs root" in lines[0] and "sudo" in lines[0]


def test_ctrl_c_in_the_middle_leaves_no_namespace():
    p = subprocess.Popen([*PYTEST, "conformance/", "-k", "retries-2 and ipv4", "-q"], cwd=ROOT,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 30
    while not mine(p.pid):
        assert time.monotonic() < deadline and p.poll() is None, "the case never started"
        time.sleep(0.02)
    time.sleep(0.5)                          # in the middle of the SYN-ACK backoff
    p.send_signal(signal.SIGINT)
    out, _ = p.communicate(timeout=30)
    assert p.returncode != 0
    assert mine(p.pid) == [], out
    assert "Traceback" not in out.split("KeyboardInterrupt")[0]


def test_stale_namespaces_of_dead_runs_are_reaped():
    child = subprocess.Popen(["true"])       # its pid is surely not running any more
    child.wait()
    name = f"{netns.PREFIX}-{child.pid}-0"
    from pyroute2 import netns as p2
    p2.create(name)
    try:
        assert name in netns.suite_namespaces()
        r, _ = run("conformance/", "-k", "data_on_third_ack and ipv4", "-q")
        assert r.returncode == 0, r.stdout[-2000:]
        assert name not in netns.suite_namespaces()
    finally:
        if name in netns.suite_namespaces():
            p2.remove(name)
