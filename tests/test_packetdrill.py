"""packetdrill scripts as test items (root): every script of ours has a
negative control (one expectation made wrong fails, naming its line), the
scripts written from Python cases (tests/packetdrill/cases/) agree with
those cases on every stack that runs them alike, and collection, skips and
the report behave as the README says.

Not passt: its data segments carry no PSH, which packetdrill's matching
compares and the Python cases do not (they check PSH only where a case
names it), so there the two notations differ by what they check."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT
from harness.bench import verdicts
from harness.stacks.gvisor import GvisorStack
from harness.stacks.lwip import LwipStack
from harness.stacks.slirp import SlirpStack

pytestmark = pytest.mark.root

# (script, line, text on that line, what it becomes): each makes exactly one
# expectation of the script wrong; the script must then fail on that line.
CONTROLS = [
    ("tests/packetdrill/cases/syn-to-closed-port.pkt", 6, "ack 1", "ack 2"),
    ("tests/packetdrill/cases/data-on-third-ack.pkt", 14, "ack 1039", "ack 1038"),
    ("tests/packetdrill/cases/time-wait-fin-retransmission.pkt", 28, "ack 2", "ack 3"),
    ("tests/packetdrill/cases/fin-sequence-numbers-server.pkt", 30, "F. 16:16(0)", "F. 17:17(0)"),
    ("tests/packetdrill/cases/fin-sequence-numbers-client.pkt", 23, "ack 17", "ack 16"),
    ("tests/packetdrill/cases/half-close.pkt", 23, "21:34(13)", "21:35(14)"),
    ("tests/packetdrill/cases/lost-third-ack.pkt", 17, "+2 ", "+1 "),
    ("tests/packetdrill/cases/synack-acking-unsent.pkt", 11, "R 1001:1001(0)", "R 1000:1000(0)"),
    ("tests/packetdrill/syscalls-client.pkt", 46, "[1000]", "[999]"),
    ("tests/packetdrill/blocking-calls.pkt", 10, "0.100", "0.050"),
    ("tests/packetdrill/options-v4.pkt", 23, "sack 1001:2001", "sack 1001:2002"),
    # a %{ }% block fails at its event's line (the time before `%{`)
    ("tests/packetdrill/timers-code.pkt", 28, "tcpi_backoff == 2", "tcpi_backoff == 3", 26),
    ("tests/packetdrill/pmtu-v4.pkt", 19, "1:1161(1160)", "1:1261(1260)"),
    ("tests/packetdrill/pmtu-v6.pkt", 17, "1:1221(1220)", "1:1241(1240)"),
    ("tests/packetdrill/ecn.pkt", 15, "[ect0] P.", "[ect1] P."),
    ("tests/packetdrill/misc.pkt", 28, "ack 2001", "ack 2000"),
    ("tests/packetdrill/flowlabel-v6.pkt", 18, "flowlabel 0x1", "flowlabel 0x2"),
]

# The controls that make a time wrong run with the default tolerance; the
# others with a wide one, so that on a busy machine a late answer elsewhere
# in the script cannot fail it before the line made wrong.
TIMING_CONTROLS = {"blocking-calls", "lost-third-ack"}

# script -> the Python case it was written from (conformance/test_*.py)
PAIRS = {
    "tests/packetdrill/cases/syn-to-closed-port.pkt": "test_reset.py::test_syn_to_closed_port[ipv4]",
    "tests/packetdrill/cases/data-on-third-ack.pkt": "test_handshake.py::test_data_on_third_ack_is_delivered[ipv4]",
    "tests/packetdrill/cases/time-wait-fin-retransmission.pkt":
        "test_teardown.py::test_fin_retransmitted_into_time_wait[ipv4]",
    "tests/packetdrill/cases/fin-sequence-numbers-server.pkt": "test_close.py::test_close_after_data_sut_as_server[ipv4]",
    "tests/packetdrill/cases/fin-sequence-numbers-client.pkt": "test_close.py::test_close_after_data_sut_as_client[ipv4]",
    "tests/packetdrill/cases/half-close.pkt": "test_close.py::test_passive_side_keeps_sending_after_fin[ipv4]",
    "tests/packetdrill/cases/lost-third-ack.pkt":
        "test_handshake.py::test_synack_retransmitted_then_dropped[ipv4-retries-2]",
    "tests/packetdrill/cases/synack-acking-unsent.pkt": "test_handshake.py::test_client_resets_synack_acking_unsent[ipv4]",
}
# (stack, script) the two notations cannot say alike: the Python case
# accepts that no SYN comes again within 1.5 s and answers anyway; a
# script's line is never optional, and slirp sends its SYN again only after
# its 6 s initial RTO (Linux, lwIP and gVisor within the 1.5 s)
UNLIKE = {("slirp", "synack-acking-unsent.pkt")}
# a verdict as both notations must agree on it: the SUT did what the case
# requires, departed from it (a failure, or a deviation its profile documents), or was skipped
AGREE = {"passed": "conforms", "failed": "departs", "xfailed": "departs", "skipped": "skipped"}


def mutated(tmp_path: Path, script: str, line: int, old: str, new: str) -> Path:
    src = (ROOT / script).read_text().split("\n")
    assert old in src[line - 1], f"{script}:{line} does not contain {old!r}: {src[line - 1]!r}"
    src[line - 1] = src[line - 1].replace(old, new, 1)
    out = tmp_path / Path(script).name
    out.write_text("\n".join(src))
    return out


@pytest.mark.parametrize("control", CONTROLS, ids=[Path(c[0]).stem for c in CONTROLS])
def test_script_fails_on_the_line_made_wrong(run_case, tmp_path, control):
    script, line, old, new = control[:4]
    fails_at = control[4] if len(control) > 4 else line
    path = mutated(tmp_path, script, line, old, new)
    family = "ipv6" if path.name.endswith("v6.pkt") else "ipv4"
    wide = [] if path.stem in TIMING_CONTROLS else ["--tolerance-ms", "300"]
    result = run_case(str(path), "--family", family, *wide)
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert f"{path.name}:{fails_at}:" in out, out[-3000:]
    assert ">> " in out and "expected:" in out and "seen:" in out
    assert "tcpdump trace" in out


def test_every_script_of_ours_has_a_negative_control():
    ours = {str(p.relative_to(ROOT)) for p in (ROOT / "tests/packetdrill").rglob("*.pkt")}
    assert ours == {c[0] for c in CONTROLS}


def _run(stack: str, tmp_path: Path, *args) -> tuple[dict, dict]:
    """(test -> verdict, test -> failure message) of one pytest run."""
    import xml.etree.ElementTree as ET
    junit = tmp_path / f"{stack}.xml"
    r = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:xdist", "--stack", stack, "--family", "ipv4",
                        f"--junitxml={junit}", "-q", *args], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert junit.exists(), r.stdout[-3000:] + r.stderr[-2000:]
    messages = {f"{tc.get('classname')}::{tc.get('name')}": (f.get("message") or "")[:300]
                for tc in ET.parse(junit).getroot().iter("testcase") for f in tc if f.tag in ("failure", "error")}
    return verdicts(junit), messages


@pytest.mark.parametrize("sut", [
    "linux",
    pytest.param("lwip", marks=pytest.mark.skipif(not LwipStack.agent_path().exists(), reason="lwIP agent not built")),
    pytest.param("gvisor", marks=pytest.mark.skipif(not GvisorStack.agent_path().exists(),
                                                    reason="gVisor agent not built")),
    pytest.param("slirp", marks=pytest.mark.skipif(not SlirpStack.agent_path().exists(),
                                                   reason="slirp agent not built")),
])
def test_scripts_agree_with_the_python_cases(sut, tmp_path):
    """The same behaviour in two notations gives the same verdict: each
    script and the Python case it was written from conform, depart or are
    skipped together, on every stack."""
    found, messages = _run(sut, tmp_path, *PAIRS, *[f"conformance/{t}" for t in PAIRS.values()])
    seen = {}
    for script, case in PAIRS.items():
        name = Path(script).name
        if (sut, name) in UNLIKE:
            continue
        s = next((v for k, v in found.items() if k.endswith(f"::{name}[ipv4]")), None)
        c = next((v for k, v in found.items() if k.endswith("::" + case.split("::")[1])), None)
        assert s is not None and c is not None, (script, case, found)
        seen[name] = (AGREE[s], AGREE[c])
    differ = {k: v for k, v in seen.items() if v[0] != v[1]}
    why = {k: v for k, v in messages.items() if any(n in k for n in differ)}
    assert seen and not differ, f"script vs Python case: {differ}; {why}"


def test_scripts_are_collected_per_family_with_the_report_contract(run_case, tmp_path):
    """`pytest DIR`: each script is an item per family (v4.pkt/v6.pkt and
    --ip_version narrow it), labelled pkt.<path relative to DIR>, with the
    stack, the family (label and parameter) and the script attached."""
    d = tmp_path / "scripts" / "sub"
    d.mkdir(parents=True)
    (d / "one.pkt").write_text("// one\n0 < S 0:0(0) win 1000\n+0~+.5 > R. 0:0(0) ack 1\n")
    (d / "two-v6.pkt").write_text("0 < S 0:0(0) win 1000\n+0~+.5 > R. 0:0(0) ack 1\n")
    (d / "three.pkt").write_text("--ip_version=ipv4\n0 < S 0:0(0) win 1000\n+0 > S. 0:0(0) ack 1\n")
    results = tmp_path / "allure"
    r = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:xdist", str(tmp_path / "scripts"), "-q",
                        f"--alluredir={results}", "-c", str(ROOT / "pyproject.toml"), "--rootdir", str(ROOT)],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert "3 passed, 1 failed" in r.stdout or "1 failed, 3 passed" in r.stdout, r.stdout[-3000:]
    found = {}
    for p in results.glob("*-result.json"):
        res = json.loads(p.read_text())
        labels = {l["name"]: l["value"] for l in res["labels"]}
        params = {q["name"]: q["value"].strip("'") for q in res.get("parameters", [])}
        found[(labels["case"], labels["family"])] = res
        assert labels["stack"] == "linux" and params["family"] == labels["family"]
        names = [a["name"] for a in res.get("attachments", [])]
        assert any(n.startswith(Path(labels["case"]).name) for n in names), names
        assert any(n.endswith(".pcap") and Path(labels["case"]).name.replace("-", "_") in n.replace("-", "_")
                   for n in names), names                           # the capture, under the script's name
    assert set(found) == {("pkt.sub/one.pkt", "ipv4"), ("pkt.sub/one.pkt", "ipv6"), ("pkt.sub/two-v6.pkt", "ipv6"),
                          ("pkt.sub/three.pkt", "ipv4")}
    failed = found[("pkt.sub/three.pkt", "ipv4")]
    assert failed["status"] == "failed" and "three.pkt:3" in failed["statusDetails"]["message"]
    marked = [a for a in failed["attachments"] if "line 3 marked" in a["name"]]
    assert marked and ">>" in (results / marked[0]["source"]).read_text()


def test_a_construct_the_stack_lacks_skips_the_script_naming_it(run_case, tmp_path):
    (tmp_path / "cmd.pkt").write_text("`ip link show`\n0 < S 0:0(0) win 1000\n+0 > R. 0:0(0) ack 1\n")
    (tmp_path / "udp.pkt").write_text("0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n+0 < udp (10)\n")
    (tmp_path / "tfo.pkt").write_text("0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n"
                                      "+0 sendto(3, ..., 10, MSG_FASTOPEN, ..., ...) = -1 EINPROGRESS (x)\n")
    (tmp_path / "bad.pkt").write_text("0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n+0 < S 0:0(0)\n")
    result = run_case(str(tmp_path), "--family", "ipv4", "-rs")
    result.assert_outcomes(skipped=3, failed=1)
    for line in ("*cmd.pkt:1: shell command `ip link show` (only sysctl settings become tunables*",
                 "*udp.pkt:2: UDP packets", "*tfo.pkt:2: TCP Fast Open from the client (MSG_FASTOPEN)",
                 "*bad.pkt:2: semantic error: window must be specified for inbound packets"):
        result.stdout.fnmatch_lines([line])


def test_lwip_skips_what_its_agent_lacks(run_case, tmp_path):
    if not LwipStack.agent_path().exists():
        pytest.skip("lwIP agent not built")
    result = run_case(str(ROOT / "tests/packetdrill/timers-code.pkt"), str(ROOT / "tests/packetdrill/syscalls-client.pkt"),
                      "--stack", "lwip", "--family", "ipv4", "-rs")
    result.assert_outcomes(skipped=2)
    for line in ("*timers-code.pkt:10: sysctl settings (stack lwip has no tunables)",
                 "*syscalls-client.pkt:39: ioctl(): lwIP has no ioctl SIOCOUTQ*"):
        result.stdout.fnmatch_lines([line])
