"""The rules table (harness/rules.py) and the matrix it generates
(harness/matrix.py), without root: RFC 9293's own figures replayed through
the oracle, Table 6 at its boundaries, RFC 5961's three mitigations, the
notation, a stack's overrides, and the catalog entries of the cells."""
import re

import pytest

from harness.catalog import Catalog, CatalogError, Profile
from harness.matrix import BY_ID, CELLS, EVENTS, SHAPES, catalog_entries, model_tcb
from harness.rules import (ROWS, RULES, STATES, NotationError, Override, Segment, arrive, check_override, judge,
                           parse_answer)

_FIELD = re.compile(r"<(SEQ|ACK|CTL|DATA)=([^>]*)>")
_BITS = {"SYN": "S", "ACK": "A", "FIN": "F", "RST": "R"}


def seg(text: str) -> Segment:
    """<SEQ=100><ACK=300><CTL=FIN,ACK><DATA=10>, as RFC 9293's figures write a segment."""
    f = dict(_FIELD.findall(text))
    flags = frozenset(_BITS[b] for b in f["CTL"].split(","))
    return Segment(flags, int(f["SEQ"]), int(f.get("ACK", 0)), int(f.get("DATA", 0)))


def said(outcome) -> str:
    """The outcome's answers in the figures' notation (a new ISS as 'ISS')."""
    out = []
    for a in outcome.answers:
        names = ",".join(n for n, b in _BITS.items() if b in a.ctl)
        out.append(f"<SEQ={'ISS' if a.seq is None else a.seq}>" + (f"<ACK={a.ack}>" if a.ack is not None else "")
                   + f"<CTL={names}>")
    return " ".join(out) or "nothing"


def tcb(iss=None, una=None, nxt=None, rcv=None, wnd=1000, passive=True, irs=None):
    return {"ISS": iss, "SND_UNA": una, "SND_NXT": nxt, "RCV_NXT": rcv, "RCV_WND": wnd,
            "MAX_SND_WND": 1000, "PASSIVE": passive, "IRS": irs}


# --- RFC 9293's figures: (line, receiver's state, its variables, segment) -> (answer, state after) ----

