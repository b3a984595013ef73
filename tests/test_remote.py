"""`--stack remote` against a Linux namespace with `python -m harness.agent`
inside: the verdicts are those of `--stack linux`; and the agent protocol's
errors are clear."""
import json
import socket
from pathlib import Path
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest
from pyroute2 import IPRoute

from harness.agent import AgentHost, App, StreamTransport
from harness.netns import Namespace
from hosts import sut_and_tester

ROOT = Path(__file__).resolve().parent.parent

pytestmark = [pytest.mark.root, pytest.mark.xdist_group("suite")]     # see conftest.SUITE_GROUP


@pytest.fixture
def remote_sut(tmp_path, request):
    """A 'remote host': namespace S with 198.18.0.1 and 2001:2::1 on a veth
    whose other end lies, addressless, in namespace T; the agent runs in S
    and listens on a unix socket. S's veth keeps its offloads (the default)
    where the test is parametrized with offload=on."""
    with sut_and_tester("tc-s", "tc-t", sut_offloads=getattr(request, "param", "off")) as (s, t):
        sock = str(tmp_path / "agent.sock")
        with s.entered():
            agent = subprocess.Popen([sys.executable, "-m", "harness.agent", "--unix", sock], cwd=ROOT,
                                     stderr=subprocess.PIPE, text=True)
        try:
            assert "listening" in agent.stderr.readline()
            yield ["--stack", "remote", "--stack-opt", "iface=tc-t", "--stack-opt", f"netns={t.name}",
                   "--stack-opt", "address=198.18.0.1,2001:2::1", "--stack-opt", "tester-address=198.18.0.2,2001:2::2",
                   "--stack-opt", f"agent={sock}"]
        finally:
            agent.kill()
            agent.wait()


def _verdicts(junit) -> dict:
    out = {}
    for tc in ET.parse(junit).getroot().iter("testcase"):
        kinds = [c.tag for c in tc]
        out[tc.get("name")] = ("failed" if "failure" in kinds or "error" in kinds
                               else "skipped" if "skipped" in kinds else "passed")
    return out


QUICK = [sys.executable, "-m", "pytest", "conformance/", "-m", "not slow and not matrix", "-p", "no:randomly"]


@pytest.fixture(scope="module")
def linux_verdicts(tmp_path_factory):
    """The quick suite's verdicts against `--stack linux`, once for the module."""
    junit = tmp_path_factory.mktemp("linux") / "linux.xml"
    subprocess.run([*QUICK, "-q", "-n", "4", f"--junitxml={junit}"], cwd=ROOT, capture_output=True, text=True,
                   timeout=900)
    verdicts = _verdicts(junit)
    assert verdicts
    return verdicts


def test_remote_linux_namespace_gives_the_linux_verdicts(remote_sut, linux_verdicts, tmp_path):
    """Both families; the SUT's veth has its offloads off."""
    remote = subprocess.run([*QUICK, *remote_sut, f"--junitxml={tmp_path}/remote.xml",
                             f"--alluredir={tmp_path}/remote-results"], cwd=ROOT,
                            capture_output=True, text=True, timeout=900)
    assert remote.returncode == 0, remote.stdout[-3000:]
    assert _verdicts(tmp_path / "remote.xml") == linux_verdicts
    # in a merged matrix the remote host is its own column: the kind and the profile it is judged by
    labels = {l["value"] for f in (tmp_path / "remote-results").glob("*-result.json")
              for l in json.loads(f.read_text())["labels"] if l["name"] == "stack"}
    assert labels == {"remote:linux"}


