"""The state x event matrix: every RFC 9293 state meets every kind of segment.

Each test is one cell of harness/matrix.py (a state, an event, a position),
run for each family and each way the state is reached (SYN-RECEIVED passive
and by simultaneous open, ESTABLISHED with the SUT as server and as client).
The Connection brings the SUT into the state; the peer sends the cell's
segment; the SUT's answer, then its state, are held against what the rules
of harness/rules.py say, as the stack's profile documents them ([[rule]]
entries of cases/profiles/<stack>.toml). Where the profile documents an
answer the RFC does not allow, the cell checks that documented answer and
reports a documented deviation of that rule.

Silence is watched only as long as the stack takes to answer at once (its
profile's `answer_time`, plus twice the slowest answer seen while the
connection was built, so a path with delay is waited for); a timer's
retransmission (of the SUT's SYN, SYN-ACK or FIN) is not an answer, and
where the stack has a tunable RTO floor it is raised to 2 s, and a tunable
tail loss probe turned off, so that no retransmission timer runs out while a
cell is judged (gVisor puts a connection in CLOSING or LAST-ACK back into
FIN-WAIT-1 whenever it sends its FIN again).
"""
import pytest

from harness.connection import Connection, Unreachable
from harness.matrix import CELLS, EVENTS, SHAPES, model_tcb
from harness.peer import ANSWER_WITHIN
from harness.rules import SYNCHRONIZED, Segment as RuleSegment, arrive, documented_text
from harness.segment import MOD
from harness.verdict import ConformanceFailure

pytestmark = pytest.mark.matrix
DELAYED_ACK = 0.6          # an ACK of text may wait for the delayed-ACK timer: < 0.5 s (RFC 9293 MUST-40)
RTO_FLOOR = 2_000_000      # us: the RTO floor where the stack has a tunable for it (rto_min)


def pytest_generate_tests(metafunc):
    if "cell" not in metafunc.fixturenames:
        return
    params = [pytest.param(c, v, id=c.id[len("matrix."):] + (f"-{v}" if v else ""), marks=pytest.mark.case(c.id))
              for c in CELLS for v in SHAPES[c.state].variants]
    metafunc.parametrize("cell, variant", params)


def _flags(ctl: frozenset) -> str:
    return "".join(sorted(ctl))


def test_cell(request, cell, variant, stack, peer, profile, rng, tcpconf):
    # one cell of the state x event matrix; its title in the report is its catalog entry's
    overrides = tcpconf["profile"].rules
    app = request.getfixturevalue("app") if cell.state != "CLOSED" else None
    profile.set_if_tunable("rto_min", RTO_FLOOR)      # no retransmission timer runs out during the cell,
    profile.set_if_tunable("tail_loss_probe", 0)      # nor a loss probe's (2 SRTT + 200 ms on gVisor)
    conn = Connection(stack, peer, app, overrides, rng)
    try:
        conn.reach(cell.state, variant)
    except Unreachable as e:
        pytest.skip(str(e))
    tcb = conn.tcb()
    j = cell.judge(tcb, overrides)
    model = cell.judge(model_tcb(cell.state, variant))
    if [r.id for r in j.rfc.rows] != [r.id for r in model.rfc.rows]:
        pytest.fail(f"harness: on this connection the cell is decided by {[r.id for r in j.rfc.rows]}, "
                    f"not by {[r.id for r in model.rfc.rows]} as its catalog entry says (variables {tcb})",
                    pytrace=False)
    rfc, doc = j.rfc, j.documented
    row = rfc.decided_by
    what = f"{cell.state}, {EVENTS[cell.event][2]} with {cell.where}: {row.id}: {row.text}"
    if j.departs:
        what += f" [documented instead: {doc.describe()}: {documented_text(j, overrides)}]"
    seg = cell.segment(tcb)
    sent = peer.send(cell.flags, seq=seg.seq, ack=seg.ack, data=b"x" * seg.text)
    silence = profile.value("answer_time") + 2 * conn.rtt

    def timer(s):                      # a retransmission by the SUT's own timer is not an answer
        return peer.retransmitted(s)

    for answer in doc.answers:
        want = _flags(answer.ctl)
        if doc.optional:
            got = peer.next_segment(within=silence, skip=timer)
            if got is not None and peer.mismatch(got, answer.ctl, answer.seq, answer.ack):
                raise ConformanceFailure(j.requirement, what, f"{peer.describe_expected(answer.ctl, answer.seq, answer.ack)}"
                                         " or nothing (MAY)", peer.describe(got))
            continue
        peer.expect(want, seq=answer.seq, ack=answer.ack, within=DELAYED_ACK if answer.delayed else ANSWER_WITHIN,
                    requirement=j.requirement, what=what)
    peer.expect_none(within=silence, requirement=j.requirement, skip=timer,
                     what=f"{what}: nothing {'else ' if doc.answers else ''}is sent")
    _state_after(conn, cell, doc, j.requirement, what, silence)
    if j.departs:
        profile.conclude({"answer": doc.describe(), "rule": j.requirement, "follows": False,
                          "note": f"{doc.describe()}: {documented_text(j, overrides)}",
                          "requires": f"{rfc.describe()} ({', '.join(f'{r.id}: {r.text}' for r in j.departs)})",
                          "where": f"{profile.profile.source}, [[rule]] for row "
                                   + ", ".join(dict.fromkeys(r.id for r in j.departs))})


def _state_after(conn, cell, doc, requirement: str, what: str, silence: float) -> None:
    """The state the rules say the segment left: read from the stack where
    it reports states; otherwise proved on the wire by a follow-up segment
    whose answer tells the candidates apart (one octet of old data: a
    synchronized connection acknowledges it, a closed one resets it; data is
    never held back by the stack's rate limit on invalid segments)."""
    __tracebackhide__ = True
    conn.state = doc.next
    if "state" in conn.stack.capabilities:
        conn.await_state(doc.next, requirement, f"{what}: the connection is in {doc.next} after it")
        return
    peer = conn.peer
    # the variables the segment left, and what the peer knows of the rest (RCV.WND
    # from the SUT's SYN-ACK, MAX.SND.WND) where the rules had none (from LISTEN)
    tcb = {**conn.tcb(), **{k: v for k, v in doc.tcb.items() if v is not None}}
    if tcb.get("RCV_NXT") is None:       # no connection to probe before SYN-RECEIVED
        return
    seq, ack = (tcb["RCV_NXT"] - 1) % MOD, tcb.get("SND_NXT") if tcb.get("SND_NXT") is not None else peer.rcv_nxt
    state = doc.next if doc.next in SYNCHRONIZED or doc.next in ("CLOSED", "LISTEN") else None
    if state is None:
        return
    expected = arrive(state, tcb, RuleSegment(frozenset("PA"), seq, ack, 1))
    peer.send("PA", seq=seq, ack=ack, data=b"?")
    for answer in expected.answers:
        peer.expect(_flags(answer.ctl), seq=answer.seq, ack=answer.ack, requirement=requirement,
                    what=f"{what}: the connection is in {doc.next} after it (a follow-up octet of old data draws "
                         f"{answer.text()})")
