"""Negative controls of the handshake options, simultaneous open, SYN data,
SYN cookie and ISN cases: each case, run with exactly the behaviour it checks
broken on the link, must fail, name its requirement and show expected
against seen."""
import pytest

from faults import Fault, FaultPlugin, PredictableIsn, assert_case_passes, assert_control_fails, node

pytestmark = pytest.mark.root

SYN_DATA = len(b"data on a SYN without a Fast Open cookie")

CONTROLS = [
    # (id, case test, fault, requirement the failure must name)
    ("syn-without-wscale", "test_options.py::test_options_of_the_stacks_syn",
     Fault("S", nth=1, action="strip", option="WScale"), "RFC7323/2.2"),
    ("syn-shift-15", "test_options.py::test_options_of_the_stacks_syn",
     Fault("S", nth=1, action="set", option="WScale", value=15), "RFC7323/2.3"),
    ("syn-tsecr-nonzero", "test_options.py::test_options_of_the_stacks_syn",
     Fault("S", nth=1, action="set", option="Timestamp", value=(1, 1)), "RFC7323/3.2"),
    ("synack-acks-iss+2", "test_options.py::test_synack_answers_the_options_offered[ipv4-all]",
     Fault("SA", nth=1, action="ack", offset=1), "RFC9293/3.10.7.2"),
    ("synack-tsecr-wrong", "test_options.py::test_synack_answers_the_options_offered[ipv4-all]",
     Fault("SA", nth=1, action="set", option="Timestamp", value=(1, 2)), "RFC7323/3.2"),
    ("synack-ts-unoffered", "test_options.py::test_synack_answers_the_options_offered[ipv4-none]",
     Fault("SA", nth=1, action="set", option="Timestamp", value=(1, 0)), "RFC7323/3.2"),
    ("synack-wscale-unoffered", "test_options.py::test_synack_answers_the_options_offered[ipv4-sack-only]",
     Fault("SA", nth=1, action="set", option="WScale", value=7), "RFC7323/2.2"),
    ("synack-wscale-unanswered", "test_options.py::test_synack_answers_the_options_offered[ipv4-wscale-only]",
     Fault("SA", nth=1, action="strip", option="WScale"), "RFC7323/2.2"),
    ("synack-sack-unoffered", "test_options.py::test_synack_answers_the_options_offered[ipv4-none]",
     Fault("SA", nth=1, action="set", option="SAckOK", value=b""), "RFC2018/2"),
    ("data-beyond-clamped-window", "test_options.py::test_window_scale_above_14_is_used_as_14[ipv4-20]",
     Fault("A", nth=5, action="seq", offset=1 << 14), "RFC7323/2.3"),
    ("crossing-synack-new-isn", "test_handshake_more.py::test_simultaneous_open[ipv4-synack]",
     Fault("SA", nth=1, action="seq", offset=1), "RFC9293/3.10.7.3"),
    ("crossing-synack-bad-ack", "test_handshake_more.py::test_simultaneous_open[ipv4-ack]",
     Fault("SA", nth=1, action="ack", offset=1), "RFC9293/3.10.7.3"),
    ("simultaneous-data-seq", "test_handshake_more.py::test_simultaneous_open[ipv4-synack]",
     Fault("A", nth=2, action="seq", offset=1), "RFC9293/3.10.7.4"),
    ("synack-acks-syn-data", "test_handshake_more.py::test_data_on_plain_syn_is_not_delivered_early",
     Fault("SA", nth=1, action="ack", offset=SYN_DATA), "RFC9293/3.10.7.2"),
    ("resent-data-unacked", "test_handshake_more.py::test_data_on_plain_syn_is_not_delivered_early",
     Fault("A", nth=1, action="ack", offset=-SYN_DATA), "RFC9293/3.10.7.4"),
    ("cookie-options-not-in-tsval", "test_syncookies.py::test_forced_syncookies",
     Fault("SA", nth=1, action="set", option="Timestamp", value=(1_000_000, 0)), "RFC4987/3.6"),
    ("forged-cookie-rst-seq", "test_syncookies.py::test_forced_syncookies",
     Fault("R", nth=1, action="seq", offset=1), "RFC9293/3.10.7.2"),
    ("forged-cookie-no-rst", "test_syncookies.py::test_syncookies_on_backlog_overflow",
     Fault("R", nth=1, action="drop"), "RFC9293/3.10.7.2"),
    ("cookie-synack-keeps-wscale", "test_syncookies.py::test_syncookies_on_backlog_overflow",
     Fault("SA", nth=3, action="set", option="WScale", value=7), "RFC4987/3.6"),
    ("cookie-connection-data-lost", "test_syncookies.py::test_syncookies_on_backlog_overflow",
     Fault("A", nth=1, action="drop"), "RFC4987/3.6"),
    ("isn-counter-on-one-tuple", "test_isn.py::test_isn_follows_the_clock_on_one_tuple",
     PredictableIsn(), "RFC9293/MUST-8"),
    ("isn-counter", "test_isn.py::test_isn_of_another_tuple_is_not_predictable",
     PredictableIsn(step=64000), "RFC9293/SHLD-1"),
    ("isn-bare-clock", "test_isn.py::test_isn_of_another_tuple_is_not_predictable",
     PredictableIsn(tick=64e-9), "RFC9293/SHLD-1"),
]


@pytest.mark.parametrize("test, fault, requirement", [c[1:] for c in CONTROLS], ids=[c[0] for c in CONTROLS])
def test_case_fails_when_its_behaviour_is_broken(run_case, test, fault, requirement):
    result = run_case(node(test), plugins=[FaultPlugin(fault)])
    assert_control_fails(result, requirement, fault)


@pytest.mark.parametrize("test", sorted({c[1] for c in CONTROLS}))
def test_case_passes_without_fault(run_case, test):
    """The control of the control: the same case on the same link, unbroken."""
    result = run_case(node(test))
    assert_case_passes(result)
