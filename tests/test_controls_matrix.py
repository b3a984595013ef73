"""Negative controls of the state x event matrix: the oracle bites.

Three kinds: a rule mutant (one row of harness/rules.py says another
answer or next state: the cells it decides fail against Linux, naming the
rule); a link fault (the SUT's answer dropped or altered on the way); and a
profile that documents a departure the stack does not make (the cell fails,
as a strict xfail would)."""
from dataclasses import replace

import pytest

from faults import Fault, FaultPlugin, ProfileRules, assert_case_passes, assert_control_fails, cell
from harness import rules

pytestmark = pytest.mark.root


class RuleMutant:
    """Replaces one row of the table for the tests of a run."""

    def __init__(self, row: str, **changes):
        self.row, self.changes = row, changes

    @pytest.fixture(autouse=True)
    def _tcpconf_rule_mutant(self, monkeypatch):
        mutant = replace(rules.ROWS[self.row], **self.changes)
        monkeypatch.setattr(rules, "RULES", tuple(mutant if r.id == self.row else r for r in rules.RULES))
        monkeypatch.setitem(rules.ROWS, self.row, mutant)
        monkeypatch.setitem(rules._COMPILED, self.row, rules._compiled(mutant))
        yield


MUTANTS = [
    # (cell, row, change, requirement the failure names)
    ("closed.syn.any", "closed.no-ack", {"answer": "<SEQ=0><ACK=SEG.SEQ><CTL=RST,ACK>"}, "RFC9293/3.10.7.1"),
    ("listen.ack.any", "listen.ack", {"answer": "nothing"}, "RFC9293/3.10.7.2"),
    ("syn-sent.syn-ack.acks-snd-nxt", "syn-sent.syn-ack", {"next": "SYN-SENT"}, "RFC9293/3.10.7.3"),
    ("established.ack-data.far-server", "seq.unacceptable", {"answer": "nothing"}, "RFC9293/3.10.7.4"),
    ("fin-wait-2.rst.rcv-nxt", "rst.exact", {"next": "same"}, "RFC5961/3.2"),
    ("close-wait.rst.in-window", "rst.in-window", {"answer": "nothing"}, "RFC5961/3.2"),
    ("last-ack.syn.in-window", "syn.challenge", {"answer": "<SEQ=0><ACK=SEG.SEQ+1><CTL=RST,ACK>"}, "RFC5961/4.2"),
    ("fin-wait-1.ack.acks-too-old", "ack.too-old", {"answer": "nothing"}, "RFC5961/5.2"),
    ("established.fin-ack.rcv-nxt-client", "fin.close-wait", {"next": "ESTABLISHED"}, "RFC9293/3.10.7.4"),
    ("last-ack.ack.acks-snd-nxt", "ack.last-ack", {"next": "LAST-ACK"}, "RFC9293/3.10.7.4"),
    ("fin-wait-2.ack-data.rcv-nxt", "text.accept", {"do": "RCV.NXT := RCV.NXT + 2"}, "RFC9293/3.10.7.4"),
]


@pytest.mark.parametrize("test, row, change, requirement", MUTANTS, ids=[m[1] for m in MUTANTS])
def test_a_rule_mutant_fails_the_cells_of_its_rule(run_case, test, row, change, requirement):
    result = run_case(cell(test), plugins=[RuleMutant(row, **change)])
    assert_control_fails(result, requirement)
    assert row in result.stdout.str(), "the failure names the row of the table"


FAULTS = [
    # (cell, fault on the SUT's segments, requirement)
    ("established.rst.in-window-server", Fault("A", nth=2, action="drop"), "RFC5961/3.2"),
    ("established.rst.in-window-server", Fault("A", nth=2, action="ack", offset=1), "RFC5961/3.2"),
    ("listen.syn.any", Fault("SA", nth=1, action="drop"), "RFC9293/3.10.7.2"),
    ("closed.ack.any", Fault("R", nth=1, action="seq", offset=1), "RFC9293/3.10.7.1"),
    ("syn-received.syn-ack.acks-below-snd-una-passive", Fault("R", nth=1, action="drop"), "RFC9293/3.10.7.4"),
]


@pytest.mark.parametrize("test, fault, requirement", FAULTS,
                         ids=[f"{t}-{f.action}-{f.flags}{f.nth}" for t, f, _ in FAULTS])
def test_a_broken_answer_fails_the_cell(run_case, test, fault, requirement):
    result = run_case(cell(test), plugins=[FaultPlugin(fault)])
    assert_control_fails(result, requirement)


def test_a_documented_departure_the_stack_does_not_make_fails(run_case):
    """The profile says Linux ignores an in-window RST in ESTABLISHED; it
    sends the challenge ACK RFC 5961 asks for: the cell fails."""
    wrong = rules.Override("rst.in-window", "nothing", states=("ESTABLISHED",), source="a profile that is wrong")
    result = run_case(cell("established.rst.in-window-server"), plugins=[ProfileRules(added=[wrong])])
    assert_control_fails(result, "RFC5961/3.2")
    assert "documented instead: nothing" in result.stdout.str()


@pytest.mark.parametrize("test", sorted({m[0] for m in MUTANTS} | {f[0] for f in FAULTS}))
def test_the_cell_passes_unbroken(run_case, test):
    assert_case_passes(run_case(cell(test)))
