"""Every check a case makes is an Allure step (harness.steps), and the top of
its report page says the verdict in words (harness.testpage); the charts of
harness.plot. No root: a scripted SUT and an Allure listener that records."""
import re
import xml.etree.ElementTree as ET

import allure_commons
import pytest

from harness import plot, render, steps, testpage
from harness.catalog import Profile
from harness.verdict import ConformanceFailure, Tolerance, require, require_interval
from test_units import PEER, SUT, _peer, tcp


class Listener:
    """What allure-pytest's listener would get: the steps, in order."""

    def __init__(self):
        self.steps: list = []
        self.open: dict = {}

    @allure_commons.hookimpl
    def start_step(self, uuid, title, params):
        self.open[uuid] = {"title": title, "params": dict(params)}

    @allure_commons.hookimpl
    def stop_step(self, uuid, exc_type, exc_val, exc_tb):
        step = self.open.pop(uuid)
        step["status"] = "passed" if exc_val is None else "failed"
        step["message"] = str(exc_val) if exc_val else ""
        self.steps.append(step)


@pytest.fixture
def listener():
    lis = Listener()
    allure_commons.plugin_manager.register(lis)
    steps.begin()
    try:
        yield lis
    finally:
        allure_commons.plugin_manager.unregister(lis)


def synack_from_sut(peer):
    return tcp(src=SUT, dst=PEER, sport=80, dport=40000, flags="SA", seq=5000, ack=peer.iss + 1)


def test_an_expected_segment_is_a_passed_step_numbered_like_its_mark_in_the_ladder(listener):
    peer, link = _peer({})
    link.replies = {1: [synack_from_sut(peer)]}
    peer.send("S")
    peer.expect("SA", ack=peer.iss + 1, requirement="RFC9293/3.10.7.2", what="LISTEN: a SYN draws a SYN-ACK")
    steps.end()
    (step,) = listener.steps
    assert step["title"] == "#1 RFC9293/3.10.7.2 · LISTEN: a SYN draws a SYN-ACK" and step["status"] == "passed"
    assert step["params"]["expected"].startswith("sut > peer: Flags [S.], ack 1")
    assert "sut > peer: Flags [S.], seq 0, ack 1" in step["params"]["seen"]
    assert peer.trace.checks == {1: ["#1"]}
    assert "(#1)" in render.ladder(peer.trace) and "#1" in render.svg(peer.trace)


def test_a_failed_check_is_a_failed_step_with_expected_and_seen_and_marks_the_segment(listener):
    peer, link = _peer({})
    link.replies = {1: [tcp(src=SUT, dst=PEER, sport=80, dport=40000, flags="RA", seq=0, ack=peer.iss + 1)]}
    peer.send("S")
    with pytest.raises(ConformanceFailure):
        peer.expect("SA", ack=peer.iss + 1, requirement="RFC9293/3.10.7.2")
    (step,) = listener.steps
    assert step["status"] == "failed" and step["title"].startswith("#1 RFC9293/3.10.7.2 · ")
    assert "flags [R.] instead of [S.]" in step["params"]["seen"] and "expected:" in step["message"]
    assert peer.trace.checks == {1: ["#1 ✗"]}
    assert steps.checks()[0].passed is False


def test_a_state_read_shows_in_the_judgement_that_follows_it(listener):
    class Stack:                               # the stack's state reads, as harness.stacks.Stack makes them
        state_of = steps.check(steps.state_read)(lambda self, port, remote_port: "TIME-WAIT")

    stack = Stack()
    require(stack.state_of(80, 40000) == "TIME-WAIT", "RFC9293/3.10.7.4", "the socket stays in TIME-WAIT",
            "TIME-WAIT", stack.state_of(80, 40000))           # read twice, as the cases write it: shown once
    stack.state_of(80, 40000)                                 # no judgement follows: a step of its own
    steps.end()
    judged, alone = listener.steps
    assert judged["title"] == "#1 RFC9293/3.10.7.4 · the socket stays in TIME-WAIT"
    assert judged["params"] == {"expected": "TIME-WAIT", "seen": "TIME-WAIT",
                                "state read": "the SUT's socket 80 ⇄ 40000: TIME-WAIT"}
    assert alone["title"] == "state read: the SUT's socket 80 ⇄ 40000: TIME-WAIT"


