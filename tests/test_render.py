"""Unit tests of the pictures of a trace (harness.render): the RFC 9293
ladder with its inferred states, and the SVG sequence diagram. No root."""
import re
import time
import xml.etree.ElementTree as ET

from scapy.layers.inet import ICMP, IP, TCP

from harness import render
from harness.link import Link
from harness.trace import Trace

PEER, SUT = "198.18.0.2", "198.18.0.1"
SVG_NS = "{http://www.w3.org/2000/svg}"


def seg(sender, flags, seq, ack=0, data=b"", sport=4970, dport=23, **kw):
    """A segment of the seed note's connection: the tester is the client
    (port 4970), the SUT the server (port 23)."""
    if sender == "peer":
        pkt = IP(src=PEER, dst=SUT) / TCP(sport=sport, dport=dport, flags=flags, seq=seq, ack=ack, **kw)
    else:
        pkt = IP(src=SUT, dst=PEER) / TCP(sport=dport, dport=sport, flags=flags, seq=seq, ack=ack, **kw)
    return bytes(pkt / data if data else pkt)


def trace_of(*packets):
    tr = Trace(t0=0.0)
    for i, (sender, *args) in enumerate(packets):
        tr.add(seg(sender, *args), 0.01 * (i + 1), sender)
    return tr


LINE = re.compile(r"^\s*(\d+)\.\s{2}(.{12}) (-->|<--|\.\.\.|XXX) (.*?)\s+(-->|<--|\.\.\.|XXX) ?((?!\()\S*)")


def rows(tr):
    """The ladder as (tester state, arrow, segment, arrow, SUT state, rest of line)."""
    out = []
    for line in render.ladder(tr).splitlines():
        m = LINE.match(line)
        if m:
            out.append((m.group(2).strip(), m.group(3), m.group(4), m.group(5), m.group(6), line))
    return out


C, S = 1197597775, 677374397       # the seed note's ISNs (client, server)

SEED_NOTE = [
    ("peer", "S", C, 0, b"", 4970, 23, {"window": 64240, "options": [("MSS", 1460), ("NOP", None), ("WScale", 8),
                                                                        ("NOP", None), ("NOP", None), ("SAckOK", b"")]}),
    ("sut", "SA", S, C + 1, b"", 4970, 23, {"window": 29200}),
    ("peer", "A", C + 1, S + 1),
    ("sut", "PA", S + 1, C + 1, b"x" * 15),
    ("peer", "A", C + 1, S + 16),
    ("peer", "PA", C + 1, S + 16, b"ab"),
    ("sut", "A", S + 16, C + 3),
    ("peer", "FA", C + 3, S + 16),
    ("sut", "FA", S + 16, C + 4),
    ("peer", "A", C + 4, S + 17),
]


def seed_note_trace():
    tr = Trace(t0=0.0)
    for i, (sender, *args) in enumerate(SEED_NOTE):
        kw = args.pop() if len(args) == 7 else {}
        tr.add(seg(sender, *args, **kw), 0.01 * (i + 1), sender)
    return tr


# --- the ladder --------------------------------------------------------------------------------

def test_the_seed_note_exchange_as_an_rfc_ladder():
    got = [r[:5] for r in rows(seed_note_trace())]
    assert got == [
        ("SYN-SENT", "-->", "<SEQ=0><CTL=SYN>", "-->", "SYN-RECEIVED"),
        ("ESTABLISHED", "<--", "<SEQ=0><ACK=1><CTL=SYN,ACK>", "<--", "SYN-RECEIVED"),
        ("ESTABLISHED", "-->", "<SEQ=1><ACK=1><CTL=ACK>", "-->", "ESTABLISHED"),
        ("ESTABLISHED", "<--", "<SEQ=1><ACK=1><CTL=PSH,ACK><DATA=15>", "<--", "ESTABLISHED"),
        ("ESTABLISHED", "-->", "<SEQ=1><ACK=16><CTL=ACK>", "-->", "ESTABLISHED"),
        ("ESTABLISHED", "-->", "<SEQ=1><ACK=16><CTL=PSH,ACK><DATA=2>", "-->", "ESTABLISHED"),
        ("ESTABLISHED", "<--", "<SEQ=16><ACK=3><CTL=ACK>", "<--", "ESTABLISHED"),
        ("FIN-WAIT-1", "-->", "<SEQ=3><ACK=16><CTL=FIN,ACK>", "-->", "CLOSE-WAIT"),
        ("TIME-WAIT", "<--", "<SEQ=16><ACK=4><CTL=FIN,ACK>", "<--", "LAST-ACK"),
        ("TIME-WAIT", "-->", "<SEQ=4><ACK=17><CTL=ACK>", "-->", "CLOSED"),
    ]


