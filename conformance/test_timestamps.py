"""RFC 7323: timestamps (§3, §4.3), PAWS (§5) and the unscaled window of a SYN (§2.2).

The SUT's timestamps are judged from its segments: the option appears
exactly when both SYNs carried it; its TSval never goes back; its TSecr
echoes TS.Recent, which §4.3 updates only from a segment at or below
Last.ACK.sent (the left edge the SUT last acknowledged). Our side chooses
its TSvals explicitly where the rule needs them apart. A stack without
timestamps (profile value `timestamps` = 0) skips the cases that need them.
"""
import pytest

from harness.segment import MOD, options_text, seq_diff
from harness.verdict import require

PAIRS = 12            # pairs of small segments: enough to outlast Linux's 16 quick ACKs
GAP = 0.1             # seconds without a segment that end a flight (well inside any RTO)


def _established(peer, app, **options):
    listener = app.listen(peer.sut_port, **options)
    peer.connect()
    return app.accept(listener)


def _needs_timestamps(peer, profile) -> None:
    if profile.value("timestamps") == 0:
        pytest.skip(f"the stack has no timestamps ({profile.doc('timestamps')[:80]})")
    require(peer.ts_on, "RFC7323/3.2", "the SYN-ACK answers our timestamp option", "TS on the SYN-ACK",
            "none")


def _ts(peer, tsval: int) -> list:
    return [("NOP", None), ("NOP", None), ("Timestamp", (tsval % MOD, peer.ts_recent))]


def _sut_segments(peer) -> list:
    return [e for e in peer.trace.segments() if peer.mine(e)]


@pytest.mark.case("rfc7323.timestamps-negotiated")
@pytest.mark.requires("app")
@pytest.mark.parametrize("offer", ["offered", "not-offered"])
def test_timestamps_only_when_negotiated(stack, peer, app, profile, observed, offer):
    """Timestamps on every segment of a connection whose SYNs both carried them, on none otherwise."""
    if offer == "not-offered":
        peer.syn_options = [o for o in peer.syn_options if o[0] != "Timestamp"]
    conn = _established(peer, app)
    for n in range(3):                          # data both ways, and a pause the clock must cover
        peer.send("PA", data=b"ping %d" % n)
        peer.expect("A", seq=peer.rcv_nxt, ack=peer.snd_nxt, what="our data is acknowledged")
        app.recv_exactly(conn, 6)
        app.send(conn, b"pong %d" % n)
        peer.expect("A", seq=peer.rcv_nxt, data=b"pong %d" % n, what="the application's data",
                    skip=lambda seg: not seg.payload)
        peer.send("A")
        peer.expect_none(within=0.05, what="nothing but window updates", skip=lambda seg: not seg.payload)
    app.close(conn)
    peer.expect("FA", seq=peer.rcv_nxt, ack=peer.snd_nxt, what="CLOSE sends a FIN", skip=lambda seg: not seg.payload and not seg.fin)
    segs = _sut_segments(peer)
    negotiated = offer == "offered" and profile.value("timestamps") != 0
    observed["negotiated"] = negotiated
    for seg in segs:
        if seg.rst:
            continue
        require(seg.has_option("Timestamp") == negotiated, "RFC7323/3.2",
                "once both SYNs carried TSopt it is on every non-RST segment; without that, on none"
                if negotiated else "a TCP sends TSopt only when the SYN it answers carried it",
                f"TS {'on' if negotiated else 'absent from'} every segment", f"{peer.describe(seg)} options "
                f"[{options_text(seg)}]")
    if negotiated:
        vals = [s.option("Timestamp")[0] for s in segs if s.has_option("Timestamp")]
        observed["tsval_span"] = seq_diff(vals[-1], vals[0])
        for a, b in zip(vals, vals[1:]):
            require(seq_diff(b, a) >= 0, "RFC7323/5.4", "TSval comes from a clock that never goes back",
                    f"TS val >= {a}", f"TS val {b}")