def test_a_check_inside_a_check_is_part_of_it(listener):
    inner = steps.check(steps.condition)(lambda condition, requirement, what, expected, seen: None)

    @steps.check(steps.condition)
    def outer(condition, requirement, what, expected, seen):
        inner(True, "X/1", "inner", 1, 1)

    outer(True, "X/2", "outer", 2, 2)
    assert [s["title"] for s in listener.steps] == ["#1 X/2 · outer"]


def test_repetitions_are_counted_after_the_first_few_and_failures_always_shown(listener):
    for n in range(10):
        require(True, "RFC9293/MUST-8", "each ISN exceeds the previous one", "> 0", n)
    require_interval(1.0, 1.0, Tolerance(), "RFC6298/5.5", "the RTO")
    with pytest.raises(ConformanceFailure):
        require(False, "RFC9293/MUST-8", "each ISN exceeds the previous one", "> 0", -1)
    steps.end()
    titles = [s["title"] for s in listener.steps]
    assert titles[:3] == [f"#{n} RFC9293/MUST-8 · each ISN exceeds the previous one" for n in (1, 2, 3)]
    assert titles[3] == "#11 RFC6298/5.5 · the RTO" and listener.steps[3]["params"]["expected"] == "1.000 s ± 0.125 s"
    assert titles[4] == "#12 RFC9293/MUST-8 · each ISN exceeds the previous one"
    assert listener.steps[4]["status"] == "failed"
    assert titles[5] == "… and 7 more checks like the ones above, all passed"
    assert listener.steps[5]["params"] == {"7 × RFC9293/MUST-8 · each ISN exceeds the previous one":
                                           "all passed (first of them #4)"}
    assert len(steps.checks()) == 12


def test_a_documented_answer_that_departs_from_its_rule_is_a_failed_step(listener):
    class Stack:
        name, capabilities = "linux", frozenset()

    bound = Profile.load("linux").bind(Stack())
    follows = bound.behaviour("time-wait.reopen")
    bound.conclude(follows)
    with pytest.raises(pytest.xfail.Exception):
        bound.conclude(bound.behaviour("time-wait.duration"))
    ok, dev = listener.steps
    assert ok["status"] == "passed" and ok["title"].startswith("#1 RFC9293/MAY-2 · the stack's documented answer")
    assert dev["status"] == "failed" and dev["title"].startswith("#2 RFC9293/MUST-13 · ")
    assert "documented deviation from RFC9293/MUST-13" in dev["message"]
    assert bound.deviation is bound.behaviour("time-wait.duration")


def test_without_an_allure_listener_checks_are_still_numbered():
    steps.begin()
    require(True, "A/1", "x", 1, 1)
    assert [c.title() for c in steps.checks()] == ["#1 A/1 · x"]


def test_a_long_check_keeps_its_words_in_the_parameters(listener):
    what = "documented answer: " + "x" * 300
    require(True, "A/1", what, 1, 1)
    (step,) = listener.steps
    assert len(step["title"]) == steps.TITLE and step["title"].endswith("…") and step["params"]["check"] == what


# --- the top of the test page ---------------------------------------------------------------------

def test_a_deviation_box_says_the_rule_what_it_requires_what_the_stack_did_and_why():
    d = testpage.Deviation("RFC9293/MUST-13", testpage.rule_level("RFC9293/MUST-13", "SHOULD"),
                           "TIME-WAIT lasts 2 MSL: 240 s", ["TIME-WAIT ended: 62.1 s"], "a choice for busy servers",
                           "cases/profiles/linux.toml, behaviour \"time-wait.duration\"", "linux")
    assert d.message() == ("Documented deviation from RFC9293/MUST-13 (a MUST rule) of linux: TIME-WAIT lasts "
                           "2 MSL: 240 s")
    page = testpage.render(testpage.Page("deviation", description="The stack closes first.", deviation=d))
    text = re.sub(r"<.*?>", " ", page)
    for words in ("Documented deviation from a MUST rule", "RFC9293/MUST-13 (MUST)", "TIME-WAIT lasts 2 MSL: 240 s",
                  "TIME-WAIT ended: 62.1 s", "a choice for busy servers", "cases/profiles/linux.toml"):
        assert words in text, words
    assert page.index("Documented deviation") < page.index("The stack closes first.")      # the verdict first


