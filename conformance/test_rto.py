"""RFC 6298 (the retransmission timer) and RFC 8985 §7 (the tail loss probe),
with round-trip times the tester makes.

The tester is the path: it holds its ACK of each segment for as long as the
RTT it wants the SUT to measure, watching the wire meanwhile (nothing may
come: the SUT waits for that ACK), so the SUT's samples are several hundred
milliseconds, not the microseconds of a local link. One segment per round,
and every hold shorter than the SUT's RTO of the moment, so that no sample
is lost to Karn's rule. Our SYN offers neither SACK nor timestamps, except
where a case needs them: one sample per round, no tail loss probe (Linux
and gVisor probe only connections with SACK). The profile's behaviour
"rto.estimator" names how the stack computes its RTO from the samples
(harness.rtt); the case computes the same from the samples it caused.
"""
import pytest

from harness.rtt import rto_range
from harness.verdict import TimingFailure, require, require_interval

TARGET_RTT = 0.4          # seconds: the RTT the rounds ramp up to
ROUNDS = 5
PLAIN_SYN = [("MSS", 1000), ("NOP", None), ("WScale", 7)]


def _established(peer, app):
    listener = app.listen(peer.sut_port)
    syn = peer.send("S")
    peer.expect("SA", ack=peer.iss + 1, what="a listening SUT answers a SYN with a SYN-ACK")
    third = peer.send("A")
    conn = app.accept(listener)
    info = app.tcp_info(conn)
    return conn, info["rtt"] / 1e6 if info is not None else third.t - syn.t


class Rounds:
    """One segment at a time from the SUT's application, each acknowledged
    after a hold: the RTT samples the SUT takes, and the RTO it must have."""

    def __init__(self, peer, app, conn, profile, handshake_rtt: float):
        self.peer, self.app, self.conn = peer, app, conn
        self.estimator = profile.behaviour("rto.estimator")
        self.rto_min = profile.value("rto_min") / 1e6
        self.rto_max = profile.value("rto_max") / 1000
        self.samples = [handshake_rtt]

    def rto(self) -> tuple[float, float]:
        return rto_range(self.estimator["answer"], self.samples, self.rto_min, self.rto_max)

    def segment(self, data: bytes, what: str):
        self.app.send(self.conn, data)
        return self.peer.expect("A", seq=self.peer.rcv_nxt, data=data, what=what)

    def round(self, hold: float, data: bytes = b"r" * 100):
        """A segment, our ACK `hold` seconds after it, and the sample it gives."""
        seg = self.segment(data, "the application's data, one segment")
        self.peer.expect_none(until=seg.t + hold, requirement="RFC6298/5.1",
                              what=f"the SUT waits for our ACK, held {hold * 1000:.0f} ms (its RTO is longer)")
        ack = self.peer.send("A")
        self.samples.append(ack.t - seg.t)
        return seg, ack

    def ramp(self, target: float, rounds: int) -> None:
        """Rounds whose holds grow towards `target`, each well inside the RTO
        the samples so far give."""
        for _ in range(rounds):
            self.round(min(target, 0.6 * self.rto()[0]))


def _plain(peer) -> None:
    peer.syn_options = list(PLAIN_SYN)


def _retransmission_in(seen: float, lo: float, hi: float, tolerance, requirement: str, what: str) -> None:
    __tracebackhide__ = True
    if lo == hi:
        require_interval(seen, lo, tolerance, requirement, what)
    elif not (lo - tolerance.allowed(lo) <= seen <= hi + tolerance.allowed(hi)):
        raise TimingFailure(requirement, what, f"between {lo:.3f} s and {hi:.3f} s (+- tolerance)", f"{seen:.3f} s")


