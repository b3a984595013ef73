"""The suite as a user runs it: the quick run against Linux with its Allure
contract, bad input, no root, and cleanup after Ctrl-C."""
import json
from pathlib import Path
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from harness import netns

ROOT = Path(__file__).resolve().parent.parent

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
    r, pid = run("conformance/", "-m", "not slow", "-n", "4", f"--alluredir={results}")
    assert r.returncode == 0, r.stdout[-3000:]
    assert mine(pid) == []                  # a normal run leaves no namespace
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
    (["--sysctl", "net.ipv4.tcp_synack_retries=lots"], "the kernel refuses it"),
    (["-n", "2", "--alluredir=/tmp/tcpconf-unused", "--clean-alluredir"], "drop it"),
])
def test_bad_input_is_one_line_and_leaves_nothing(args, message):
    r, pid = run("conformance/", *args)
    assert r.returncode == 4
    errors = [l for l in r.stderr.splitlines() if l.strip()]
    assert len(errors) == 1 and message in errors[0] and "Traceback" not in r.stderr + r.stdout
    assert mine(pid) == []


def _as_nobody(*args, env=None):
    """Run pytest as user nobody with the system Python (this checkout's venv
    interpreter may live where nobody cannot reach) and the venv's packages."""
    import site
    system = "/usr/bin/python3"
    if not os.access(system, os.X_OK):
        pytest.skip("no /usr/bin/python3 to run as another user")
    base = {"PATH": "/usr/bin:/bin", "USER": "nobody", "LOGNAME": "nobody", "HOME": "/nonexistent",
            "PYTHONPATH": f"{site.getsitepackages()[0]}:{ROOT}"}
    return subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", system, "-m", "pytest",
                           "-p", "no:cacheprovider", *args], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**base, **(env or {})})


def _pids_of(uid: int) -> set[int]:
    pids = set()
    for p in os.listdir("/proc"):
        try:
            with open(f"/proc/{p}/status") as f:
                if any(l.startswith("Uid:") and int(l.split()[1]) == uid for l in f):
                    pids.add(int(p))
        except (ValueError, OSError):
            continue
    return pids


def test_without_root_the_suite_reexecutes_in_a_user_namespace():
    """It passes, and none of its namespaces shows in the host's /run/netns
    (they live on a private tmpfs). Its processes are found while it runs,
    since other tests' killed workers may leave namespaces of dead owners
    there for a moment."""
    nobody, done = set(), threading.Event()

    def watch():
        while not done.is_set():
            nobody.update(_pids_of(65534))
            done.wait(0.02)
    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        r = _as_nobody("conformance/", "-k", "test_data_on_third_ack_is_delivered or "
                                             "test_fin_retransmitted_into_time_wait", "-n", "2", "-q")
    finally:
        done.set()
        watcher.join()
    if "allow unprivileged user namespaces" in r.stderr:
        pytest.skip("this kernel refuses unprivileged user namespaces")
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "4 passed" in r.stdout
    assert nobody, "the run's processes were never seen"
    assert [n for n in netns.suite_namespaces() if int(netns.NAME_RE.match(n).group(1)) in nobody] == []


def test_without_root_or_user_namespaces_one_line_says_what_to_do():
    r = _as_nobody("conformance/", env={"TCPCONF_ROOTLESS": "1"})   # as if the kernel refused
    assert r.returncode != 0
    lines = [l for l in (r.stdout + r.stderr).splitlines() if l.strip()]
    assert len(lines) == 1 and "needs root" in lines[0] and "sudo" in lines[0], lines


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


def _capture_host(stop, found):
    """Every frame on every interface of the host's namespace that carries a
    suite address."""
    import select as sel
    from scapy.layers.l2 import Ether
    import ipaddress
    from scapy.layers.inet import IP
    from scapy.layers.inet6 import IPv6
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
    suite = (ipaddress.ip_network("198.18.0.0/15"), ipaddress.ip_network("2001:2::/48"))

    def ours(addr: str) -> bool:
        a = ipaddress.ip_address(addr)
        return any(a.version == n.version and a in n for n in suite)
    while not stop.is_set():
        if sel.select([s], [], [], 0.1)[0]:
            frame = Ether(s.recv(65536))
            ip = frame[IP] if IP in frame else frame[IPv6] if IPv6 in frame else None
            # the addresses of the datagram, not any two octets of someone's payload that look like them
            if ip is not None and (ours(ip.src) or ours(ip.dst)):
                found.append(frame.summary())
    s.close()