def test_ladder_opens_with_both_initial_states_the_isns_and_times():
    text = render.ladder(seed_note_trace())
    first = next(line for line in text.splitlines() if line.strip().startswith("1."))
    assert re.match(r"^\s+1\.\s+CLOSED\s+LISTEN\b", first)
    assert f"      (ISN: tester {C}, SUT {S})" in text.splitlines()
    assert "tester (TCP Peer A) 198.18.0.2.4970" in text and "SUT (TCP Peer B) 198.18.0.1.23" in text
    assert rows(seed_note_trace())[3][5].rstrip().endswith("0.040000")


def test_stack_closing_first_goes_through_fin_wait_and_time_wait():
    tr = trace_of(("peer", "S", 100), ("sut", "SA", 300, 101), ("peer", "A", 101, 301),
                  ("sut", "FA", 301, 101), ("peer", "A", 101, 302), ("peer", "FA", 101, 302),
                  ("sut", "A", 302, 102), ("peer", "FA", 101, 302))
    got = [(r[0], r[4], r[5].endswith("(retransmission)")) for r in rows(tr)]
    assert got[3:] == [("CLOSE-WAIT", "FIN-WAIT-1", False), ("CLOSE-WAIT", "FIN-WAIT-2", False),
                       ("LAST-ACK", "TIME-WAIT", False), ("CLOSED", "TIME-WAIT", False),
                       ("CLOSED", "TIME-WAIT", True)]


def _closing(*packets):
    """An established connection (ISNs 99 and 299, so that the FINs carry
    the sequence numbers of RFC 9293 Figures 12 and 13: 100 and 300), then
    `packets`."""
    return trace_of(("peer", "S", 99), ("sut", "SA", 299, 100), ("peer", "A", 100, 300), *packets)


def test_figure_12_normal_close_with_the_tester_as_peer_a():
    """RFC 9293 Figure 12: A closes, B acknowledges, later closes too.
    A: FIN-WAIT-1, FIN-WAIT-2, TIME-WAIT; B: CLOSE-WAIT, LAST-ACK, CLOSED."""
    tr = _closing(("peer", "FA", 100, 300), ("sut", "A", 300, 101), ("sut", "FA", 300, 101),
                  ("peer", "A", 101, 301))
    got = [(r[0], r[1], r[3], r[4]) for r in rows(tr)][3:]
    assert got == [("FIN-WAIT-1", "-->", "-->", "CLOSE-WAIT"), ("FIN-WAIT-2", "<--", "<--", "CLOSE-WAIT"),
                   ("TIME-WAIT", "<--", "<--", "LAST-ACK"), ("TIME-WAIT", "-->", "-->", "CLOSED")]


def test_figure_12_normal_close_with_the_sut_as_peer_a():
    tr = _closing(("sut", "FA", 300, 100), ("peer", "A", 100, 301), ("peer", "FA", 100, 301),
                  ("sut", "A", 301, 101))
    got = [(r[0], r[4]) for r in rows(tr)][3:]
    assert got == [("CLOSE-WAIT", "FIN-WAIT-1"), ("CLOSE-WAIT", "FIN-WAIT-2"), ("LAST-ACK", "TIME-WAIT"),
                   ("CLOSED", "TIME-WAIT")]


def test_figure_13_simultaneous_close_the_sut_fin_first():
    """RFC 9293 Figure 13, as teardown.simultaneous-close sees it: the SUT's
    FIN comes first, ours does not acknowledge it (sent before it arrived).
    Both sides go FIN-WAIT-1 -> CLOSING -> TIME-WAIT; the SUT's FIN is drawn
    in flight where it left (`...` at the tester) and again where it arrives."""
    tr = _closing(("sut", "FA", 300, 100), ("peer", "FA", 100, 300), ("sut", "A", 301, 101),
                  ("peer", "A", 101, 301))
    r = rows(tr)[3:]
    assert [(x[0], x[1], x[3], x[4]) for x in r] == [
        ("ESTABLISHED", "...", "<--", "FIN-WAIT-1"),      # the SUT's FIN leaves; not yet at the tester
        ("FIN-WAIT-1", "-->", "-->", "CLOSING"),          # ours leaves, and reaches the SUT in FIN-WAIT-1
        ("CLOSING", "<--", "...", ""),                    # the SUT's FIN arrives: the tester is CLOSING
        ("TIME-WAIT", "<--", "<--", "CLOSING"),           # the SUT acknowledges our FIN
        ("TIME-WAIT", "-->", "-->", "TIME-WAIT")]         # we acknowledge its FIN
    assert "the FINs cross" in r[0][5] and "the FIN of line 5 arrives" in r[2][5]
    peer = [x[0] for x in r]
    sut = [x[4] for x in r if x[4]]
    assert [s for n, s in enumerate(peer) if s != (peer[n - 1] if n else "ESTABLISHED")] == \
        ["FIN-WAIT-1", "CLOSING", "TIME-WAIT"]
    assert [s for n, s in enumerate(sut) if s != (sut[n - 1] if n else "")] == ["FIN-WAIT-1", "CLOSING", "TIME-WAIT"]


