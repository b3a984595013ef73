"""Negative controls of the cases of RFC 5961, 7323, 6298/8985, 5681, 2018/2883,
1191/8201/5927 and 7413: each case, run with exactly the behaviour it checks
broken on the link, must fail, name its requirement and show expected
against seen. The SUT's segments are counted per exact SYN/ACK/FIN/RST
flags (tests/faults.py), so `Fault("A", nth=7, ...)` is the seventh
ACK-only segment the SUT sends (data segments included)."""
import pytest

from faults import Fault, FaultPlugin, assert_case_passes, assert_control_fails, node

pytestmark = pytest.mark.root

CONTROLS = [
    # (case test, fault, requirement the failure must name)
    # RFC 5961 §7: the challenge ACK after the interval is lost; the first one acknowledges the wrong octet
    ("test_rfc5961.py::test_challenge_acks_are_throttled[ipv4-default]",
     Fault("A", nth=2, action="drop"), "RFC5961/7"),
    ("test_rfc5961.py::test_challenge_acks_are_throttled[ipv4-default]",
     Fault("A", nth=1, action="ack", offset=1), "RFC5961/4.2"),
    # RFC 7323
    ("test_timestamps.py::test_timestamps_only_when_negotiated[ipv4-offered]",
     Fault("A", nth=2, action="strip", option="Timestamp"), "RFC7323/3.2"),
    ("test_timestamps.py::test_timestamps_only_when_negotiated[ipv4-not-offered]",
     Fault("SA", nth=1, action="set", option="Timestamp", value=(1, 0)), "RFC7323/3.2"),
    ("test_timestamps.py::test_tsecr_echoes_ts_recent[ipv4-in-order]",
     Fault("A", nth=1, action="set", option="Timestamp", value=(1, 12345)), "RFC7323/4.3"),
    ("test_timestamps.py::test_tsecr_echoes_ts_recent[ipv4-out-of-order]",
     Fault("A", nth=2, action="set", option="Timestamp", value=(1, 12345)), "RFC7323/4.3"),
    ("test_timestamps.py::test_paws_drops_old_timestamp",
     Fault("A", nth=2, action="drop"), "RFC7323/5.3"),
    ("test_timestamps.py::test_window_of_syn_is_not_scaled",
     Fault("A", nth=2, action="seq", offset=3000), "RFC7323/2.2"),
    # RFC 6298 / 8985: the retransmission late, the backed-off one early, the probe lost
    ("test_rto.py::test_rto_follows_the_measured_rtt",
     Fault("A", nth=7, action="delay", offset=0.3), "RFC6298/2.3"),
    ("test_rto.py::test_backoff_kept_until_a_new_sample",
     Fault("A", nth=4, action="delay", offset=-0.15), "RFC6298/3"),
    ("test_rto.py::test_tail_loss_probe",
     Fault("A", nth=8, action="drop"), "RFC8985/7.3"),
    # RFC 5681
    ("test_congestion.py::test_initial_window",
     Fault("A", nth=3, action="drop"), "RFC6928/2"),
    ("test_congestion.py::test_slow_start_growth[ipv4-reno]",
     Fault("A", nth=10, action="drop"), "RFC5681/3.1"),
    ("test_congestion.py::test_fast_retransmit_and_limited_transmit[ipv4-reno]",
     Fault("A", nth=17, action="drop"), "RFC5681/3.2"),
    # under bbr the SUT falls silent after its first flight: the duplicate ACKs release nothing
    ("test_congestion.py::test_fast_retransmit_and_limited_transmit[ipv4-default]",
     Fault("A", nth=13, action="mute"), "RFC3042/2"),
    ("test_congestion.py::test_window_after_rto[ipv4-reno]",
     Fault("A", nth=11, action="seq", offset=1), "RFC5681/3.1"),
    # RFC 2018 / 2883
    ("test_sack.py::test_sack_blocks_report_out_of_order_data",
     Fault("A", nth=1, action="set", option="SAck", value=(1, 2)), "RFC2018/4"),
    ("test_sack.py::test_dsack_reports_duplicates",
     Fault("A", nth=2, action="strip", option="SAck"), "RFC2883/4"),
    ("test_sack.py::test_sender_retransmits_only_the_holes",
     Fault("A", nth=2, action="seq", offset=-1000), "RFC2018/8"),
    # path MTU: the retransmission of the quoted segment lost; the last segment of the
    # flight shifted so that the quoted sequence number falls inside the window
    ("test_pmtu.py::test_too_big_lowers_the_segment_size",
     Fault("A", nth=11, action="seq", offset=1), "RFC1191/3"),
    ("test_pmtu.py::test_too_big_quoting_another_sequence_is_ignored",
     Fault("A", nth=10, action="seq", offset=-(1 << 20)), "RFC5927/4.1"),
    # RFC 7413
    ("test_fastopen.py::test_server_gives_a_cookie_and_takes_data_with_it",
     Fault("SA", nth=1, action="strip", option="TFO"), "RFC7413/4.1.2"),
    ("test_fastopen.py::test_server_ignores_data_with_an_invalid_cookie",
     Fault("SA", nth=2, action="ack", offset=13), "RFC7413/4.2.2"),
    ("test_fastopen.py::test_client_requests_then_uses_a_cookie[ipv4-takes-data]",
     Fault("S", nth=1, action="strip", option="TFO"), "RFC7413/4.1.1"),
]


def _id(test, fault) -> str:
    name = test.split("::")[1].split("[")[0]
    return f"{name}-{fault.action}-{fault.flags}{fault.nth}"


@pytest.mark.parametrize("test, fault, requirement", [pytest.param(*c, id=_id(*c[:2])) for c in CONTROLS])
def test_case_fails_when_its_behaviour_is_broken(run_case, test, fault, requirement):
    result = run_case(node(test), plugins=[FaultPlugin(fault)])
    assert_control_fails(result, requirement, fault)


@pytest.mark.parametrize("test", sorted({c[0] for c in CONTROLS}))
def test_case_passes_without_fault(run_case, test):
    """The control of the control: the same case on the same link, unbroken."""
    result = run_case(node(test))
    assert_case_passes(result)