FIGURES = {
    "figure-6 basic three-way handshake": [
        ("2", "LISTEN", tcb(), "<SEQ=100><CTL=SYN>", "<SEQ=ISS><ACK=101><CTL=SYN,ACK>", "SYN-RECEIVED"),
        ("3", "SYN-SENT", tcb(100, 100, 101), "<SEQ=300><ACK=101><CTL=SYN,ACK>", "<SEQ=101><ACK=301><CTL=ACK>",
         "ESTABLISHED"),
        ("4", "SYN-RECEIVED", tcb(300, 300, 301, 101), "<SEQ=101><ACK=301><CTL=ACK>", "nothing", "ESTABLISHED"),
        ("5", "ESTABLISHED", tcb(300, 301, 301, 101), "<SEQ=101><ACK=301><CTL=ACK><DATA=10>",
         "<SEQ=301><ACK=111><CTL=ACK>", "ESTABLISHED"),
    ],
    "figure-7 simultaneous open": [
        ("3", "SYN-SENT", tcb(100, 100, 101), "<SEQ=300><CTL=SYN>", "<SEQ=100><ACK=301><CTL=SYN,ACK>", "SYN-RECEIVED"),
        ("4", "SYN-SENT", tcb(300, 300, 301), "<SEQ=100><CTL=SYN>", "<SEQ=300><ACK=101><CTL=SYN,ACK>", "SYN-RECEIVED"),
        ("6", "SYN-RECEIVED", tcb(100, 100, 101, 301, passive=False), "<SEQ=300><ACK=101><CTL=SYN,ACK>", "nothing",
         "ESTABLISHED"),
        ("7", "SYN-RECEIVED", tcb(300, 300, 301, 101, passive=False), "<SEQ=100><ACK=301><CTL=SYN,ACK>", "nothing",
         "ESTABLISHED"),
    ],
    "figure-8 recovery from an old duplicate SYN": [
        ("3", "LISTEN", tcb(), "<SEQ=90><CTL=SYN>", "<SEQ=ISS><ACK=91><CTL=SYN,ACK>", "SYN-RECEIVED"),
        ("4", "SYN-SENT", tcb(100, 100, 101), "<SEQ=300><ACK=91><CTL=SYN,ACK>", "<SEQ=91><CTL=RST>", "SYN-SENT"),
        ("5", "SYN-RECEIVED", tcb(300, 300, 301, 91), "<SEQ=91><CTL=RST>", "nothing", "LISTEN"),
        ("6", "LISTEN", tcb(), "<SEQ=100><CTL=SYN>", "<SEQ=ISS><ACK=101><CTL=SYN,ACK>", "SYN-RECEIVED"),
        ("7", "SYN-SENT", tcb(100, 100, 101), "<SEQ=400><ACK=101><CTL=SYN,ACK>", "<SEQ=101><ACK=401><CTL=ACK>",
         "ESTABLISHED"),
        ("8", "SYN-RECEIVED", tcb(400, 400, 401, 101), "<SEQ=101><ACK=401><CTL=ACK>", "nothing", "ESTABLISHED"),
    ],
    "figure-9 half-open connection discovery": [
        ("3", "ESTABLISHED", tcb(200, 300, 300, 100, wnd=100), "<SEQ=400><CTL=SYN>", "<SEQ=300><ACK=100><CTL=ACK>",
         "ESTABLISHED"),
        ("4", "SYN-SENT", tcb(400, 400, 401), "<SEQ=300><ACK=100><CTL=ACK>", "<SEQ=100><CTL=RST>", "SYN-SENT"),
        ("5", "ESTABLISHED", tcb(200, 300, 300, 100), "<SEQ=100><CTL=RST>", "nothing", "CLOSED"),
    ],
    "figure-10 active side causes half-open connection discovery": [
        ("2", "CLOSED", tcb(), "<SEQ=300><ACK=100><CTL=ACK><DATA=10>", "<SEQ=100><CTL=RST>", "CLOSED"),
        ("3", "ESTABLISHED", tcb(200, 300, 310, 100), "<SEQ=100><CTL=RST>", "nothing", "CLOSED"),
    ],
    "figure-11 old duplicate SYN resets two passive sockets": [
        ("2", "LISTEN", tcb(), "<SEQ=5000><CTL=SYN>", "<SEQ=ISS><ACK=5001><CTL=SYN,ACK>", "SYN-RECEIVED"),
        ("3", "LISTEN", tcb(), "<SEQ=7000><ACK=5001><CTL=SYN,ACK>", "<SEQ=5001><CTL=RST>", "LISTEN"),
        ("4", "SYN-RECEIVED", tcb(7000, 7000, 7001, 5001), "<SEQ=5001><CTL=RST>", "nothing", "LISTEN"),
    ],
    "figure-12 normal close": [
        ("2", "ESTABLISHED", tcb(200, 300, 300, 100), "<SEQ=100><ACK=300><CTL=FIN,ACK>", "<SEQ=300><ACK=101><CTL=ACK>",
         "CLOSE-WAIT"),
        ("3", "FIN-WAIT-1", tcb(0, 100, 101, 300), "<SEQ=300><ACK=101><CTL=ACK>", "nothing", "FIN-WAIT-2"),
        ("4", "FIN-WAIT-2", tcb(0, 101, 101, 300), "<SEQ=300><ACK=101><CTL=FIN,ACK>", "<SEQ=101><ACK=301><CTL=ACK>",
         "TIME-WAIT"),
        ("5", "LAST-ACK", tcb(200, 300, 301, 101), "<SEQ=101><ACK=301><CTL=ACK>", "nothing", "CLOSED"),
    ],
    "figure-13 simultaneous close": [
        ("2 (A)", "FIN-WAIT-1", tcb(0, 100, 101, 300), "<SEQ=300><ACK=100><CTL=FIN,ACK>",
         "<SEQ=101><ACK=301><CTL=ACK>", "CLOSING"),
        ("2 (B)", "FIN-WAIT-1", tcb(200, 300, 301, 100), "<SEQ=100><ACK=300><CTL=FIN,ACK>",
         "<SEQ=301><ACK=101><CTL=ACK>", "CLOSING"),
        ("3 (A)", "CLOSING", tcb(0, 100, 101, 301), "<SEQ=301><ACK=101><CTL=ACK>", "nothing", "TIME-WAIT"),
        ("3 (B)", "CLOSING", tcb(200, 300, 301, 101), "<SEQ=101><ACK=301><CTL=ACK>", "nothing", "TIME-WAIT"),
    ],
}