def test_figure_13_simultaneous_close_our_fin_first():
    """The same with the tester's FIN first: the SUT's FIN does not
    acknowledge ours, so it left before ours arrived."""
    tr = _closing(("peer", "FA", 100, 300), ("sut", "FA", 300, 100), ("peer", "A", 101, 301),
                  ("sut", "A", 301, 101))
    r = rows(tr)[3:]
    assert [(x[0], x[1], x[3], x[4]) for x in r] == [
        ("FIN-WAIT-1", "-->", "...", "ESTABLISHED"), ("CLOSING", "<--", "<--", "FIN-WAIT-1"),
        ("", "...", "-->", "CLOSING"), ("CLOSING", "-->", "-->", "TIME-WAIT"), ("TIME-WAIT", "<--", "<--", "TIME-WAIT")]


def test_crossing_fins_are_drawn_crossing_in_the_diagram():
    tr = _closing(("sut", "FA", 300, 100), ("peer", "FA", 100, 300), ("sut", "A", 301, 101))
    root = ET.fromstring(render.svg(tr))
    arrows = [l for l in root.findall(f"{SVG_NS}line") if l.get("marker-end")]
    assert len(arrows) == 6                               # one per segment
    sut_fin = arrows[4]                                   # drawn where it arrives, from where it left
    ours = arrows[3]
    assert float(sut_fin.get("y1")) < float(ours.get("y1")) < float(ours.get("y2")) < float(sut_fin.get("y2"))


def test_simultaneous_open_ends_established_on_both_sides():
    """RFC 9293 Figure 7 seen from the link: the SUT's SYN, the tester's SYN,
    then each side's SYN-ACK; no SYN-ACK is a retransmission of a SYN."""
    tr = trace_of(("sut", "S", 300), ("peer", "S", 100), ("sut", "SA", 300, 101), ("peer", "SA", 100, 301))
    text = render.ladder(tr)
    assert re.search(r"1\.\s+CLOSED\s+CLOSED", text)
    got = [(r[0], r[4]) for r in rows(tr)]
    assert got == [("CLOSED", "SYN-SENT"), ("SYN-SENT", "SYN-RECEIVED"), ("ESTABLISHED", "SYN-RECEIVED"),
                   ("ESTABLISHED", "ESTABLISHED")]
    assert "retransmission" not in text


def test_old_duplicate_syn_is_delayed_and_does_not_disturb_syn_received():
    """RFC 9293 Figure 8's notation: `...` on the sender's side, its state column empty."""
    tr = trace_of(("peer", "S", 100), ("sut", "SA", 300, 101), ("peer", "S", 90), ("sut", "A", 301, 101),
                  ("peer", "A", 101, 301))
    r = rows(tr)
    assert r[2][:5] == ("", "...", "<SEQ=-10><CTL=SYN>", "-->", "SYN-RECEIVED")
    assert "old duplicate SYN" in r[2][5]
    assert r[4][4] == "ESTABLISHED"


def test_syn_in_the_window_returns_a_passive_syn_received_to_listen_and_a_new_isn_restarts_numbering():
    tr = trace_of(("peer", "S", 100), ("sut", "SA", 4000000000, 101), ("peer", "S", 1100), ("sut", "RA", 0, 1101),
                  ("peer", "S", 50000), ("sut", "SA", 7000, 50001))
    r = rows(tr)
    assert r[2][4] == "LISTEN" and r[3][4] == "LISTEN"
    assert r[3][2] == "<SEQ=0 abs><ACK=1001><CTL=RST,ACK>"           # SEQ=0 of a RST is no relative number
    assert r[4][:5] == ("SYN-SENT", "-->", "<SEQ=0><CTL=SYN>", "-->", "SYN-RECEIVED")
    assert "new ISN" in r[4][5]
    assert r[5][2] == "<SEQ=0><ACK=1><CTL=SYN,ACK>"


