"""Initial sequence numbers (RFC 9293 §3.4.1, RFC 6528 §3).

ISN = M + F(localip, localport, remoteip, remoteport, secretkey): M a clock,
F a keyed pseudorandom function. On one 4-tuple F is constant, so ISNs there
show the clock M (MUST-8); across 4-tuples F must make them unpredictable
from one another (SHLD-1). Each handshake is SYN, SYN-ACK, RST in
SYN-RECEIVED, so no TIME-WAIT holds the 4-tuple and it can be reused at once.
"""
from math import comb

import pytest

from harness import plot
from harness.peer import ANSWER_WITHIN, Peer
from harness.segment import MOD, seq_diff
from harness.verdict import require

HANDSHAKES = 200
# A prediction "hits" when it comes within NEAR of the real ISN. Under a keyed
# hash each hit has probability (2 * NEAR + 1) / 2**32 (about 3.05e-5),
# independently of the others; ALLOWED hits per predictor keep the chance
# that a correct stack fails below FALSE_ALARM (computed, see _false_alarm).
NEAR = 1 << 16
ALLOWED = 2
FALSE_ALARM = 1e-7


def _handshake(stack, peer, rng, earlier: set | None = None) -> tuple:
    """SYN with a fresh ISS, the SUT's SYN-ACK, our RST: the SYN's send time
    and the SUT's ISN. The RST removes the half-open connection. `earlier`
    (the ISSs of earlier handshakes on this 4-tuple, kept up to date): a
    SYN-ACK that acknowledges one of them is a retransmission the SUT sent
    before our RST reached it (a slow SUT), passed over."""
    old = frozenset(earlier or ())
    peer.iss = peer.snd_una = peer.snd_nxt = rng.getrandbits(32)
    if earlier is not None:
        earlier.add(peer.iss)
    syn = peer.send("S")
    synack = peer.expect("SA", ack=peer.iss + 1, requirement="RFC9293/3.10.7.2",
                         what="LISTEN: a SYN draws <SEQ=ISS><ACK=SEG.SEQ+1><CTL=SYN,ACK>",
                         skip=lambda s: s.syn and (s.ack - 1) % MOD in old)
    peer.send("R", seq=peer.iss + 1)
    if "state" in stack.capabilities and stack.wait_for_state(peer.sut_port, peer.port, None, ANSWER_WITHIN) is None:
        require(False, "RFC9293/3.10.7.4",
                "a RST at RCV.NXT in a passive SYN-RECEIVED removes the connection: the 4-tuple is free again",
                "no connection (listener in LISTEN)", stack.state_of(peer.sut_port, peer.port))
    return syn.t, synack.seq


def _false_alarm(trials: int) -> float:
    """P(more than ALLOWED hits in `trials`) for one predictor under a keyed
    hash: the ISN steps between distinct 4-tuples are then independent and
    uniform over 2**32, and so are the steps between those steps."""
    p = (2 * NEAR + 1) / MOD
    return sum(comb(trials, k) * p ** k * (1 - p) ** (trials - k) for k in range(ALLOWED + 1, trials + 1))


# The bound the unpredictability case promises, for both predictors together.
assert 2 * _false_alarm(HANDSHAKES - 1) < FALSE_ALARM


