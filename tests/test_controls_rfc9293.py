"""Negative controls of the RFC 9293 coverage cases (options and MSS,
checksums, resets, sending and acknowledging, windows, ICMP, the IP layer,
OPEN and CLOSE, urgent data, retransmission and giving up, ECN): each case,
run with exactly the behaviour it checks broken, must fail, name its
requirement and show expected against seen. Most breakages are link faults
(tests/faults.py); where the case checks that the SUT stays silent or sizes
what it sends, the premise is broken instead (Patch: the segment made
acceptable, the bound made stricter), or the stack is set up to break it
(--sysctl), or its profile misstates it (ProfilePatch, BehaviourPatch)."""
import pytest

from scapy.layers.inet import TCP

import harness.icmp as icmp_module
from harness.segment import Segment
from faults import (BehaviourPatch, Fault, FaultPlugin, Patch, ProfilePatch, assert_case_passes, assert_control_fails,
                    node)

pytestmark = pytest.mark.root


def _moved(seg):
    """The SUT's segment with its sequence number moved far out of the
    window: an ICMP error quoting it belongs to no connection (RFC 5927)."""
    pkt = seg.pkt.copy()
    pkt[TCP].seq = (pkt[TCP].seq + 1_000_000_000) % (1 << 32)
    del pkt[TCP].chksum
    return Segment.parse(bytes(pkt), seg.t, seg.sent_by)


STALE = Patch("harness.icmp", "quote", lambda seg, q=icmp_module.quote: q(_moved(seg)))


