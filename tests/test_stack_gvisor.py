"""`--stack gvisor`: gVisor's netstack on a TAP, driven by the Go agent.

A smoke set of conformance cases runs clean against it with the Allure
contract (`stack` = gvisor), a case still fails when its behaviour is broken
on the link, the agent speaks the app-control protocol with netstack's own
tunables, and Linux-only knobs are refused or skipped, never failed.
Skipped, with one line saying how to build it, when the agent is not built.
"""
import json
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest
from smoke import started

from conftest import ROOT
from faults import Fault, FaultPlugin, assert_control_fails, node
from harness.stacks import StackError
from harness.stacks.gvisor import TUNABLES, GvisorStack

pytestmark = [pytest.mark.root,
              pytest.mark.skipif(not GvisorStack.agent_path().exists(),
                                 reason="the gvisor agent is not built: python3 -m harness.setup --stack gvisor")]

SMOKE = ("original_syn_again or syn_with_other_isn_in_window or client_resets_synack "
         "or data_on_third_ack or fin_retransmitted_into_time_wait")


def test_smoke_set_runs_clean_with_the_allure_contract(tmp_path):
    results = tmp_path / "allure"
    r = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:randomly", "conformance/", "--stack", "gvisor",
                        "-m", "not slow and not matrix", "-k", SMOKE, "-n", "2", f"--alluredir={results}",
                        f"--junitxml={tmp_path}/junit.xml"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:]
    cases = list(ET.parse(tmp_path / "junit.xml").getroot().iter("testcase"))
    assert len(cases) == 10, [c.get("name") for c in cases]
    assert all(not [c for c in tc if c.tag in ("failure", "error")] for tc in cases)
    found = [json.loads(p.read_text()) for p in results.glob("*-result.json")]
    assert len(found) == 10
    for res in found:
        labels = {l["name"]: l["value"] for l in res["labels"]}
        assert labels.get("stack") == "gvisor", res["fullName"]
        assert res["status"] in ("passed", "skipped"), (res["fullName"], res.get("statusDetails"))


@pytest.mark.parametrize("test, fault, requirement", [
    ("test_handshake.py::test_original_syn_again_in_syn_received", Fault("A", nth=1, action="drop"),
     "RFC9293/3.10.7.4"),
    ("test_teardown.py::test_fin_retransmitted_into_time_wait", Fault("A", nth=3, action="seq", offset=-1),
     "RFC9293/3.10.7.4"),
    # documented answers of gvisor.toml: RTO raised to rto_min (data, tail loss probe, RTO), a new ISS
    # from the ISN clock (1 << 22 ticks = 268 ms off), and a window scale of 15 used as 14
    ("test_timers.py::test_first_rto_after_a_tiny_rtt", Fault("A", nth=3, action="delay", offset=0.3),
     "RFC6298/2.4"),
    ("test_close.py::test_syn_above_rcv_nxt_reopens_time_wait", Fault("SA", nth=2, action="seq", offset=1 << 22),
     "RFC9293/MAY-2"),
    ("test_options.py::test_window_scale_above_14_is_used_as_14[ipv4-15]",
     Fault("A", nth=5, action="seq", offset=1 << 14), "RFC7323/2.3"),
], ids=["duplicate-syn-ack-dropped", "time-wait-ack-seq", "rto-late", "reopen-iss-off-clock", "beyond-clamped-window"])
def test_a_case_still_fails_when_its_behaviour_is_broken(run_case, test, fault, requirement):
    assert_control_fails(run_case(node(test), "--stack", "gvisor", plugins=[FaultPlugin(fault)]), requirement, fault)


@pytest.fixture
def gvisor():
    yield from started(GvisorStack, "ipv6", sysctls={"tcp.time_wait_timeout_ms": "1500"}, options={"sack": "off"})


def test_agent_speaks_the_protocol_with_netstack_tunables(gvisor):
    hello = gvisor.hello
    assert hello["version"] == 1 and hello["stack"] == "gvisor"
    assert "gVisor netstack" in gvisor.version() and "Go " in gvisor.version()
    assert set(hello["sysctls"]) == TUNABLES          # gvisor.py and the agent agree
    assert gvisor.sysctl("tcp.time_wait_timeout_ms") == "1500"     # StackConfig.sysctls applied
    assert gvisor.sysctl("tcp.sack") == "0"                        # --stack-opt sack=off
    gvisor.set_sysctl("tcp.sack", 1)
    assert gvisor.sysctl("tcp.sack") == "1"
    with pytest.raises(pytest.skip.Exception, match="no tunable net.ipv4.tcp_sack"):
        gvisor.sysctl("net.ipv4.tcp_sack")
    with pytest.raises(StackError, match="tcp.sack=2: EINVAL"):
        gvisor.set_sysctl("tcp.sack", 2)
    listener = gvisor.app.listen(4242)
    assert gvisor.state_of(4242, 0) == "LISTEN"
    assert gvisor.app.getsockopt(listener, "TCP_NODELAY") == 0     # Nagle on, as runsc
    gvisor.app.setsockopt(listener, "SO_LINGER", [1, 0])
    assert gvisor.app.getsockopt(listener, "SO_LINGER") == [1, 0]
    with pytest.raises(Exception, match="EOPNOTSUPP"):
        gvisor.app.setsockopt(listener, "TCP_FASTOPEN", 1)


def test_profile_names_only_netstack_tunables():
    from harness.catalog import Profile
    profile = Profile.load("gvisor")
    named = {v["sysctl"] for v in profile.values.values() if "sysctl" in v}
    assert named and named <= TUNABLES


def test_linux_sysctl_is_refused_on_the_command_line():
    r = subprocess.run([sys.executable, "-m", "pytest", "conformance/", "--stack", "gvisor",
                        "--sysctl", "net.ipv4.tcp_synack_retries=2"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 4
    errors = [l for l in r.stderr.splitlines() if l.strip()]
    assert len(errors) == 1 and "stack gvisor has no such tunable" in errors[0]


def test_a_case_setting_a_linux_sysctl_is_skipped(pytester, run_case):
    case = pytester.makepyfile(test_linux_knob="""
        import pytest

        @pytest.mark.case("handshake.old-duplicate-syn")
        @pytest.mark.sysctl(**{"net.ipv4.tcp_invalid_ratelimit": 0})
        def test_knob(stack, family):
            pass
    """)
    result = run_case(str(case), "--stack", "gvisor", "--family", "ipv4")
    result.assert_outcomes(skipped=1)
    assert "has no tunable net.ipv4.tcp_invalid_ratelimit" in result.stdout.str()
