"""The suite as a user runs it: the quick run against Linux with its Allure
contract, bad input, no root, and cleanup after Ctrl-C."""
import json
from pathlib import Path
import os
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time

import pytest

from faults import node
from harness import netns

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.root
PYTEST = [sys.executable, "-m", "pytest", "-p", "no:randomly"]
TUN = "/dev/net/tun"


def run(*args, timeout=300):
    """Run pytest from the repository root; the result carries the pid."""
    p = subprocess.Popen([*PYTEST, *args], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = p.communicate(timeout=timeout)
    return subprocess.CompletedProcess(p.args, p.returncode, out, err), p.pid


def mine(pid: int) -> list:
    return [n for n in netns.suite_namespaces() if n.startswith(f"{netns.PREFIX}-{pid}-")]


@pytest.mark.xdist_group("suite")
def test_quick_run_is_green_keeps_the_allure_contract_and_nothing_reaches_the_host(tmp_path):
    """The quick run passes, writes the Allure contract, leaves no namespace,
    and no frame with a suite address appears on the host's interfaces."""
    results = tmp_path / "allure"
    stop, leaked = threading.Event(), []
    t = threading.Thread(target=_capture_host, args=(stop, leaked))
    t.start()
    try:
        r, pid = run("conformance/", "-m", "not slow and not matrix", "-n", "4", f"--alluredir={results}")
    finally:
        stop.set()
        t.join()
    assert r.returncode == 0, r.stdout[-3000:]
    assert leaked == [], leaked[:5]
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
        assert any(n.endswith(".pcap") for n in names) and "tcpdump -S (absolute sequence numbers)" in names


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


def _as_nobody(*args, env=None, tun=None):
    """Run pytest as user nobody with the system Python (this checkout's venv
    interpreter may live where nobody cannot reach) and the venv's packages.
    With `tun` (a file mode), in a mount namespace of its own where
    /dev/net/tun is a TUN device node of that mode: as on a machine that
    ships it so."""
    import site
    system = "/usr/bin/python3"
    if not os.access(system, os.X_OK):
        pytest.skip("no /usr/bin/python3 to run as another user")
    base = {"PATH": "/usr/bin:/bin", "USER": "nobody", "LOGNAME": "nobody", "HOME": "/nonexistent",
            "PYTHONPATH": f"{site.getsitepackages()[0]}:{ROOT}"}
    cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", system, "-m", "pytest",
           "-p", "no:cacheprovider", *args]
    with tempfile.TemporaryDirectory(prefix="tcpconf-tun-") as d:
        if tun is not None:
            if not os.path.exists(TUN):
                pytest.skip(f"no {TUN} on this machine to stand in for")
            node = os.path.join(d, "tun")
            os.mknod(node, stat.S_IFCHR | tun, os.stat(TUN).st_rdev)
            os.chmod(node, tun)
            cmd = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                   f'mount --bind "$0" {TUN} && exec "$@"', node, *cmd]
        return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, env={**base, **(env or {})})


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


@pytest.mark.parametrize("mode, link", [(0o666, "link: TUN device"), (0o600, "link: veth pair read with AF_PACKET")],
                         ids=["tun-0666", "tun-0600"])
def test_without_root_the_suite_reexecutes_in_a_user_namespace(mode, link):
    """It passes whatever mode the machine gives /dev/net/tun: where the
    user can open it (0666) the SUT's link is a TUN device, where not (0600,
    or missing) a veth pair read with AF_PACKET; the header says which.
    None of its namespaces shows in the host's /run/netns (they live on a
    private tmpfs). Its processes are found while it runs, since other
    tests' killed workers may leave namespaces of dead owners there for a
    moment."""
    nobody, done = set(), threading.Event()

    def watch():
        while not done.is_set():
            nobody.update(_pids_of(65534))
            done.wait(0.02)
    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        r = _as_nobody("conformance/", "-k", "test_data_on_third_ack_is_delivered or test_syn_to_closed_port",
                       "-n", "2", tun=mode)
    finally:
        done.set()
        watcher.join()
    if "allow unprivileged user namespaces" in r.stderr:
        pytest.skip("this kernel refuses unprivileged user namespaces")
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "4 passed" in r.stdout
    header = next(l for l in r.stdout.splitlines() if l.startswith("tcpconf: stack linux"))
    assert link in header, header
    assert nobody, "the run's processes were never seen"
    assert [n for n in netns.suite_namespaces() if int(netns.NAME_RE.match(n).group(1)) in nobody] == []


