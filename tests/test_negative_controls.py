"""Negative controls: every conformance case, run with exactly the behaviour
it checks broken on the link, must fail, name its requirement and show
expected against seen."""
import pytest

from faults import Delay, Fault, FaultPlugin, assert_case_passes, assert_control_fails, node

pytestmark = pytest.mark.root

CONTROLS = [
    # (case test, fault, requirement the failure must name)
    ("test_handshake.py::test_original_syn_again_in_syn_received",
     Fault("SA", nth=2, action="drop"), "RFC9293/3.10.7.4"),
    ("test_handshake.py::test_old_duplicate_syn_with_earlier_isn",
     Fault("A", nth=1, action="ack", offset=1), "RFC9293/3.10.7.4"),
    ("test_handshake.py::test_syn_with_other_isn_in_window",
     Fault("RA", nth=1, action="drop"), "RFC9293/3.10.7.4"),
    ("test_handshake.py::test_client_resets_synack_acking_unsent",
     Fault("R", nth=1, action="seq", offset=1), "RFC9293/3.10.7.3"),
    ("test_handshake.py::test_synack_retransmitted_then_dropped[ipv4-retries-2]",
     Fault("SA", nth=3, action="drop"), "RFC6298/5.5"),
    ("test_handshake.py::test_synack_retransmitted_then_dropped[ipv4-retries-2]",
     Fault("SA", nth=2, action="delay", offset=0.4), "RFC6298/5.5"),
    ("test_handshake.py::test_synack_retransmitted_then_dropped[ipv4-retries-2]",
     Fault("R", nth=1, action="drop"), "RFC9293/3.10.7.2"),
    ("test_handshake.py::test_synack_retransmitted_then_dropped[ipv4-retries-2]",     # held on the path, not
     Delay(0.4, "sut", "SA", nth=2), "RFC6298/5.5"),                                 # only stamped late

    ("test_handshake.py::test_data_on_third_ack_is_delivered",
     Fault("A", nth=1, action="ack", offset=-1), "RFC9293/3.10.7.4"),
    ("test_handshake.py::test_data_on_third_ack_is_delivered",
     Fault("SA", nth=1, action="chksum", offset=1), "RFC9293/MUST-2"),
    ("test_teardown.py::test_fin_retransmitted_into_time_wait",
     Fault("A", nth=3, action="drop"), "RFC9293/3.10.7.4"),
    ("test_teardown.py::test_fin_retransmitted_into_time_wait",
     Fault("A", nth=4, action="seq", offset=-1), "RFC9293/3.10.7.4"),
    # --- report ---
    ("test_trace.py::test_tcpdump_relative_and_absolute",
     Fault("A", nth=1, action="seq", offset=1), "RFC9293/3.4"),
]


@pytest.mark.parametrize("test, fault, requirement", CONTROLS,
                         ids=[f"{t.split('::')[1].split('[')[0]}-{f.action}-{f.flags}{f.nth}" for t, f, _ in CONTROLS])
def test_case_fails_when_its_behaviour_is_broken(run_case, test, fault, requirement):
    result = run_case(node(test), plugins=[FaultPlugin(fault)])
    assert_control_fails(result, requirement, fault)


@pytest.mark.parametrize("test", sorted({t for t, _, _ in CONTROLS}))
def test_case_passes_without_fault(run_case, test):
    """The control of the control: the same case on the same link, unbroken."""
    result = run_case(node(test))
    assert_case_passes(result)


def test_trace_case_shows_the_shifted_data_in_tcpdump_notation(run_case):
    """trace.relative-and-absolute: the SUT's data one sequence number late
    reads `seq 2:17` where the seed note's capture has `seq 1:16`."""
    result = run_case(node("test_trace.py::test_tcpdump_relative_and_absolute"),
                      plugins=[FaultPlugin(Fault("A", nth=1, action="seq", offset=1))])
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert "expected: server > client: Flags [.], seq 1:16, ack 1, length 15" in out
    assert "seen:     server > client: Flags [.], seq 2:17, ack 1, length 15" in out