@pytest.mark.case("rfc7323.tsecr-echo")
@pytest.mark.requires("app")
@pytest.mark.parametrize("order", ["in-order", "out-of-order"])
def test_tsecr_echoes_ts_recent(stack, peer, app, profile, observed, order):
    """TSecr echoes the segment that advanced the left edge: the earliest of a delayed ACK's, never an out-of-order one's."""
    conn = _established(peer, app)
    _needs_timestamps(peer, profile)
    base = peer.tsval()
    if order == "in-order":
        # Pairs of small segments back to back, each with its own TSval: an
        # ACK that covers both (a delayed ACK) echoes the first (§4.3 (A)).
        sent, delayed = {}, 0
        for n in range(PAIRS):
            for k in range(2):
                tsval = (base + 10 * (2 * n + k + 1)) % MOD
                sent[peer.snd_nxt] = tsval
                peer.send("A", data=b"%02d%d" % (n, k), options=_ts(peer, tsval))
            left = peer.rcv_nxt
            while seq_diff(peer.snd_una, peer.snd_nxt) < 0:
                previous = peer.snd_una
                ack = peer.expect("A", seq=left, within=0.6, what="our data is acknowledged (at most 500 ms later)")
                if seq_diff(ack.ack, previous) <= 0:
                    continue
                delayed += seq_diff(ack.ack, previous) > 3
                tsecr = ack.option("Timestamp", (None, None))[1]
                require(tsecr == sent[previous], "RFC7323/4.3",
                        "an ACK echoes TS.Recent: the TSval of the segment at Last.ACK.sent, the earliest it "
                        "acknowledges (a later one's SEG.SEQ is beyond Last.ACK.sent)",
                        f"TS ecr {sent[previous]}", f"{peer.describe(ack)} TS ecr {tsecr}")
        observed["delayed_acks"] = delayed
        return
    # A, then C beyond a hole, then B into the hole with a TSval between A's and C's.
    a, b, c = base + 10, base + 20, base + 30
    peer.send("A", data=b"A" * 10, options=_ts(peer, a))
    peer.expect("A", ack=peer.snd_nxt, what="A is acknowledged")
    hole = peer.snd_nxt
    peer.send("A", seq=hole + 10, data=b"C" * 10, options=_ts(peer, c))
    dup = peer.expect("A", ack=hole, what="out-of-order data draws an immediate duplicate ACK (RFC 9293 §3.10.7.4)")
    tsecr = dup.option("Timestamp", (None, None))[1]
    require(tsecr == a, "RFC7323/4.3", "out-of-order data (SEG.SEQ beyond Last.ACK.sent) does not update "
            "TS.Recent: the duplicate ACK echoes A's TSval", f"TS ecr {a}", f"{peer.describe(dup)} TS ecr {tsecr}")
    peer.send("A", data=b"B" * 10, options=_ts(peer, b))
    filled = peer.expect("A", ack=hole + 20, what="B fills the hole: A, B and C are acknowledged")
    tsecr = filled.option("Timestamp", (None, None))[1]
    require(tsecr == b, "RFC7323/4.3", "the segment that fills the hole is at Last.ACK.sent: its TSval "
            "becomes TS.Recent and is echoed (not C's newer one)", f"TS ecr {b}",
            f"{peer.describe(filled)} TS ecr {tsecr}")
    got = app.recv_exactly(conn, 30)
    require(got == b"A" * 10 + b"B" * 10 + b"C" * 10, "RFC9293/3.10.7.4", "the data reaches the application in order",
            "A*10 B*10 C*10", got)


