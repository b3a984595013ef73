"""What the tests of each stack (tests/test_stack_*.py) judge alike.

Rules of this file:
- A stack's test module keeps what is its own: its smoke selection and the
  outcome of each case there, which of the negative controls below apply
  to it (and why a fault breaks the case on that stack), its agent's
  particulars. How a smoke run, a negative control or an agent's answer to
  a bad request is judged is written once, here.
- The smoke set runs as a user runs it: a pytest process from the
  repository root, with an Allure directory; its verdicts are read from
  Allure's results, so the labels of the Allure contract are judged too.
"""
import dataclasses
import json
from collections import Counter
from pathlib import Path
import subprocess
import sys

import pytest

from faults import Fault, FaultPlugin, assert_control_fails, node

ROOT = Path(__file__).resolve().parent.parent
FAMILIES = ("ipv4", "ipv6")


def run_smoke(stack: str, select: str, tmp_path: Path, *args: str):
    """Run the cases `-k select` against `stack`; the run and its Allure
    results, each as (result, labels, parameters)."""
    results = tmp_path / "allure"
    r = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:randomly", "conformance/", "--stack", stack,
                        "-k", select, "-q", f"--alluredir={results}", *args], cwd=ROOT, capture_output=True,
                       text=True, timeout=300)
    found = []
    for path in results.glob("*-result.json"):
        res = json.loads(path.read_text())
        found.append((res, {l["name"]: l["value"] for l in res["labels"]},
                      {p["name"]: p["value"].strip("'") for p in res.get("parameters", [])}))
    return r, found


def assert_smoke_outcomes(stack: str, select: str, tmp_path: Path, outcomes: dict) -> None:
    """The smoke set `-k select` against `stack`: exactly the cases of
    `outcomes` (catalog ids) ran, once in each family, with the stack's
    Allure label, and each had its outcome there: "passed", or
    "xfailed: RULE", a deviation the stack's profile documents (an xfail for
    pytest; for Allure a failed result whose message names RULE and the
    stack)."""
    __tracebackhide__ = True
    r, found = run_smoke(stack, select, tmp_path)
    assert r.returncode == 0, r.stdout[-3000:]
    for outcome, n in Counter(o.partition(":")[0] for o in outcomes.values()).items():
        assert f"{n * len(FAMILIES)} {outcome}" in r.stdout, r.stdout[-3000:]
    ran = sorted((labels.get("case"), params.get("family")) for _, labels, params in found)
    assert ran == sorted((case, family) for case in outcomes for family in FAMILIES), ran
    for res, labels, _ in found:
        assert labels.get("stack") == stack, res["fullName"]
        outcome, _, rule = outcomes[labels["case"]].partition(": ")
        if outcome == "passed":
            assert res["status"] == "passed", res["fullName"]
        else:
            assert outcome == "xfailed" and rule, f"not an outcome: {outcomes[labels['case']]!r}"
            assert res["status"] == "failed", res["fullName"]
            message = res["statusDetails"]["message"]
            assert message.startswith(f"Documented deviation from {rule} ") and f" of {stack}: " in message, message


# Faults that break a smoke case, by the id a stack's module names them with:
# (the case, the fault on the SUT's segments, the requirement its failure names).
BREAKS = {
    "data-ack-ack-1": ("test_handshake.py::test_data_on_third_ack_is_delivered",
                       Fault("A", nth=1, action="ack", offset=-1), "RFC9293/3.10.7.4"),
    "time-wait-drop-ack3": ("test_teardown.py::test_fin_retransmitted_into_time_wait",
                            Fault("A", nth=3, action="drop"), "RFC9293/3.10.7.4"),
    "fin-seq+1": ("test_close.py::test_close_after_data_sut_as_server",
                  Fault("FA", nth=1, action="seq", offset=1), "RFC9293/3.10.7.4"),
    # the retransmission 1.5 s late: late for any first RTO the stacks' profiles give (rto_min)
    "first-rto-delay-a2": ("test_timers.py::test_first_rto_after_a_tiny_rtt",
                           Fault("A", nth=2, action="delay", offset=1.5), "RFC6298/2.4"),
}


def assert_broken_case_fails(run_case, stack: str, control: str) -> None:
    """The negative control `control` (BREAKS) through the stack's adapter:
    the checked behaviour broken on its link fails the case (IPv4), naming
    its requirement, expected against seen, with the trace (and the timing,
    for a delay)."""
    __tracebackhide__ = True
    test, fault, requirement = BREAKS[control]
    fault = dataclasses.replace(fault)           # a fresh count of the segments it has seen
    assert_control_fails(run_case(node(test), "--stack", stack, plugins=[FaultPlugin(fault)]), requirement, fault)


def started(stack_class, family: str, **config):
    """A stack of `stack_class` started for `family` (a fixture's body: yield
    from it), closed after; `config`: StackConfig's sysctls and options."""
    from harness.stacks import StackConfig
    from harness.trace import Trace
    st = stack_class(StackConfig(family, Trace(), **config)).start()
    try:
        yield st
    finally:
        st.close()


def raw_request(stack, line: bytes) -> dict:
    """Send one raw request line to a stack's agent process and read its
    reply line (the protocol as bytes, not through App)."""
    import os
    import select
    import time
    os.write(stack.proc.stdin.fileno(), line + b"\n")
    out, deadline = b"", time.monotonic() + 5
    while not out.endswith(b"\n"):
        assert select.select([stack.proc.stdout], [], [], max(0.0, deadline - time.monotonic()))[0], "no reply"
        out += os.read(stack.proc.stdout.fileno(), 65536)
    return json.loads(out)


def assert_agent_refuses_bad_requests(stack) -> None:
    """The request reader of the C agents (harness/stacks/agent_proto.h): an
    operation it does not know is EOPNOTSUPP, saying which it knows; a line
    that is not JSON, or a port out of range, is EINVAL; escapes and nested
    values are read, not refused."""
    __tracebackhide__ = True
    from harness.agent import AppError
    with pytest.raises(AppError) as e:
        stack.app.call("frobnicate")
    assert e.value.error == "EOPNOTSUPP" and "knows" in e.value.message, e.value
    assert raw_request(stack, b"not json")["error"] == "EINVAL"
    assert raw_request(stack, b'{"op": "hel\\u006co", "x": [1, {"y": "\\ud83d\\ude00\\n"}], "z": -1.5e3}')["version"] == 1
    assert raw_request(stack, b'{"op": "listen", "family": "ipv4", "address": "198.18.0.1", "port": 70000}')["error"] == "EINVAL"