def test_reset_for_an_unacceptable_ack_leaves_syn_sent():
    """RFC 9293 §3.10.7.3: <SEQ=SEG.ACK><CTL=RST> answers a SYN-ACK acking
    something never sent; the sender of the RST stays in SYN-SENT."""
    tr = trace_of(("sut", "S", 300), ("peer", "SA", 100, 1301), ("sut", "R", 1301),
                  ("peer", "SA", 100, 301), ("sut", "A", 301, 101))
    r = rows(tr)
    assert r[2][:5] == ("SYN-RECEIVED", "<--", "<SEQ=1001><CTL=RST>", "<--", "SYN-SENT")
    assert r[3][4] == "ESTABLISHED" and r[4][0] == "ESTABLISHED"


def test_a_reset_answering_an_ack_reveals_an_expired_timer():
    """The late third ACK after the SYN-ACK retransmissions: the SUT was
    back in LISTEN, which no segment showed."""
    tr = trace_of(("peer", "S", 100), ("sut", "SA", 300, 101), ("sut", "SA", 300, 101), ("peer", "A", 101, 301),
                  ("sut", "R", 301))
    r = rows(tr)
    assert "(retransmission)" in r[2][5]
    assert r[3][4] == "LISTEN" and "timer" in r[3][5]
    assert r[4][4] == "LISTEN" and r[4][0] == "CLOSED"


def test_segment_lost_on_the_link_is_xxx_and_kept_out_of_tcpdump_and_pcap(tmp_path):
    """A link filter's drop (the negative controls' faults) is recorded as lost."""
    from scapy.utils import rdpcap

    class Scripted(Link):
        def fileno(self):
            raise AssertionError

        def _write(self, raw):
            pass

        def _read_ready(self):
            return []                         # the script delivers by hand

    tr = Trace(t0=0.0)
    link = Scripted(tr)
    link.filters.append(lambda raw, t: None if TCP in IP(raw) and IP(raw)[TCP].flags == "PA" else (raw, t))
    link.send(seg("peer", "S", 100))
    link._deliver(seg("sut", "SA", 300, 101), time.monotonic())
    link.send(seg("peer", "A", 101, 301))
    link._deliver(seg("sut", "PA", 301, 101, b"hello"), time.monotonic())
    link._deliver(seg("sut", "PA", 301, 101, b"hello"), time.monotonic())   # dropped again
    assert len(tr.entries) == 3 and len(tr.dropped) == 2
    r = rows(tr)
    assert r[3][:5] == ("ESTABLISHED", "XXX", "<SEQ=1><ACK=1><CTL=PSH,ACK><DATA=5>", "<--", "ESTABLISHED")
    assert "lost on the link" in r[3][5]
    assert "lost on the link; retransmission" in r[4][5] and r[4][1] == "XXX"
    assert "length 5" not in tr.tcpdump(True)
    assert len(rdpcap(tr.pcap(str(tmp_path / "t.pcap")))) == 3


def test_case_marks_a_segment_rejected_and_the_receiver_does_not_move():
    tr = trace_of(("peer", "S", 100), ("sut", "SA", 300, 101), ("peer", "A", 101, 301))
    fin = tr.add(seg("peer", "FA", 101, 301), 0.5, "peer")
    tr.mark(fin, "lost", "bad checksum: rejected")
    r = rows(tr)
    assert r[3][:5] == ("FIN-WAIT-1", "-->", "<SEQ=1><ACK=1><CTL=FIN,ACK>", "XXX", "ESTABLISHED")
    assert "(bad checksum: rejected)" in r[3][5]


def test_case_marks_a_delayed_segment():
    tr = trace_of(("peer", "S", 100), ("sut", "SA", 300, 101))
    late = tr.add(seg("sut", "SA", 300, 101), 0.5, "sut")
    tr.mark(late, "delayed", "held back by the network")
    r = rows(tr)
    assert r[2][1:5] == ("<--", "<SEQ=0><ACK=1><CTL=SYN,ACK>", "...", "")


def test_a_packet_stamped_after_the_next_one_arrived_late():
    tr = Trace(t0=0.0)
    tr.add(seg("peer", "S", 100), 0.1, "peer")
    tr.add(seg("sut", "SA", 300, 101), 0.9, "sut")          # a delay fault moved its stamp
    tr.add(seg("peer", "A", 101, 301), 0.2, "peer")
    assert rows(tr)[1][3] == "..."