@pytest.mark.parametrize("figure", FIGURES)
def test_the_rules_replay_rfc_9293s_figures(figure):
    for line, state, variables, segment, answer, after in FIGURES[figure]:
        out = arrive(state, variables, seg(segment))
        assert (said(out), out.next) == (answer, after), f"{figure}, line {line}: {segment} in {state}"


# --- Table 6 and RFC 5961 at the boundaries ------------------------------------------------------

EST = tcb(1000, 1011, 1011, 5001, wnd=100)


@pytest.mark.parametrize("flags, seq, text, wnd, verdict", [
    ("A", 5001, 0, 100, "acceptable"), ("A", 5100, 0, 100, "acceptable"), ("A", 5101, 0, 100, "unacceptable"),
    ("A", 5000, 0, 100, "unacceptable"), ("A", 5001, 0, 0, "acceptable"), ("A", 5002, 0, 0, "unacceptable"),
    ("A", 5001, 1, 0, "unacceptable"), ("A", 5100, 1, 100, "acceptable"), ("A", 5101, 1, 100, "unacceptable"),
    ("A", 5000, 1, 100, "unacceptable"), ("A", 5000, 2, 100, "acceptable"),
])
def test_table_6(flags, seq, text, wnd, verdict):
    out = arrive("ESTABLISHED", {**EST, "RCV_WND": wnd}, Segment(frozenset(flags), seq, 1011, text))
    unacceptable = out.decided_by.id == "seq.unacceptable"
    assert unacceptable == (verdict == "unacceptable"), [r.id for r in out.rows]


@pytest.mark.parametrize("seq, answer, after, row", [
    (5001, "nothing", "CLOSED", "rst.exact"),                                    # §3.2 (2)
    (5002, "<SEQ=1011><ACK=5001><CTL=ACK>", "ESTABLISHED", "rst.in-window"),      # §3.2 (3): challenge ACK
    (5100, "<SEQ=1011><ACK=5001><CTL=ACK>", "ESTABLISHED", "rst.in-window"),
    (5101, "nothing", "ESTABLISHED", "seq.unacceptable-rst"),                    # §3.2 (1)
    (5000, "nothing", "ESTABLISHED", "seq.unacceptable-rst"),
])
def test_rfc_5961_blind_reset(seq, answer, after, row):
    out = arrive("ESTABLISHED", EST, seg(f"<SEQ={seq}><CTL=RST>"))
    assert (said(out), out.next, out.decided_by.id) == (answer, after, row)


@pytest.mark.parametrize("state", ["ESTABLISHED", "FIN-WAIT-2", "CLOSE-WAIT", "TIME-WAIT"])
@pytest.mark.parametrize("seq", [5001, 5050, 5100, 5200, 4000])
def test_rfc_5961_blind_syn_draws_a_challenge_ack_whatever_its_sequence_number(state, seq):
    out = arrive(state, EST, seg(f"<SEQ={seq}><CTL=SYN>"))
    assert (said(out), out.next) == ("<SEQ=1011><ACK=5001><CTL=ACK>", state)


@pytest.mark.parametrize("ack, answer, row", [
    (1011, "nothing", "ack.duplicate"), (1010, "nothing", "ack.duplicate"),
    (1012, "<SEQ=1011><ACK=5001><CTL=ACK>", "ack.unsent"),
    (1011 - 1000, "nothing", "ack.duplicate"),                                   # SND.UNA-MAX.SND.WND: acceptable
    (1011 - 1001, "<SEQ=1011><ACK=5001><CTL=ACK>", "ack.too-old"),                # RFC 5961 §5.2
])
def test_rfc_5961_blind_data_injection(ack, answer, row):
    out = arrive("ESTABLISHED", EST, seg(f"<SEQ=5001><ACK={ack}><CTL=ACK>"))
    assert (said(out), out.decided_by.id) == (answer, row)


def test_text_straddling_rcv_nxt_is_trimmed_to_its_new_part():
    out = arrive("ESTABLISHED", EST, seg("<SEQ=4999><ACK=1011><CTL=ACK><DATA=5>"))
    assert said(out) == "<SEQ=1011><ACK=5004><CTL=ACK>"             # 2 old octets trimmed, 3 new ones taken
    out = arrive("ESTABLISHED", EST, seg("<SEQ=5000><ACK=1011><CTL=FIN,ACK><DATA=1>"))
    assert (said(out), out.next) == ("<SEQ=1011><ACK=5002><CTL=ACK>", "CLOSE-WAIT")