def test_nothing_the_suite_sends_appears_on_the_host_interfaces():
    import threading
    stop, found = threading.Event(), []
    t = threading.Thread(target=_capture_host, args=(stop, found))
    t.start()
    try:
        r, _ = run("conformance/", "-m", "not slow", "-n", "4", "-q")
    finally:
        stop.set()
        t.join()
    assert r.returncode == 0, r.stdout[-2000:]
    assert found == [], found[:5]


def test_a_worker_killed_with_sigkill_leaves_no_namespace():
    p = subprocess.Popen([*PYTEST, "conformance/", "-k", "retries-2", "-n", "2", "-q"], cwd=ROOT,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 30
    victim = None
    while victim is None:
        assert time.monotonic() < deadline and p.poll() is None, "no worker ever created a namespace"
        owners = {int(netns.NAME_RE.match(n).group(1)) for n in netns.suite_namespaces()}
        children = [int(c) for c in open(f"/proc/{p.pid}/task/{p.pid}/children").read().split()]
        victim = next((c for c in children if c in owners), None)
        time.sleep(0.02)
    os.kill(victim, signal.SIGKILL)
    out, _ = p.communicate(timeout=60)
    assert p.returncode != 0 and "crashed" in out, out
    assert mine(victim) == [], out
    assert mine(p.pid) == []


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


def test_a_crashing_sut_process_fails_the_case_and_leaves_nothing(run_case):
    """The user-space stack's agent dies in the middle of a case (SIGKILL):
    the case fails, saying so, and no process or namespace remains."""
    from harness.stacks import stack_class
    name = next((n for n in ("lwip", "gvisor") if stack_class(n).agent_path().exists()), None)
    if name is None:
        pytest.skip("no user-space stack built: python3 -m harness.setup --stack lwip")
    seen = {}

    class Crash:
        @pytest.fixture(autouse=True)
        def _crash(self, request):
            if "stack" in request.fixturenames:
                st = request.getfixturevalue("stack")
                seen.update(pid=st.proc.pid, ns=st.ns.name)
                os.kill(st.proc.pid, signal.SIGKILL)
            yield

    result = run_case("conformance/test_handshake.py::test_data_on_third_ack_is_delivered[ipv4]",
                      "--stack", name, plugins=[Crash()])
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed", 0) + outcomes.get("errors", outcomes.get("error", 0)) == 1, outcomes
    assert "ECONNRESET" in result.stdout.str() and "crash" in result.stdout.str()
    assert seen["ns"] not in netns.suite_namespaces()
    assert not netns.pid_alive(seen["pid"])


def test_two_suites_at_the_same_time_do_not_collide():
    """Two runs side by side (each with its own workers): names, interfaces
    and addresses live in each run's own namespaces."""
    args = [*PYTEST, "conformance/", "-n", "2", "-q", "-k",
            "test_data_on_third_ack_is_delivered or test_fin_retransmitted_into_time_wait or test_syn_to_closed_port"]
    runs = [subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for _ in range(2)]
    outs = [p.communicate(timeout=300)[0] for p in runs]
    for p, out in zip(runs, outs):
        assert p.returncode == 0 and "6 passed" in out, out[-2000:]
        assert mine(p.pid) == []


@pytest.mark.parametrize("name", ["lwip", "gvisor"])
def test_an_unbuilt_agent_is_one_line_saying_what_to_run(pytester, monkeypatch, name):
    from harness.stacks import stack_class
    monkeypatch.setattr(stack_class(name), "agent_path", classmethod(lambda cls: Path("/nonexistent/agent")))
    result = pytester.runpytest_inprocess("-p", "harness.plugin", "--stack", name)
    assert result.ret == 4
    errors = [l for l in result.errlines if l.strip()]
    assert len(errors) == 1 and f"python3 -m harness.setup --stack {name}" in errors[0], errors