def test_without_a_tun_device_or_a_veth_pair_one_line_says_what_to_do(run_case, monkeypatch):
    """Where neither link can be had (a container without the device node
    and without CAP_NET_RAW, say), the run stops before any case: one line,
    exit code 4, no traceback."""
    from harness.stacks import linux
    monkeypatch.setattr(linux, "TUN_DEVICE", "/nonexistent/tun")
    monkeypatch.setattr(linux, "veth_unusable", lambda: "a veth pair read with AF_PACKET: Operation not permitted")
    result = run_case(node("test_handshake.py::test_data_on_third_ack_is_delivered"))
    assert result.ret == 4
    errors = [l for l in result.errlines if l.strip()]
    assert len(errors) == 1, errors
    assert "/nonexistent/tun: No such file or directory" in errors[0] and "chmod 0666" in errors[0] \
        and "run as root" in errors[0], errors
    assert "Traceback" not in result.stdout.str() + "\n".join(result.errlines)


def test_without_root_or_user_namespaces_one_line_says_what_to_do():
    r = _as_nobody("conformance/", env={"TCPCONF_ROOTLESS": "1"})   # as if the kernel refused
    assert r.returncode != 0
    lines = [l for l in (r.stdout + r.stderr).splitlines() if l.strip()]
    assert len(lines) == 1 and "needs root" in lines[0] and "sudo" in lines[0], lines