def test_a_segment_beyond_rcv_nxt_is_held_and_may_be_acknowledged():
    out = arrive("ESTABLISHED", EST, seg("<SEQ=5050><ACK=1011><CTL=ACK><DATA=1>"))
    assert out.optional and said(out) == "<SEQ=1011><ACK=5001><CTL=ACK>" and out.decided_by.id == "held.out-of-order"


def test_rows_name_their_paragraph_and_level():
    for r in RULES:
        assert re.fullmatch(r"RFC\d+/[0-9A-Z][0-9A-Z.\-]*", r.source), r.id
        assert r.level in ("MUST", "SHOULD", "MAY") and r.text, r.id
        assert set(r.states) <= set(STATES), r.id


# --- the notation ----------------------------------------------------------------------------------

@pytest.mark.parametrize("answer, message", [
    ("<SEQ=SND.NXT><CTL=NOPE>", "unknown control bit"),
    ("a reset", "an answer is `nothing`"),
    ("<SEQ=SND.NXT>", "an answer is `nothing`"),
])
def test_a_bad_answer_is_refused(answer, message):
    with pytest.raises(NotationError, match=message):
        parse_answer(answer)


@pytest.mark.parametrize("override, message", [
    (Override("seq.nope", "nothing"), "no row 'seq.nope'"),
    (Override("rst.exact", "nothing", states=("LISTEN",)), "does not apply in LISTEN"),
    (Override("rst.exact", "nothing", next="LIMBO"), "next is a state"),
    (Override("rst.exact", "nothing", when="SEG.SEQ ** 2"), "is not part of the notation"),
    (Override("table6.empty", "nothing"), "give the stack's test as `when`"),
])
def test_a_bad_override_is_refused(override, message):
    with pytest.raises(NotationError, match=message):
        check_override(override)


# --- a stack's overrides: deviation or choice -------------------------------------------------------

def test_an_override_the_rfc_does_not_allow_is_a_deviation_of_the_row_it_replaces():
    tw_rst = Override("rst.in-window", "nothing", states=("TIME-WAIT",), source="tcp_timewait_state_process()")
    j = judge("TIME-WAIT", EST, seg("<SEQ=5050><CTL=RST>"), [tw_rst])
    assert said(j.documented) == "nothing" and [r.id for r in j.departs] == ["rst.in-window"]
    assert j.requirement == "RFC5961/3.2"
    j = judge("ESTABLISHED", EST, seg("<SEQ=5050><CTL=RST>"), [tw_rst])       # not in its states
    assert j.departs == () and said(j.documented) == "<SEQ=1011><ACK=5001><CTL=ACK>"


def test_an_answer_the_rfc_leaves_to_the_stack_is_a_choice_not_a_deviation():
    acks = Override("held.out-of-order", "<SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK>", source="sends a duplicate ACK")
    j = judge("ESTABLISHED", EST, seg("<SEQ=5050><ACK=1011><CTL=ACK><DATA=1>"), [acks])
    assert j.departs == () and not j.documented.optional


def test_a_stack_may_answer_with_several_segments_in_order():
    twice = Override("syn.challenge", "<SEQ=SND.NXT><ACK=RCV.NXT><CTL=RST,ACK> then <SEQ=0><ACK=SEG.SEQ+1><CTL=RST,ACK>",
                     next="RESET", source="tcp_drop, then dropwithreset (4.4BSD)")
    assert [c for c, _, _ in parse_answer(twice.answer)] == [frozenset("RA"), frozenset("RA")]
    j = judge("ESTABLISHED", EST, seg("<SEQ=5050><CTL=SYN>"), [twice])
    assert said(j.documented) == "<SEQ=1011><ACK=5001><CTL=ACK,RST> <SEQ=0><ACK=5051><CTL=ACK,RST>"
    assert j.documented.next == "CLOSED" and [r.id for r in j.departs] == ["syn.challenge"]


