"""`--stack remote` against a Linux namespace with `python -m harness.agent`
inside: the verdicts are those of `--stack linux`; and the agent protocol's
errors are clear."""
import json
from pathlib import Path
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest
from pyroute2 import IPRoute

from harness.agent import AgentHost, App, StreamTransport
from harness.netns import Namespace

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.root


def _write(key, value):
    with open("/proc/sys/" + key.replace(".", "/"), "w") as f:
        f.write(str(value))


@pytest.fixture
def remote_sut(tmp_path):
    """A 'remote host': namespace S with 198.18.0.1 and 2001:2::1 on a veth
    whose other end lies, addressless, in namespace T; the agent runs in S
    and listens on a unix socket."""
    s, t = Namespace.create(), Namespace.create()
    agent = None
    try:
        with t.entered(), IPRoute() as ipr:
            ipr.link("add", ifname="tc-t", kind="veth", peer={"ifname": "tc-s", "net_ns_fd": f"/run/netns/{s.name}"})
            _write("net.ipv6.conf.tc-t.disable_ipv6", 1)
            ipr.link("set", index=ipr.link_lookup(ifname="tc-t")[0], state="up")
        with s.entered(), IPRoute() as ipr:
            ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")
            idx = ipr.link_lookup(ifname="tc-s")[0]
            _write("net.ipv6.conf.tc-s.addr_gen_mode", 1)
            _write("net.ipv6.conf.tc-s.router_solicitations", 0)
            ipr.addr("add", index=idx, address="198.18.0.1", prefixlen=24)
            ipr.addr("add", index=idx, address="2001:2::1", prefixlen=64, flags=0x02)
            ipr.link("set", index=idx, state="up")
            from harness.stacks.remote import RemoteStack
            RemoteStack._offloads_off("tc-s")
            sock = str(tmp_path / "agent.sock")
            agent = subprocess.Popen([sys.executable, "-m", "harness.agent", "--unix", sock], cwd=ROOT,
                                     stderr=subprocess.PIPE, text=True)
        assert "listening" in agent.stderr.readline()
        yield ["--stack", "remote", "--stack-opt", "iface=tc-t", "--stack-opt", f"netns={t.name}",
               "--stack-opt", "address=198.18.0.1,2001:2::1", "--stack-opt", "tester-address=198.18.0.2,2001:2::2",
               "--stack-opt", f"agent={sock}"]
    finally:
        if agent is not None:
            agent.kill()
            agent.wait()
        s.remove()
        t.remove()


def _verdicts(junit) -> dict:
    out = {}
    for tc in ET.parse(junit).getroot().iter("testcase"):
        kinds = [c.tag for c in tc]
        out[tc.get("name")] = ("failed" if "failure" in kinds or "error" in kinds
                               else "skipped" if "skipped" in kinds else "passed")
    return out


def test_remote_linux_namespace_gives_the_linux_verdicts(remote_sut, tmp_path):
    common = [sys.executable, "-m", "pytest", "conformance/", "-m", "not slow and not matrix", "-q", "-p", "no:randomly"]
    linux = subprocess.run([*common, "-n", "4", f"--junitxml={tmp_path}/linux.xml"], cwd=ROOT,
                           capture_output=True, text=True, timeout=300)
    remote = subprocess.run([*common, *remote_sut, f"--junitxml={tmp_path}/remote.xml",
                             f"--alluredir={tmp_path}/remote-results"], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert remote.returncode == 0, remote.stdout[-3000:]
    a, b = _verdicts(tmp_path / "linux.xml"), _verdicts(tmp_path / "remote.xml")
    assert a and a == b
    # in a merged matrix the remote host is its own column: the kind and the profile it is judged by
    labels = {l["value"] for f in (tmp_path / "remote-results").glob("*-result.json")
              for l in json.loads(f.read_text())["labels"] if l["name"] == "stack"}
    assert labels == {"remote:linux"}


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