@pytest.mark.case("rfc6298.rto-follows-rtt")
@pytest.mark.requires("app")
def test_rto_follows_the_measured_rtt(stack, peer, app, profile, tolerance, observed):
    """After RTT samples of a few hundred milliseconds the RTO is what the estimator makes of them."""
    _plain(peer)
    conn, r0 = _established(peer, app)
    rounds = Rounds(peer, app, conn, profile, r0)
    rounds.ramp(TARGET_RTT, ROUNDS)
    lo, hi = rounds.rto()
    info = app.tcp_info(conn)
    if info is not None:                          # the SUT's own account, for the report
        observed["sut_reported"] = {k: info[k] / 1e6 for k in ("rto", "rtt", "rttvar")}
    seg = rounds.segment(b"lost" * 25, "the application's data, never acknowledged")
    rexmit = peer.expect("A", seq=seg.seq, data=seg.payload, within=tolerance.latest(hi) + 0.2,
                         requirement="RFC6298/5.4", what="the RTO timer retransmits the earliest unacknowledged segment")
    observed["rtt_samples"] = [round(s, 4) for s in rounds.samples]
    observed["expected_rto"] = [round(lo, 3), round(hi, 3)]
    observed["rto"] = round(rexmit.t - seg.t, 3)
    _retransmission_in(rexmit.t - seg.t, lo, hi, tolerance, "RFC6298/2.3",
                       f"the RTO after RTT samples up to {TARGET_RTT * 1000:.0f} ms, by the documented estimator "
                       f"({rounds.estimator['answer']}: {rounds.estimator['note'][:60]}...)")
    longest = max(rounds.samples)
    require(rexmit.t - seg.t > longest, "RFC6298/2.3", "the RTO exceeds the RTTs the SUT measured",
            f"more than {longest:.3f} s", f"{rexmit.t - seg.t:.3f} s")
    profile.conclude(rounds.estimator)


@pytest.mark.case("rfc6298.karn-backoff")
@pytest.mark.requires("app")
def test_backoff_kept_until_a_new_sample(stack, peer, app, profile, tolerance, observed):
    """No RTT sample from a retransmitted segment; the backed-off RTO is kept until a new sample."""
    b = profile.behaviour("rto.backoff-kept")
    _plain(peer)
    conn, r0 = _established(peer, app)
    rounds = Rounds(peer, app, conn, profile, r0)
    rto0 = rounds.rto()
    # S1 is lost once: retransmitted one RTO later; the ACK of the
    # retransmission comes late, so a sample measured from the original
    # (Karn's rule broken) would be about 2.5 RTO and raise the RTO above 2 RTO.
    s1 = rounds.segment(b"1" * 100, "segment 1")
    r1 = peer.expect("A", seq=s1.seq, data=s1.payload, within=tolerance.latest(rto0[1]) + 0.2,
                     requirement="RFC6298/5.4", what="segment 1 is retransmitted by the RTO timer")
    _retransmission_in(r1.t - s1.t, *rto0, tolerance, "RFC6298/2.3", "the first RTO, from the handshake's sample")
    hold = 1.5 * (r1.t - s1.t)
    peer.expect_none(until=r1.t + hold, requirement="RFC6298/5.5",
                     what="the backed-off timer (2 RTO) has not expired yet")
    ack1 = peer.send("A")
    # S2: its first retransmission shows the RTO the SUT has now.
    s2 = rounds.segment(b"2" * 100, "segment 2")
    if b["answer"] == "kept":
        want, rule = (2 * rto0[0], 2 * rto0[1]), "RFC6298/3"
        what = "Karn: no sample from the retransmitted segment 1, so the RTO stays backed off (2 RTO) until a new sample"
    else:
        if b["answer"] == "sample-from-retransmission":
            rounds.samples.append(ack1.t - r1.t)
        want, rule, what = rounds.rto(), b["rule"], f"documented: {b['note'][:90]}..."
    r2 = peer.expect("A", seq=s2.seq, data=s2.payload, within=tolerance.latest(want[1]) + 0.2,
                     requirement="RFC6298/5.4", what="segment 2 is retransmitted by the RTO timer")
    observed["rto_after_backoff"] = round(r2.t - s2.t, 3)
    _retransmission_in(r2.t - s2.t, *want, tolerance, rule, what)
    ack2 = peer.send("A")
    if b["answer"] == "sample-from-retransmission":
        rounds.samples.append(ack2.t - r2.t)
    # S3 is acknowledged at once: a valid sample, and the RTO collapses (§5).
    rounds.round(0.0, b"3" * 100)
    lo, hi = rounds.rto()
    s4 = rounds.segment(b"4" * 100, "segment 4")
    r4 = peer.expect("A", seq=s4.seq, data=s4.payload, within=tolerance.latest(hi) + 0.2,
                     requirement="RFC6298/5.4", what="segment 4 is retransmitted by the RTO timer")
    observed["rto_after_new_sample"] = round(r4.t - s4.t, 3)
    observed["rtt_samples"] = [round(x, 4) for x in rounds.samples]
    _retransmission_in(r4.t - s4.t, lo, hi, tolerance, "RFC6298/5",
                       "a new RTT sample (segment 3, never retransmitted) ends the backoff: the RTO is computed "
                       "again from the samples (RFC 6298 §5: 'collapsing' RTO back down)")
    profile.conclude(b)


