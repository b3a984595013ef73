"""RFC 5961 §7: challenge ACKs are throttled, as the stack's profile documents.

The per-state answers of RFC 5961 §3 (a RST in the window), §4 (a SYN in a
synchronized state) and §5 (an ACK outside the acceptable range) are cases
of the state x event matrix; here only the throttle. A SYN in ESTABLISHED
draws a challenge ACK on every stack (a RST in the window does not on
gVisor 20221219, which resets: see the matrix), so SYNs are the probes.
"""
import pytest

from harness.verdict import require

BURST = 4                 # SYNs sent back to back after the first challenge ACK


def _established(peer, app, **options):
    listener = app.listen(peer.sut_port, **options)
    peer.connect()
    return app.accept(listener)


def _syn(peer):
    """A SYN in ESTABLISHED at RCV.NXT of the SUT (RFC 5961 §4: whatever its SEQ)."""
    return peer.send("S", seq=peer.snd_nxt, options=[])


@pytest.mark.case("rfc5961.challenge-ack-rate-limit")
@pytest.mark.requires("app")
@pytest.mark.parametrize("limit_ms", [pytest.param(None, id="default"), pytest.param(200, id="limit-200ms")])
def test_challenge_acks_are_throttled(stack, peer, app, profile, tolerance, observed, limit_ms):
    """SYNs in ESTABLISHED draw challenge ACKs no closer together than the documented limit."""
    b = profile.behaviour("challenge-ack.throttle")
    if limit_ms is not None:
        profile.set("invalid_ratelimit", limit_ms)
    limit = profile.value("invalid_ratelimit") / 1000
    conn = _established(peer, app)
    what = "a SYN in ESTABLISHED draws a challenge ACK <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK> (RFC 5961 §4.2)"
    _syn(peer)
    first = peer.expect("A", seq=peer.rcv_nxt, ack=peer.snd_nxt, requirement="RFC5961/4.2", what=what)
    acks = [first]
    if limit > 0:
        # A burst at once, and one more SYN halfway through the interval: not
        # one more challenge ACK until it has passed. A SYN the tester got out
        # only after the interval (a busy machine) may be answered: it is no probe.
        inside = first.t + limit - tolerance.allowed(limit)
        throttled = f"challenge ACKs are throttled to one per {limit * 1000:g} ms ({profile.doc('invalid_ratelimit')[:60]}...)"
        sent = [_syn(peer) for _ in range(BURST)]
        peer.expect_none(until=first.t + limit / 2, requirement=b["rule"],
                         what=f"{throttled}: {BURST} more SYNs at once draw none",
                         skip=lambda seg: any(x.t >= inside for x in sent))
        sent.append(_syn(peer))
        peer.expect_none(until=first.t + tolerance.latest(limit), requirement=b["rule"],
                         what=f"{throttled}: a SYN halfway through the interval draws none",
                         skip=lambda seg: any(x.t >= inside for x in sent))
        observed["syns_sent_inside_interval"] = sum(x.t < inside for x in sent)
        _syn(peer)                              # the interval is over: the next SYN is challenged again
        acks.append(peer.expect("A", seq=peer.rcv_nxt, ack=peer.snd_nxt, requirement=b["rule"],
                                what=f"{limit * 1000:g} ms after a challenge ACK the next SYN draws one again"))
    else:
        for n in range(BURST):
            _syn(peer)
            acks.append(peer.expect("A", seq=peer.rcv_nxt, ack=peer.snd_nxt, requirement=b["rule"],
                                    what=f"documented: no throttle, SYN {n + 2} draws a challenge ACK too"))
    observed["challenge_ack_times"] = [round(a.t - first.t, 3) for a in acks]
    # The connection survives every SYN: data still flows both ways.
    peer.send("PA", data=b"still here")
    peer.expect("A", seq=peer.rcv_nxt, ack=peer.snd_nxt, requirement="RFC5961/4.2",
                what="the SYNs left the connection ESTABLISHED: our data is acknowledged")
    got = app.recv_exactly(conn, 10)
    require(got == b"still here", "RFC5961/4.2", "the connection survives the SYNs", b"still here", got)
    profile.conclude(b)