def test_an_answer_may_be_several_segments_in_order():
    restart = Override("syn.challenge", "<SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK> then <SEQ=NEW><CTL=SYN>",
                       states=("SYN-RECEIVED",), source="handshake.synRcvdState()")
    check_override(restart)
    j = judge("SYN-RECEIVED", tcb(300, 300, 301, 101, passive=False), seg("<SEQ=150><CTL=SYN>"), [restart])
    assert said(j.documented) == "<SEQ=0><ACK=151><CTL=ACK,RST> <SEQ=ISS><CTL=SYN>" and j.departs
    assert j.documented.describe() == "<SEQ=0><ACK=151><CTL=RST,ACK> then <SEQ=new ISS><CTL=SYN>, then SYN-RECEIVED"
    with pytest.raises(NotationError, match="several joined by ` then `"):
        parse_answer("<SEQ=0><CTL=RST> and <SEQ=1><CTL=SYN>")


def test_a_stack_may_read_table_6_its_own_way():
    edge = Override("table6.empty", when="RCV.NXT =< SEG.SEQ =< RCV.NXT+RCV.WND", source="tcp_sequence()")
    j = judge("ESTABLISHED", EST, seg("<SEQ=5101><CTL=RST>"), [edge])         # a RST at RCV.NXT+RCV.WND
    assert said(j.rfc) == "nothing" and said(j.documented) == "<SEQ=1011><ACK=5001><CTL=ACK>" and j.departs


# --- the matrix -------------------------------------------------------------------------------------

def test_every_cell_of_the_grid_has_cases_and_ids_are_unique_and_stable():
    assert len(CELLS) == len(BY_ID) >= 600
    grid = {(c.state, c.event) for c in CELLS}
    assert grid == {(s, e) for s in STATES for e in EVENTS}
    assert BY_ID["matrix.established.rst.window-last"].seq == "RCV.NXT + RCV.WND - 1"
    assert all(re.fullmatch(r"matrix\.[a-z0-9-]+\.[a-z-]+\.[a-z-]+", c.id) for c in CELLS)


def test_each_cell_is_traced_to_the_rows_that_decide_it():
    entries = {e["id"]: e for e in catalog_entries()}
    for c in CELLS:
        j = c.judge(model_tcb(c.state, SHAPES[c.state].variants[0]))
        assert entries[c.id]["requirements"][0] == j.rfc.decided_by.source
        assert entries[c.id]["level"] == j.rfc.decided_by.level
    assert "RFC5961/3.2" in entries["matrix.fin-wait-2.rst.window-last"]["requirements"]
    assert "RFC5961/4.2" in entries["matrix.close-wait.syn.rcv-nxt"]["requirements"]
    assert "RFC5961/5.2" in entries["matrix.last-ack.ack.acks-too-old"]["requirements"]


def test_the_catalog_holds_the_generated_cases():
    cat = Catalog.load()
    assert all(c.id in cat for c in CELLS)
    assert cat["matrix.syn-sent.syn.any"].area == "matrix"


def test_every_row_decides_some_cell_or_is_reached_in_passing():
    fired = {r.id for c in CELLS for r in c.judge(model_tcb(c.state, SHAPES[c.state].variants[0])).rfc.rows}
    fired |= {r.id for c in CELLS if c.state == "SYN-RECEIVED" for r in c.judge(model_tcb(c.state, "simultaneous")).rfc.rows}
    never = set(ROWS) - fired
    # no event carries URG; no state of the matrix has data of the SUT's outstanding, so no ACK is new
    # but one of a SYN or a FIN (rows of their own)
    assert never == {"urg.update", "urg.ignored", "ack.new"}, never


def test_profiles_document_their_rules_in_the_table_notation(tmp_path):
    for stack in ("linux", "lwip", "gvisor", "linux-6.1"):
        for o in Profile.load(stack).rules:
            check_override(o)
    (tmp_path / "x.toml").write_text('stack = "x"\n[[rule]]\nrow = "rst.nope"\nsource = "somewhere"\n')
    with pytest.raises(CatalogError, match=r"x.toml: \[\[rule\]\] for row 'rst.nope': no row"):
        Profile.load("x", tmp_path)
    (tmp_path / "y.toml").write_text('stack = "y"\n[[rule]]\nrow = "rst.exact"\n')
    with pytest.raises(CatalogError, match="needs 'source'"):
        Profile.load("y", tmp_path)