def test_ctrl_c_in_the_middle_leaves_no_namespace():
    """SIGINT while the case waits on the SYN-ACK backoff. The case has started
    when pytest -v names it (a namespace alone may be the run's set-up)."""
    p = subprocess.Popen([*PYTEST, "conformance/", "-k", "retries-2 and ipv4", "-v"], cwd=ROOT,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    lines: list = []                         # what pytest wrote so far (-v names a test as it starts it)
    reader = threading.Thread(target=lambda: lines.extend(c.decode(errors="replace") for c in
                                                          iter(lambda: os.read(p.stdout.fileno(), 4096), b"")),
                              daemon=True)
    reader.start()
    deadline = time.monotonic() + 60
    while not (mine(p.pid) and "test_synack_retransmitted_then_dropped" in "".join(lines)):
        assert time.monotonic() < deadline and p.poll() is None, "the case never started:\n" + "".join(lines)
        time.sleep(0.02)
    time.sleep(0.5)                          # in the middle of the SYN-ACK backoff
    p.send_signal(signal.SIGINT)
    p.wait(timeout=30)
    reader.join(timeout=5)
    out = "".join(lines)
    assert p.returncode != 0, out
    assert mine(p.pid) == [], out
    assert "Traceback" not in out.split("KeyboardInterrupt")[0]


def _suite_frame(frame: bytes) -> bool:
    """The frame carries a suite address in an IP, IPv6 or ARP header, or in
    the packet an ICMP error quotes (payload bytes that merely look like one,
    in the machine's own HTTPS downloads, do not count)."""
    import ipaddress
    from scapy.layers.inet import IP, IPerror
    from scapy.layers.inet6 import IPerror6, IPv6
    from scapy.layers.l2 import ARP, Ether
    suite = (ipaddress.ip_network("198.18.0.0/15"), ipaddress.ip_network("2001:2::/48"))
    pkt = Ether(frame)
    addresses = []
    for layer, fields in ((IP, ("src", "dst")), (IPerror, ("src", "dst")), (IPv6, ("src", "dst")),
                          (IPerror6, ("src", "dst")), (ARP, ("psrc", "pdst"))):
        if layer in pkt:
            addresses += [getattr(pkt[layer], f) for f in fields]
    for a in addresses:
        try:
            if any(ipaddress.ip_address(a) in n for n in suite):
                return True
        except ValueError:
            continue
    return False


def _capture_host(stop, found):
    """Every frame on every interface of the host's namespace that carries a
    suite address."""
    import select as sel
    from scapy.layers.l2 import Ether
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
    while not stop.is_set():
        if sel.select([s], [], [], 0.1)[0]:
            frame = s.recv(65536)
            if _suite_frame(frame):
                found.append(Ether(frame).summary())
    s.close()


def test_a_suite_address_is_found_in_headers_not_in_payload():
    from scapy.layers.inet import ICMP, IP, TCP
    from scapy.layers.l2 import ARP, Ether
    assert _suite_frame(bytes(Ether() / IP(src="192.0.2.2", dst="198.19.0.1") / TCP()))
    assert _suite_frame(bytes(Ether() / ARP(psrc="198.18.0.2", pdst="198.18.0.1")))
    assert _suite_frame(bytes(Ether() / IP(src="192.0.2.2", dst="192.0.2.3") / ICMP(type=3) /
                              IP(src="198.18.0.1", dst="192.0.2.2") / TCP()))
    assert not _suite_frame(bytes(Ether() / IP(src="203.0.113.80", dst="192.0.2.2") / TCP() /
                                  (bytes([198, 18, 0, 1]) + bytes.fromhex("20010002"))))


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


def _dies_on_start(name: str):
    """A stack of kind `name` whose process says why on stderr and exits
    before it serves: a TAP agent, or passt itself."""
    from harness.stacks.passt import PasstStack
    from harness.stacks.tap import TapStack
    words = ["sh", "-c", f"echo '{name}: cannot open tap0: No such device' >&2; exit 3"]
    if name == "passt":
        return type("DyingPasst", (PasstStack,), {"_command": lambda self: words})
    return type("DyingAgent", (TapStack,), {"name": name, "agent_path": classmethod(lambda cls: Path("/bin/sh")),
                                            "agent_command": lambda self: words})


@pytest.mark.parametrize("name, speaker", [("tap-agent", "agent"), ("passt", "passt")], ids=["tap-agent", "passt"])
def test_a_sut_process_that_dies_on_start_is_one_line_with_its_words(name, speaker):
    """The stack's process exits before it serves: its start raises one
    StackError line that ends with what the process wrote to stderr, and no
    process, namespace or directory of it remains."""
    from harness.stacks import StackConfig, StackError
    from harness.trace import Trace
    st = _dies_on_start(name)(StackConfig("ipv4", Trace()))
    with pytest.raises(StackError) as e:
        st.start()
    message = str(e.value)
    assert message.startswith(f"{name} did not come up: ") and "\n" not in message, message
    assert message.endswith(f"({speaker} said: {name}: cannot open tap0: No such device)"), message
    assert st.ns.name not in netns.suite_namespaces()
    assert st.proc.poll() is not None
    assert not Path(getattr(st, "dir", None) or "/nonexistent").exists()


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


@pytest.mark.parametrize("name", ["lwip", "gvisor", "lwipv6"])
def test_an_unbuilt_agent_is_one_line_saying_what_to_run(pytester, monkeypatch, name):
    from harness.stacks import stack_class
    monkeypatch.setattr(stack_class(name), "agent_path", classmethod(lambda cls: Path("/nonexistent/agent")))
    result = pytester.runpytest_inprocess("-p", "harness.plugin", "--stack", name)
    assert result.ret == 4
    errors = [l for l in result.errlines if l.strip()]
    assert len(errors) == 1 and f"python3 -m harness.setup --stack {name}" in errors[0], errors


@pytest.mark.parametrize("name", ["lwip", "lwipv6", "slirp"])
def test_an_agent_older_than_its_source_is_one_line_saying_what_to_run(pytester, monkeypatch, tmp_path, name):
    """A checkout that changed the agent's C source since set-up: the run
    stops before any case, rather than judging the stack by an old agent."""
    from harness.stacks import stack_class
    cls = stack_class(name)
    newer = tmp_path / "agent.c"
    newer.write_text("")
    os.utime(newer, (cls.agent_path().stat().st_mtime + 10,) * 2)
    monkeypatch.setattr(cls, "sources", (*cls.sources, newer))
    result = pytester.runpytest_inprocess("-p", "harness.plugin", "--stack", name)
    assert result.ret == 4
    errors = [l for l in result.errlines if l.strip()]
    assert len(errors) == 1 and "older than its source" in errors[0] \
        and f"python3 -m harness.setup --stack {name}" in errors[0], errors