@pytest.mark.case("rfc8985.tail-loss-probe")
@pytest.mark.requires("app")
def test_tail_loss_probe(stack, peer, app, profile, tolerance, observed):
    """Two segments unacknowledged: the probe retransmits the last one, 2 SRTT after, before the RTO."""
    b = profile.behaviour("retransmission.tail-loss-probe")
    if b["answer"] != "tlp":
        pytest.skip(f"the stack documents no tail loss probe: {b['note'][:100]}")
    peer.syn_options = list(PLAIN_SYN) + [("SAckOK", b"")]       # the probe needs SACK (Linux, gVisor)
    conn, r0 = _established(peer, app)
    rounds = Rounds(peer, app, conn, profile, r0)
    rounds.ramp(0.15, ROUNDS)
    srtt = _srtt(rounds)
    lo, hi = rounds.rto()
    allowance = profile.value("tlp_allowance")
    app.setsockopt(conn, "TCP_NODELAY", 1)
    app.send(conn, b"t" * 1800)                  # two segments, however the SUT cuts them
    first = peer.expect("A", seq=peer.rcv_nxt, what="segment 1 of 2")
    last = peer.expect("A", seq=peer.rcv_nxt, what="segment 2 of 2")
    require(len(first.payload) + len(last.payload) == 1800, "RFC8985/7.3", "the 1800 octets go in two segments",
            "1800 octets", f"{len(first.payload)} + {len(last.payload)}")
    pto = min(2 * srtt + allowance, lo)
    probe = peer.expect("A", seq=last.seq, data=last.payload, within=tolerance.latest(pto) + 0.2,
                        requirement="RFC8985/7.3",
                        what="the probe: with no new data to send, a retransmission of the last segment")
    observed["srtt"] = round(srtt, 3)
    observed["pto"] = round(probe.t - last.t, 3)
    require_interval(probe.t - last.t, pto, tolerance, "RFC8985/7.2",
                     f"PTO = 2 SRTT + {allowance * 1000:g} ms ({profile.doc('tlp_allowance')[:60]}...), "
                     f"at most the RTO: SRTT {srtt * 1000:.0f} ms")
    rexmit = peer.expect("A", seq=first.seq, within=tolerance.latest(hi) + 0.5, requirement="RFC8985/7.4",
                         what="the probe unanswered, the RTO timer retransmits the earliest segment")
    observed["rto_after_probe"] = round(rexmit.t - probe.t, 3)
    profile.conclude(b)


def _srtt(rounds) -> float:
    """SRTT after the samples: alpha 1/8 from the first sample on (RFC 6298 §2.3; Linux and gVisor alike)."""
    srtt = None
    for r in rounds.samples:
        srtt = r if srtt is None else srtt + (r - srtt) / 8
    return srtt