@pytest.mark.case("isn.clock-driven")
@pytest.mark.requires("app")
def test_isn_follows_the_clock_on_one_tuple(stack, peer, app, profile, rng, tolerance, observed, figures):
    """Two hundred handshakes on one 4-tuple: the ISNs increase with the clock."""
    app.listen(peer.sut_port)
    tick = profile.value("isn_clock_tick")
    earlier: set = set()
    samples = [_handshake(stack, peer, rng, earlier) for _ in range(HANDSHAKES)]
    figures.append(plot.isn_clock([t for t, _ in samples], [isn for _, isn in samples], tick))
    steps = [seq_diff(b, a) for (_, a), (_, b) in zip(samples, samples[1:])]
    elapsed = samples[-1][0] - samples[0][0]
    observed["handshake_ms"] = round(elapsed / (HANDSHAKES - 1) * 1000, 3)
    observed["isn_first"] = [isn for _, isn in samples[:5]]
    back = [(n, s) for n, s in enumerate(steps, 1) if s <= 0]
    require(not back, "RFC9293/MUST-8",
            "ISNs on one 4-tuple come from a clock that increases until it wraps "
            f"({2 ** 32 * tick:.0f} s at the documented tick): each exceeds the previous one",
            "every step > 0", f"{len(back)} of {len(steps)} steps not forward, the first: {back[:1]} (handshake, step)")
    clock = sum(steps) * tick
    observed["step_error_us_max"] = round(max(abs(step * tick - (b[0] - a[0]))
                                              for step, a, b in zip(steps, samples, samples[1:])) * 1e6, 1)
    observed["isn_tick_ns"] = round(elapsed / sum(steps) * 1e9, 3) if sum(steps) else None
    require(tolerance.within(elapsed, clock), "RFC9293/MUST-8",
            f"ISNs on one 4-tuple advance with time, one per {tick * 1e9:g} ns ({profile.doc('isn_clock_tick')}): "
            f"over {HANDSHAKES} handshakes the ISN advanced by {sum(steps)}",
            f"{elapsed:.6f} s +- {tolerance.allowed(elapsed):.3f} s of clock", f"{clock:.6f} s of clock")


@pytest.mark.case("isn.unpredictable")
@pytest.mark.requires("app")
def test_isn_of_another_tuple_is_not_predictable(stack, peer, app, profile, rng, observed, figures):
    """Two hundred handshakes from as many ports: no ISN follows from the earlier ones.

    Two predictors of the next connection's ISN from the previous ones: the
    previous ISN plus the time elapsed on the stack's ISN clock (a clock
    without the keyed hash), and the previous ISN plus the previous step (a
    counter or any fixed increment). Each may come within 2**16 of the real
    ISN at most twice in 199 (198) tries. With ISN = clock + keyed hash of
    the 4-tuple, a try hits with probability 2**-15 independently of the
    others, so a conformant stack fails this case with probability below
    1e-7 (both predictors together); a clock or a counter hits nearly
    every time.
    """
    app.listen(peer.sut_port)
    tick = profile.value("isn_clock_tick")
    samples = []
    for n in range(HANDSHAKES):
        other = Peer(stack.link, stack.family, stack.peer_addr, stack.sut_addr, peer.port + n, peer.sut_port,
                     rng, peer.requirement)
        other.cursor = len(stack.trace.entries)
        samples.append(_handshake(stack, other, rng))
    times = [t for t, _ in samples]
    isns = [isn for _, isn in samples]
    steps = [(b - a) % MOD for a, b in zip(isns, isns[1:])]
    predictors = {
        "previous ISN + elapsed time on the ISN clock": [
            seq_diff(isns[i], isns[i - 1] + round((times[i] - times[i - 1]) / tick)) for i in range(1, len(isns))],
        "previous ISN + previous step": [
            seq_diff(isns[i], isns[i - 1] + steps[i - 2]) for i in range(2, len(isns))],
    }
    figures.append(plot.isn_spread(times, isns))
    figures.append(plot.prediction_misses(predictors, NEAR))
    observed["false_alarm"] = sum(_false_alarm(len(e)) for e in predictors.values())
    for name, errors in predictors.items():
        hits = [n for n, e in enumerate(errors) if abs(e) <= NEAR]
        observed[f"hits: {name}"] = len(hits)
        require(len(hits) <= ALLOWED, "RFC9293/SHLD-1",
                f"the ISN of a new 4-tuple is not predictable from earlier ones (RFC 6528): the prediction "
                f"'{name}' came within {NEAR} of the real ISN", f"at most {ALLOWED} of {len(errors)} "
                f"(chance {_false_alarm(len(errors)):.1e} for a keyed hash)",
                f"{len(hits)} of {len(errors)}, errors {[errors[n] for n in hits[:5]]}")