CONTROLS = [
    # (id, case test, plugin or None, extra pytest arguments, requirement the failure must name)
    # options and MSS
    ("eol-synack-lost", "test_options_parsing.py::test_syn_with_eol_nop_and_mss[ipv4-mss-after-eol]",
     Fault("SA", nth=1, action="drop"), (), "RFC9293/MUST-4"),
    ("option-data-unacked", "test_options_parsing.py::test_options_on_data_segments[ipv4-sack-block]",
     Fault("A", nth=1, action="ack", offset=-1), (), "RFC9293/MUST-5"),
    ("unknown-kind-synack-lost", "test_options_parsing.py::test_unknown_option_is_skipped[ipv4-kind-158]",
     Fault("SA", nth=1, action="drop"), (), "RFC9293/MUST-6"),
    ("illegal-length-dead", "test_options_parsing.py::test_illegal_option_length_on_syn[ipv4-length-0]",
     Fault("SA", nth=2, action="drop"), (), "RFC9293/MUST-7"),
    ("unaligned-ts-unread", "test_options_parsing.py::test_options_at_odd_offsets[ipv4-mss-at-offset-1]",
     Fault("SA", nth=1, action="set", option="Timestamp", value=(1, 2)), (), "RFC9293/MUST-64"),
    ("synack-without-mss", "test_mss.py::test_received_mss_bounds_the_data[ipv4-700]",
     Fault("SA", nth=1, action="strip", option="MSS"), (), "RFC9293/MUST-14"),
    ("mss-not-always", "test_mss.py::test_mss_option_on_synack_to_a_syn_without_one",
     Fault("SA", nth=1, action="strip", option="MSS"), (), "RFC9293/MAY-3"),
    ("default-mss-stricter", "test_mss.py::test_no_mss_option_means_the_default",
     Patch("test_mss", "DEFAULT_MSS", {"ipv4": 500, "ipv6": 1200}), (), "RFC9293/MUST-15"),
    ("timestamps-not-subtracted", "test_mss.py::test_effective_mss_subtracts_options[ipv4-with-timestamps]",
     Patch("test_mss", "TS_OPTION", 0), (), "RFC9293/MUST-16"),
    ("mss-on-an-ack", "test_mss.py::test_sut_sends_mss_only_on_syn",
     Fault("A", nth=2, action="set", option="MSS", value=700), (), "RFC9293/MUST-65"),
    # checksums
    ("sut-checksum-wrong", "test_checksum.py::test_every_segment_of_the_sut_has_a_valid_checksum",
     Fault("A", nth=2, action="corrupt"), (), "RFC9293/MUST-2"),
    ("bad-checksum-accepted", "test_checksum.py::test_data_with_bad_checksum_is_discarded[ipv4-flipped]",
     Patch("test_checksum", "corrupt", lambda pkt, zero=False: bytes(pkt)), (), "RFC9293/MUST-3"),
    # resets
    ("listen-lost-after-rst", "test_reset_rules.py::test_rst_in_passive_syn_received_returns_to_listen",
     Fault("SA", nth=2, action="drop"), (), "RFC9293/MUST-11"),
    ("active-rst-not-closed", "test_reset_rules.py::test_rst_in_active_syn_received_refuses_the_connection",
     Fault("R", nth=1, action="drop"), (), "RFC9293/MUST-11"),
    ("rst-with-data-ignored", "test_reset_rules.py::test_rst_carrying_data_resets",
     Fault("R", nth=1, action="seq", offset=1), (), "RFC9293/SHLD-2"),
    ("zero-window-rst-ignored", "test_reset_rules.py::test_rst_processed_with_zero_window",
     Fault("R", nth=1, action="drop"), (), "RFC9293/MUST-66"),
    # sending
    ("no-nagle", "test_sending.py::test_small_writes_wait_for_the_ack",
     Patch("test_sending", "LISTEN_OPTIONS", {"TCP_NODELAY": 1}), (), "RFC9293/SHLD-7"),
    ("nodelay-held", "test_sending.py::test_nodelay_sends_small_writes_at_once",
     Fault("A", nth=2, action="delay", offset=0.3), (), "RFC9293/MUST-17"),
    ("no-psh-at-end", "test_sending.py::test_psh_on_the_segment_that_empties_the_buffer[ipv4-300]",
     Fault("A", nth=1, action="flags", value="A"), (), "RFC9293/MUST-61"),
    # acknowledging
    ("ack-too-late", "test_receiving.py::test_lone_segments_are_acknowledged_within_half_a_second",
     Fault("A", nth=18, action="delay", offset=0.7), (), "RFC9293/MUST-40"),
    ("ack-every-third", "test_receiving.py::test_full_segments_are_acknowledged_at_least_every_second",
     [Fault("A", nth=6, action="drop"), Fault("A", nth=6, action="drop")], (), "RFC9293/SHLD-19"),
    ("no-aggregation", "test_receiving.py::test_a_burst_draws_fewer_acks_than_segments",
     ProfilePatch(quickack_segments=0), (), "RFC9293/MUST-58"),
    ("no-dup-ack", "test_receiving.py::test_out_of_order_segment_is_held_and_acknowledged_at_once",
     Fault("A", nth=1, action="drop"), (), "RFC9293/MAY-13"),
    ("injection-accepted", "test_receiving.py::test_data_with_an_ack_far_below_snd_una",
     Fault("A", nth=1, action="ack", offset=49), (), "RFC9293/MAY-12"),
    # windows
    ("window-as-signed", "test_window.py::test_window_above_32767_is_unsigned",
     Fault("A", nth=12, action="mute"), (), "RFC9293/MUST-1"),
    ("window-in-16-bits", "test_window.py::test_window_of_exactly_65536",     # as if the window read 0: silence
     Fault("A", nth=1, action="mute"), (), "RFC9293/REC-1"),
    ("new-data-past-edge", "test_window.py::test_sender_copes_with_a_shrunk_window",
     Fault("A", nth=7, action="seq", offset=8000), (), "RFC9293/SHLD-15"),
    ("silly-window-sent", "test_window.py::test_sender_avoids_a_silly_window",     # a retransmission made small new data
     (Patch("test_window", "SWS_OVERRIDE_MIN", 2.0),
      [Fault("A", nth=6, action="seq", offset=7300), Fault("A", nth=6, action="trim", offset=200)]), (),
     "RFC9293/MUST-38"),
    ("window-edge-filled", "test_window.py::test_sender_does_not_fill_a_window_edge_with_a_small_segment",
     BehaviourPatch("sws.window-edge", "full-only"), (), "RFC9293/MUST-38"),
    ("zero-window-abandoned", "test_window.py::test_zero_window_held_longer_than_r2",
     Fault("A", nth=3, action="mute"), (), "RFC9293/MUST-37"),
    ("shrunk-window-abandoned", "test_window.py::test_data_beyond_a_shrunk_edge_does_not_time_out",
     Fault("A", nth=7, action="mute"), (), "RFC9293/SHLD-17"),
    ("receiver-shrinks", "test_window.py::test_receive_window_closes_without_shrinking_and_stays_closed",
     Fault("A", nth=2, action="window", offset=-2), (), "RFC9293/SHLD-14"),
    ("receiver-silly-window", "test_window.py::test_window_reopens_in_worthwhile_steps",
     Patch("test_window", "full_segment", lambda stack, peer: 60000), (), "RFC9293/MUST-39"),
    # ICMP
    ("icmp-not-demultiplexed", "test_icmp.py::test_soft_error_reaches_its_connection_only", STALE, (),
     "RFC9293/MUST-54"),
    ("source-quench-obeyed", "test_icmp.py::test_source_quench_is_ignored",
     Fault("A", nth=3, action="mute"), (), "RFC9293/MUST-55"),
    ("soft-error-aborts", "test_icmp.py::test_soft_error_does_not_abort[ipv4-host-unreachable]",
     Fault("A", nth=2, action="mute"), (), "RFC9293/MUST-56"),
    ("soft-error-unreported", "test_icmp.py::test_soft_error_reported_when_asked", STALE, (), "RFC9293/MUST-47"),
    ("soft-error-unavailable", "test_icmp.py::test_soft_error_not_reported_when_off", STALE, (), "RFC9293/SHLD-25"),
    ("hard-error-ignored", "test_icmp.py::test_port_unreachable_aborts_an_active_open", STALE, (),
     "RFC9293/SHLD-26"),
    # IP layer
    ("ip-options-dropped", "test_ip_layer.py::test_unknown_ip_options_are_ignored",
     Fault("SA", nth=1, action="drop"), (), "RFC9293/MUST-50"),
    ("record-route-dropped", "test_ip_layer.py::test_recording_ip_options_on_a_syn[ipv4-record-route]",
     Fault("SA", nth=1, action="drop"), (), "RFC9293/MAY-11"),
    ("source-route-not-reversed", "test_ip_layer.py::test_reply_follows_a_received_source_route[ipv4-accepting]",
     Fault("SA", nth=1, action="drop"), (), "RFC9293/MUST-53"),
    ("invalid-source-answered", "test_ip_layer.py::test_syn_from_an_invalid_source_is_ignored[ipv4-broadcast]",
     Patch("test_ip_layer", "BAD_SOURCES", {"ipv4": {"broadcast": "198.18.0.9"}}), (), "RFC9293/MUST-63"),
    ("broadcast-answered", "test_ip_layer.py::test_segment_to_broadcast_or_multicast_is_discarded[ipv4-broadcast]",
     Patch("test_ip_layer", "BAD_DESTINATIONS", {"ipv4": {"broadcast": "198.18.0.1"}}), (), "RFC9293/MUST-57"),
    ("dscp-rewritten", "test_ip_layer.py::test_application_sets_and_changes_dscp",
     Fault("A", nth=1, action="ip", option="tos", value=0), (), "RFC9293/SHLD-22"),
    ("ttl-ignored", "test_ip_layer.py::test_application_sets_the_ttl",
     Fault("A", nth=1, action="ip", option="ttl", value=64), (), "RFC9293/MUST-49"),
    # OPEN and CLOSE
    ("syn-not-from-given-port", "test_open_calls.py::test_active_open_from_a_given_local_address_and_port",
     [Fault("S", nth=1, action="sport", offset=1), Fault("S", nth=2, action="mute")], (), "RFC9293/MUST-43"),
    ("open-to-broadcast-allowed", "test_open_calls.py::test_open_to_broadcast_or_multicast_fails[ipv4-broadcast]",
     Patch("test_open_calls", "BROADCAST_OR_MULTICAST", {"ipv4": {"broadcast": "198.18.0.2"}}), (),
     "RFC9293/MUST-46"),
    ("listen-beside-opening-deaf", "test_open_calls.py::test_listen_on_the_port_of_an_opening_connection",
     Fault("SA", nth=1, action="drop"), (), "RFC9293/MUST-42"),
    ("close-unread-fin", "test_open_calls.py::test_close_with_unread_data_resets",
     Fault("RA", nth=1, action="drop"), (), "RFC9293/SHLD-3"),
    # urgent data
    ("urgent-unacked", "test_urgent.py::test_segment_with_urgent_data_is_accepted",
     Fault("A", nth=1, action="mute"), (), "RFC9293/MUST-30"),
    ("urgent-pointer-off", "test_urgent.py::test_urgent_pointer_points_past_the_urgent_data",
     Fault("A", nth=1, action="urgptr", offset=-1), (), "RFC9293/MUST-62"),
    ("urgent-unsignalled", "test_urgent.py::test_application_is_told_of_urgent_data_and_finds_the_mark",
     Fault("A", nth=1, action="mute"), (), "RFC9293/MUST-32"),
    ("urgent-sequence-unacked", "test_urgent.py::test_urgent_data_spanning_several_segments",
     Fault("A", nth=1, action="mute"), (), "RFC9293/MUST-31"),
    # retransmission and giving up
    ("rto-ignores-rtt", "test_giveup.py::test_rto_after_a_long_handshake_rtt",
     Fault("A", nth=3, action="delay", offset=-1.2), (), "RFC9293/MUST-18"),
    ("ip-id-reused", "test_giveup.py::test_retransmission_ip_identification",
     [Fault("A", nth=1, action="ip", option="id", value=7), Fault("A", nth=2, action="ip", option="id", value=7)],
     (), "RFC9293/MAY-4"),
    ("given-up-silently", "test_giveup.py::test_unanswered_data_is_given_up_after_r2",
     Fault("R", nth=1, action="drop"), (), "RFC9293/MUST-20"),
    ("r2-too-short", "test_giveup.py::test_r2_lasts_at_least_100_seconds",
     None, ("--sysctl", "net.ipv4.tcp_retries2=3"), "RFC9293/SHLD-11"),
    ("user-timeout-late", "test_giveup.py::test_application_sets_r2",
     ProfilePatch(user_timeout_late=0.0), (), "RFC9293/MUST-21"),
    ("syn-not-retransmitted", "test_giveup.py::test_unanswered_syn_backs_off_then_gives_up",
     Fault("S", nth=2, action="mute"), (), "RFC9293/MUST-22"),
    ("syn-given-up-early", "test_giveup.py::test_syn_retransmitted_for_three_minutes",
     BehaviourPatch("syn.give-up", "at-least-3-min"), ("--sysctl", "net.ipv4.tcp_syn_retries=1"), "RFC9293/MUST-23"),
    # ECN
    ("ecn-not-answered", "test_ecn.py::test_ecn_setup_and_congestion_echo",
     Fault("SA", nth=1, action="flags", value="SA"), (), "RFC9293/SHLD-8"),
]


def _plugins(p) -> list:
    """A control's plugins: a Fault or a list of them (one FaultPlugin), any
    other plugin as it is, a tuple of those."""
    if p is None:
        return []
    if isinstance(p, tuple):
        return [x for item in p for x in _plugins(item)]
    if isinstance(p, list) or isinstance(p, Fault):
        return [FaultPlugin(p)]
    return [p]


@pytest.mark.parametrize("test, plugin, args, requirement", [c[1:] for c in CONTROLS], ids=[c[0] for c in CONTROLS])
def test_case_fails_when_its_behaviour_is_broken(run_case, test, plugin, args, requirement):
    result = run_case(node(test), *args, "-m", "", plugins=_plugins(plugin))
    assert_control_fails(result, requirement, plugin if isinstance(plugin, Fault) else None)


@pytest.mark.parametrize("test", sorted({c[1] for c in CONTROLS if "three_minutes" not in c[1] and "100_seconds" not in c[1]}))
def test_case_passes_without_fault(run_case, test):
    """The control of the control: the same case on the same link, unbroken (the slow ones run in the suite)."""
    result = run_case(node(test))
    assert_case_passes(result)