@pytest.mark.parametrize("remote_sut", ["on"], indirect=True, ids=["offload-on"])
def test_a_sut_side_with_offloads_on_is_one_line_up_front(remote_sut):
    """The veth's default: checksums and segmentation left to a NIC it does
    not have. The run stops before any case, saying what to switch off,
    rather than failing every case on RFC 9293 MUST-2."""
    r = subprocess.run([*QUICK, *remote_sut], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert r.returncode == 4, r.stdout[-3000:]
    errors = [l for l in r.stderr.splitlines() if l.strip()]
    assert len(errors) == 1 and "ethtool -K IFACE tx off" in errors[0] and "tc-t" in errors[0], errors
    assert "MUST-2" not in r.stdout + r.stderr and "Traceback" not in r.stdout + r.stderr


def test_agent_protocol_errors_are_clear():
    host = AgentHost()
    assert host.dispatch({"op": "nope"})["error"] == "EOPNOTSUPP"
    assert "knows" in host.dispatch({"op": "nope"})["message"]
    assert host.dispatch({"op": "close", "id": 99})["error"] == "EBADF"
    assert host.dispatch({"op": "listen"})["error"] == "EINVAL"
    r = host.dispatch({"op": "setsockopt", "id": 1, "name": "SO_NOPE", "value": 1})
    assert r["error"] == "EBADF"
    hello = host.dispatch({"op": "hello"})
    assert hello["ok"] and hello["version"] == 1 and "listen" in hello["ops"] and "TCP_KEEPIDLE" in hello["options"]


def test_the_agent_forgets_what_tcp_kept_about_a_peer():
    """Linux keeps a closed connection's RTT, RTTVAR and ssthresh per peer
    address (tcp_metrics) and seeds the next connection to it from them: on
    a remote host every case but the first would start from the last one's
    RTT. `forget` drops them (the remote stack asks before every case)."""
    ns = Namespace.create()
    try:
        with ns.entered(), IPRoute() as ipr:
            ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")
            host = AgentHost()
            assert host.dispatch({"op": "forget", "address": "127.0.0.1"}) == {"ok": True, "forgot": False}
            with socket.create_server(("127.0.0.1", 0)) as srv:
                c = socket.create_connection(srv.getsockname())
                a, _ = srv.accept()
                c.sendall(b"x")
                a.recv(1)
                a.close()
                c.close()
            forgot = [host.dispatch({"op": "forget", "address": "127.0.0.1"}) for _ in range(2)]
            assert forgot == [{"ok": True, "forgot": True}, {"ok": True, "forgot": False}]
            assert host.dispatch({"op": "forget", "address": "nowhere"})["error"] == "EINVAL"
    finally:
        ns.remove()


def test_agent_over_stdio_speaks_json_lines():
    p = subprocess.Popen([sys.executable, "-m", "harness.agent", "--stdio"], cwd=ROOT,
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        app = App(StreamTransport(p.stdout.fileno(), p.stdin.fileno(), timeout=10, keep=p), "ipv4", "198.18.0.1")
        assert app.hello()["version"] == 1
        with pytest.raises(Exception) as e:
            app.call("frobnicate")
        assert "EOPNOTSUPP" in str(e.value)
        p.stdin.write(b"not json\n")
        p.stdin.flush()
        assert json.loads(p.stdout.readline())["error"] == "EINVAL"
    finally:
        p.kill()
        p.wait()


def test_the_link_finishes_only_the_checksums_left_to_the_hardware():
    """Over a veth with its offloads on, the kernel's SYN arrives with its
    checksum left to the hardware (TP_STATUS_CSUMNOTREADY): the link
    finishes it. A frame with a wrong checksum and no such flag (what a real
    device delivers) is traced as it came, and the Peer fails it on RFC 9293
    MUST-2: the negative control of the checksum check."""
    import socket
    from scapy.layers.inet import IP, TCP
    from scapy.layers.l2 import Ether
    from harness.l2 import PacketLink
    from harness.peer import Peer
    from harness.trace import Trace
    from harness.verdict import ConformanceFailure

    with sut_and_tester("tc-s", "tc-t", sut_offloads="on") as (s, t):
        with t.entered():
            link = PacketLink(Trace(), "tc-t", "02:00:00:74:63:fe", {"ipv4": "198.18.0.2"}, "198.18.0.1")
        with s.entered():
            client = socket.socket()
            client.setblocking(False)
            client.connect_ex(("198.18.0.2", 4000))
            raw = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
            raw.bind(("tc-s", 0))
        peer = Peer(link, "ipv4", "198.18.0.2", "198.18.0.1", 4000, None)
        syn = peer.expect("S", within=3.0)                    # ARP first: the link answers it
        assert syn.checksum_ok and link.completed == 1
        bad = TCP(sport=syn.sport, dport=4000, flags="SA", seq=1, ack=syn.seq + 1, chksum=0xDEAD)
        raw.send(bytes(Ether(dst="02:00:00:74:63:fe", src=link.sut_mac) / IP(src="198.18.0.1", dst="198.18.0.2") / bad))
        with pytest.raises(ConformanceFailure, match="RFC9293/MUST-2"):
            peer.expect("SA", within=1.0)
        assert link.completed == 1
        client.close()
        raw.close()
        link.close()