def test_other_packets_and_several_connections_are_shown():
    tr = trace_of(("peer", "S", 100), ("sut", "SA", 300, 101))
    tr.add(bytes(IP(src=SUT, dst=PEER) / ICMP()), 0.5, "sut")
    tr.add(seg("peer", "S", 9000, sport=5000), 0.6, "peer")
    text = render.ladder(tr)
    assert "(IP / ICMP 198.18.0.1 > 198.18.0.2 echo-request 0)" in text
    assert "connection 2: tester 198.18.0.2.5000, SUT 198.18.0.1.23" in text


def test_states_come_from_the_tables():
    """The protocol facts are data: every state the tables name is RFC 9293's."""
    states = {"CLOSED", "LISTEN", "SYN-SENT", "SYN-RECEIVED", "ESTABLISHED", "FIN-WAIT-1", "FIN-WAIT-2",
              "CLOSE-WAIT", "CLOSING", "LAST-ACK", "TIME-WAIT"}
    named = {s for (a, _), b in list(render.SEND.items()) + list(render.RECEIVE.items()) for s in (a, b) if s}
    assert named <= states and set(render.SYNCHRONIZED) <= states


def test_empty_trace():
    assert render.ladder(Trace()) == "(no packets)"
    ET.fromstring(render.svg(Trace()))


# --- the SVG diagram --------------------------------------------------------------------------

def test_svg_is_valid_xml_with_two_lifelines_and_one_arrow_per_segment():
    tr = seed_note_trace()
    root = ET.fromstring(render.svg(tr, "SUT linux"))
    assert root.tag == f"{SVG_NS}svg"
    lines = root.findall(f"{SVG_NS}line")
    lifelines = [l for l in lines if l.get("x1") == l.get("x2")]
    assert sorted({l.get("x1") for l in lifelines}) == [str(render.LEFT), str(render.RIGHT)]
    arrows = [l for l in lines if l.get("marker-end")]
    assert len(arrows) == len(SEED_NOTE)
    assert float(arrows[0].get("x1")) < float(arrows[0].get("x2"))      # tester -> SUT
    assert float(arrows[1].get("x1")) > float(arrows[1].get("x2"))      # SUT -> tester
    texts = [t.text for t in root.iter(f"{SVG_NS}text")]
    assert "<SEQ=1><ACK=1><CTL=PSH,ACK><DATA=15>" in texts
    assert "SUT linux (TCP Peer B)" in texts and "0.040000" in texts
    assert "TIME-WAIT" in texts and "LAST-ACK" in texts
    assert any(t and "options [mss 1460,nop,wscale 8,nop,nop,sackOK]" in t for t in texts)


def test_svg_draws_lost_segments_with_a_cross_and_delayed_ones_dashed():
    tr = trace_of(("peer", "S", 100), ("sut", "SA", 300, 101))
    tr.drop(seg("sut", "SA", 300, 101), 0.5, "sut")
    tr.mark(tr.add(seg("peer", "S", 90), 0.6, "peer"), "delayed", "old duplicate")
    root = ET.fromstring(render.svg(tr))
    lines = [l for l in root.findall(f"{SVG_NS}line") if l.get("x1") != l.get("x2") and l.get("y1") != l.get("y2")]
    assert len(lines) == 4
    assert lines[2].get("marker-end") is None and lines[2].get("stroke-dasharray")      # lost: no head
    assert lines[3].get("stroke-dasharray") and lines[3].get("marker-end")              # delayed: dashed arrow
    assert any(p.get("d", "").count("M") == 2 for p in root.iter(f"{SVG_NS}path"))   # the cross
    assert "<" not in "".join(t.text or "" for t in root.iter(f"{SVG_NS}title"))


def test_a_late_segment_of_the_earlier_connection_is_named_and_numbered_from_the_new_isns():
    """After a reopen (a new ISN on the same ports) numbers are relative to
    the new connection's ISNs: the old FIN shows negative numbers, and says
    whose it is."""
    tr = trace_of(("peer", "S", 100), ("sut", "SA", 300, 101), ("peer", "A", 101, 301),
                  ("sut", "FA", 301, 101), ("peer", "A", 101, 302), ("peer", "FA", 101, 302), ("sut", "A", 302, 102),
                  ("peer", "S", 200000), ("sut", "SA", 900000, 200001), ("peer", "FA", 101, 302))
    last = rows(tr)[-1]
    assert last[2] == "<SEQ=-199899><ACK=-899698><CTL=FIN,ACK>" and "a segment of the earlier connection" in last[5]
    assert "numbers relative to the ISNs of each connection" in render.ladder(tr)