@pytest.mark.case("rfc7323.paws")
@pytest.mark.requires("app")
def test_paws_drops_old_timestamp(stack, peer, app, profile, observed):
    """Data whose TSval is older than TS.Recent is dropped and acknowledged; with a current TSval it is taken."""
    conn = _established(peer, app)
    _needs_timestamps(peer, profile)
    b = profile.behaviour("paws")
    recent = peer.tsval()
    peer.send("PA", data=b"first", options=_ts(peer, recent))   # at Last.ACK.sent: TS.Recent = recent
    peer.expect("A", ack=peer.snd_nxt, what="our data is acknowledged")
    old = (recent - 1000) % MOD
    una = peer.snd_nxt
    peer.send("PA", seq=una, data=b"stale", options=_ts(peer, old))
    if b["answer"] == "drop-ack":
        ack = peer.expect("A", seq=peer.rcv_nxt, ack=una, requirement="RFC7323/5.3",
                          what="PAWS: a segment whose TSval is older than TS.Recent is unacceptable: dropped, "
                               "and acknowledged <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK> (R1)")
        tsecr = ack.option("Timestamp", (None, None))[1]
        require(tsecr == recent, "RFC7323/4.3", "the ACK echoes TS.Recent, not the rejected TSval",
                f"TS ecr {recent}", f"TS ecr {tsecr}")
        peer.send("PA", seq=una, data=b"fresh", options=_ts(peer, recent + 10))
        peer.expect("A", ack=una + 5, requirement="RFC7323/5.3", what="the same octets with a current TSval are taken")
        got = app.recv_exactly(conn, 10)
        require(got == b"firstfresh", "RFC7323/5.3", "the stale copy never reaches the application",
                b"firstfresh", got)
    else:
        peer.expect("A", seq=peer.rcv_nxt, ack=una + 5, requirement=b["rule"],
                    what=f"documented: no PAWS, the old segment is taken ({b['note'][:60]}...)")
        got = app.recv_exactly(conn, 10)
        require(got == b"firststale", b["rule"], "documented: the old segment is delivered", b"firststale", got)
    profile.conclude(b)


@pytest.mark.case("rfc7323.syn-window-unscaled")
@pytest.mark.requires("app")
def test_window_of_syn_is_not_scaled(stack, peer, app, profile, observed):
    """The window of our SYN-ACK is taken as it stands; scaled only from the next segment on."""
    window = 2920                                 # two segments of 1460
    shift = 7
    peer.syn_options = [o for o in peer.syn_options if o[0] not in ("WScale", "SAckOK")] + [("WScale", shift)]
    peer.window = window
    conn = app.connect(peer.addr, peer.port, bind_port=peer.sut_port)
    peer.accept()
    require(peer.sut_wscale is not None, "RFC7323/2.2", "the SUT's SYN offers window scale",
            "wscale on the SYN", "none")
    app.send(conn, bytes(range(256)) * 100, timeout=0.5)

    def flight(limit: int, what: str) -> int:
        """Read the SUT's data until it stops (no segment for GAP s, well
        inside its RTO); every octet within `limit` of our last ACK.
        Returns how far beyond that ACK the data reached."""
        acked, reach, wait = peer.rcv_nxt, 0, 1.0
        while True:
            seg = peer.next_segment(within=wait)
            if seg is None:
                return reach
            if not seg.payload:
                continue
            wait = GAP
            r = seq_diff(seg.end, acked)
            require(r <= limit, "RFC7323/2.2", what, f"data up to {limit} octets beyond SEG.ACK",
                    f"{peer.describe(seg)}: {r} octets beyond it")
            reach = max(reach, r)

    reach = flight(window, f"the SYN-ACK's window field {window} is not scaled: the SUT sends at most {window} "
                           f"octets (read with a shift of {shift} it would allow {window << shift})")
    observed["reach_after_synack"] = reach
    require(reach > 0, "RFC7323/2.2", "the SUT sends data in the window of the SYN-ACK", f"up to {window} octets",
            "nothing")
    peer.send("A")                                # the same field, now scaled: 2920 << 7
    reach = flight(window << shift, "after the handshake the window field is scaled")
    observed["reach_after_ack"] = reach
    require(reach > window, "RFC7323/2.3", f"after the handshake the window field is scaled by {shift}: the SUT "
            f"sends more than {window} octets beyond the ACK", f"more than {window} octets", f"{reach} octets")