@pytest.mark.parametrize("rule, case_level, level", [("RFC9293/MUST-13", "MAY", "MUST"), ("RFC9293/SHLD-1", "MUST",
                         "SHOULD"), ("RFC9293/MAY-2", "MUST", "MAY"), ("RFC9293/3.10.7.4", "MUST", "MUST"),
                         ("RFC6298/2.4", "SHOULD", "SHOULD")])
def test_a_deviations_level_is_its_rules_or_else_its_cases(rule, case_level, level):
    assert testpage.rule_level(rule, case_level) == level


def test_a_pass_box_counts_the_checks_and_the_requirements_they_checked():
    checks = [steps.Check("RFC9293/3.6", "close"), steps.Check("RFC9293/3.10.7.4", "closing"),
              steps.Check("RFC9293/3.10.7.4", "time-wait")]
    for n, c in enumerate(checks, 1):
        c.number = n
    box = testpage.verdict_box(testpage.Page("passed", checks=checks))
    assert "Passed: 3 checks, each as required" in box
    assert "RFC9293/3.6 (1 check) · RFC9293/3.10.7.4 (2 checks)" in box
    assert "#2 RFC9293/3.10.7.4 · closing" in box


def test_a_long_exchange_is_drawn_short_on_the_page():
    from test_render import trace_of
    handshakes = [p for n in range(30) for p in (("peer", "S", 1000 * n + 100), ("sut", "SA", 7000 * n, 1000 * n + 101),
                                                  ("peer", "R", 1000 * n + 101))]
    tr = trace_of(*handshakes)
    text = render.ladder(tr, keep=testpage.KEEP, width=testpage.LADDER_WIDTH)
    assert f"({90 - testpage.KEEP} more packets like these left out here)" in text
    assert max(len(line) for line in text.splitlines()) <= testpage.LADDER_WIDTH
    root = ET.fromstring(render.svg(tr, keep=testpage.KEEP))
    assert len([l for l in root.iter("{http://www.w3.org/2000/svg}line") if l.get("marker-end")]) == testpage.KEEP
    page = testpage.render(testpage.Page("passed", packets=90, diagram=render.svg(tr, keep=testpage.KEEP),
                                         ladder=text))
    assert "The exchange has 90 packets: the pictures below show the first 36 and the last 4" in page


def test_a_note_that_would_widen_the_ladder_goes_on_a_line_of_its_own():
    from test_render import trace_of
    tr = trace_of(("peer", "S", 100), ("sut", "SA", 300, 101))
    tr.mark(tr.entries[1], None, "a note long enough to push the line past the width of the page " * 2)
    lines = render.ladder(tr, width=100).splitlines()
    assert max(len(line) for line in lines) <= len("a note long enough to push the line past the width of the "
                                                   "page " * 2) + 30
    assert lines[-1].strip().startswith("(a note long enough")


# --- charts -------------------------------------------------------------------------------------

def test_charts_are_svg_with_their_axes_covering_every_point():
    title, svg = plot.backoff("intervals", [0.2, 0.21, 0.43, 0.8, 1.0], [0.2, 0.2, 0.4, 0.8, 1.0], Tolerance())
    root = ET.fromstring(svg)
    assert root.tag.endswith("svg") and title == "intervals"
    texts = [t.text for t in root.iter("{http://www.w3.org/2000/svg}text")]
    assert "measured" in texts and "interval before it (s, log scale)" in texts
    dots = [c for c in root.iter("{http://www.w3.org/2000/svg}circle") if c.get("r") == "3"]
    assert len(dots) == 5
    top, bottom = plot.TOP, plot.HEIGHT - plot.BOTTOM
    assert all(top <= float(c.get("cy")) <= bottom for c in dots)
    assert plot._nice(0, 1.25e7)[-1] >= 1.25e7 and plot._nice(0, 4.29e9)[-1] >= 4.29e9


def test_isn_charts_draw_the_series_and_the_misses():
    times = [n * 0.01 for n in range(50)]
    isns = [(123 + round(t / 64e-9)) % 2 ** 32 for t in times]
    for title, svg in (plot.isn_clock(times, isns, 64e-9), plot.isn_spread(times, isns),
                       plot.prediction_misses({"previous ISN + previous step": [1 << 20] * 49}, 1 << 16)):
        ET.fromstring(svg)
        assert title in svg
    assert "a hit: within 2^16" in plot.prediction_misses({"p": [5]}, 1 << 16)[1]
