"""Closing a connection (RFC 9293 §3.6, §3.6.1): FIN numbers, half-close,
simultaneous close, SYNs and old duplicates reaching TIME-WAIT, and the
orphaned FIN-WAIT-2 timeout.

The stack under test is the server of the connection unless a case says
otherwise; numbers are written relative to ISS and IRS as in the RFC's
figures (the seed note's exchange: 15 octets from the server, 2 from the
client, then FIN, FIN, ACK).
"""
import pytest

from harness.peer import ANSWER_WITHIN
from harness.segment import MOD, seq_diff
from harness.verdict import require, require_expiry

SERVER_DATA = b"Welcome, user\r\n"      # 15 octets, as in the seed note
CLIENT_DATA = b"ls"                     # 2 octets


def _established(peer, app):
    """A connection the SUT accepted: (listener id, connection id)."""
    listener = app.listen(peer.sut_port)
    peer.connect()
    return listener, app.accept(listener)


def _state(stack, peer, want, requirement: str, what: str) -> None:
    """The SUT's socket is in state `want` (None: gone), or gets there within
    ANSWER_WITHIN: a segment of ours that draws no answer takes the path's
    time to reach the SUT."""
    if "state" in stack.capabilities:
        reached = stack.wait_for_state(peer.sut_port, peer.port, want, ANSWER_WITHIN) is not None
        got = want if reached else stack.state_of(peer.sut_port, peer.port)
        require(got == want, requirement, what, want or "CLOSED (no socket)", got or "CLOSED (no socket)")


def _gone(stack, peer, requirement: str, what: str, within: float = 0.5) -> None:
    if "state" in stack.capabilities:
        require(stack.wait_for_state(peer.sut_port, peer.port, None, within) is not None, requirement, what,
                "CLOSED (no socket)", stack.state_of(peer.sut_port, peer.port))


def _time_wait(stack, peer, app, timestamps: bool = True, data: bytes = b""):
    """Figure 12 with the SUT as Peer A, optionally after `data` from the
    peer: it closes, we ACK its FIN and send ours, its ACK of ours puts it in
    TIME-WAIT. Returns (listener id, the SUT's SYN-ACK, the SUT's FIN)."""
    if not timestamps:
        peer.syn_options = [o for o in peer.syn_options if o[0] != "Timestamp"]
    listener = app.listen(peer.sut_port)
    synack = peer.connect()
    conn = app.accept(listener)
    if data:
        peer.send("PA", data=data)
        peer.expect("A", seq=peer.rcv_nxt, ack=peer.snd_nxt, within=0.5, what="the data is acknowledged")
        app.recv_exactly(conn, len(data))
    app.close(conn)
    fin = peer.expect("FA", seq=peer.rcv_nxt, ack=peer.snd_nxt, requirement="RFC9293/3.6",
                      what="CLOSE in ESTABLISHED sends <SEQ=SND.NXT><CTL=FIN,ACK> (FIN-WAIT-1)")
    peer.send("A")
    peer.send("FA")
    peer.expect("A", seq=fin.seq + 1, ack=peer.snd_nxt, requirement="RFC9293/3.10.7.4",
                what="our FIN in FIN-WAIT-2 is acknowledged (TIME-WAIT)")
    _state(stack, peer, "TIME-WAIT", "RFC9293/3.10.7.4", "the SUT is in TIME-WAIT")
    return listener, synack, fin


def _old_syn_answered(peer, snd_nxt: int, rcv_nxt: int, b) -> None:
    """The answer to an old duplicate SYN (SEG.SEQ at or below RCV.NXT, no
    timestamps) just sent into TIME-WAIT, as the profile documents it."""
    what = "an old duplicate SYN in TIME-WAIT is unacceptable: <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK>"
    if b["answer"] == "ack":
        peer.expect("A", seq=snd_nxt, ack=rcv_nxt, requirement=b["rule"], what=what)
    else:
        peer.expect_none(within=0.2, requirement=b["rule"], what=f"{what}; documented: no answer ({b['note'][:70]}...)")


def _needs_timestamps(stack, profile) -> None:
    """The RFC 6191 cases need a stack that does timestamps (RFC 7323 is
    optional): without them there is no TSval to judge a SYN by."""
    if profile.value("timestamps") == 0:
        pytest.skip(f"stack {stack.name} lacks timestamps (RFC 7323, optional): {profile.doc('timestamps')}")


def _incarnation(peer, iss: int) -> None:
    """The peer starts a new incarnation of the same 4-tuple with ISS `iss`."""
    peer.iss = peer.snd_una = peer.snd_nxt = iss % MOD


def _syn_options(peer, tsval: int) -> list:
    return [(n, (tsval % MOD, 0) if n == "Timestamp" else v) for n, v in peer.syn_options]


# --- FIN, FIN, ACK (S10) ----------------------------------------------------------------

@pytest.mark.case("teardown.fin-sequence-numbers")
@pytest.mark.requires("app")
def test_close_after_data_sut_as_server(stack, peer, app):
    """The seed note's exchange with the SUT as server: the client (peer) closes first."""
    listener, conn = _established(peer, app)
    app.send(conn, SERVER_DATA)
    peer.expect("A", seq=peer.rcv_nxt, ack=peer.snd_nxt, data=SERVER_DATA, what="server data, seq 1:16")
    peer.send("A")                                        # ack 16
    peer.send("PA", data=CLIENT_DATA)                     # seq 1:3
    peer.expect("A", seq=peer.rcv_nxt, ack=peer.snd_nxt, within=0.5, requirement="RFC9293/3.10.7.4",
                what="the client's 2 octets are acknowledged: ack 3")
    app.recv_exactly(conn, len(CLIENT_DATA))
    fin = peer.send("FA")                                 # seq 3, ack 16: the SUT enters CLOSE-WAIT
    require(app.recv(conn) == b"", "RFC9293/MUST-12", "the application is told the peer closed normally",
            "end of stream", "data or an error")
    app.close(conn)                                       # CLOSE-WAIT -> LAST-ACK
    peer.expect("FA", seq=peer.rcv_nxt, ack=fin.seq + 1, within=0.5, requirement="RFC9293/3.10.7.4",
                what="the SUT's FIN: seq 16 (after its 15 octets), ack 4 (our FIN at 3 took one sequence number)",
                skip=lambda s: s.flags == frozenset("A") and s.ack == fin.seq + 1 and not s.payload)
    peer.send("A")                                        # ack 17: its FIN took one sequence number too
    _gone(stack, peer, "RFC9293/3.10.7.4", "LAST-ACK: the ACK of its FIN (ack = FIN + 1) closes the connection")
    peer.expect_none(within=0.1, what="nothing after the last ACK")


@pytest.mark.case("teardown.fin-sequence-numbers")
@pytest.mark.requires("app")
def test_close_after_data_sut_as_client(stack, peer, app):
    """The seed note's exchange with the SUT as client: it closes first."""
    conn = app.connect(peer.addr, peer.port, bind_port=peer.sut_port)
    peer.accept()
    peer.send("PA", data=SERVER_DATA)                     # seq 1:16
    peer.expect("A", seq=peer.rcv_nxt, ack=peer.snd_nxt, within=0.5, requirement="RFC9293/3.10.7.4",
                what="the server's 15 octets are acknowledged: ack 16")
    app.recv_exactly(conn, len(SERVER_DATA))
    app.send(conn, CLIENT_DATA)
    peer.expect("A", seq=peer.rcv_nxt, ack=peer.snd_nxt, data=CLIENT_DATA, what="client data, seq 1:3")
    peer.send("A")                                        # ack 3
    app.close(conn)
    fin = peer.expect("FA", seq=peer.rcv_nxt, ack=peer.snd_nxt, requirement="RFC9293/3.6",
                      what="CLOSE: <SEQ=SND.NXT><ACK=RCV.NXT><CTL=FIN,ACK>, seq 3, ack 16")
    peer.send("FA", ack=fin.seq + 1)                      # seq 16, ack 4: its FIN took one sequence number
    peer.expect("A", seq=fin.seq + 1, ack=peer.snd_nxt, requirement="RFC9293/3.10.7.4",
                what="our FIN at 16 is acknowledged: seq 4, ack 17")
    _state(stack, peer, "TIME-WAIT", "RFC9293/3.10.7.4", "FIN-WAIT-2 and a FIN: TIME-WAIT")


# --- half-close (S19) ---------------------------------------------------------------------

@pytest.mark.case("teardown.half-close")
@pytest.mark.requires("app")
def test_passive_side_keeps_sending_after_fin(stack, peer, app):
    """The peer closes first; the SUT acknowledges the FIN and keeps sending, then closes."""
    listener, conn = _established(peer, app)
    fin = peer.send("FA")
    peer.expect("A", seq=peer.rcv_nxt, ack=fin.seq + 1, within=0.5, requirement="RFC9293/3.10.7.4",
                what="the FIN is acknowledged: ack = FIN + 1 (CLOSE-WAIT)")
    _state(stack, peer, "CLOSE-WAIT", "RFC9293/3.10.7.4", "ESTABLISHED and a FIN: CLOSE-WAIT")
    require(app.recv(conn) == b"", "RFC9293/MUST-12", "the application is told the peer closed its side",
            "end of stream", "data or an error")
    for chunk in (b"the other direction ", b"is still open"):
        app.send(conn, chunk)
        peer.expect("A", seq=peer.rcv_nxt, ack=fin.seq + 1, data=chunk, requirement="RFC9293/3.6.1",
                    what="a half-closed connection: the passive side keeps sending in CLOSE-WAIT")
        peer.send("A")
    _state(stack, peer, "CLOSE-WAIT", "RFC9293/3.10.7.4", "CLOSE-WAIT lasts until the application closes")
    app.close(conn)
    last = peer.expect("FA", seq=peer.rcv_nxt, ack=fin.seq + 1, requirement="RFC9293/3.6",
                       what="CLOSE in CLOSE-WAIT sends <SEQ=SND.NXT><CTL=FIN,ACK> (LAST-ACK)")
    _state(stack, peer, "LAST-ACK", "RFC9293/3.10.7.4", "CLOSE-WAIT and CLOSE: LAST-ACK")
    peer.send("A", ack=last.seq + 1)
    _gone(stack, peer, "RFC9293/3.10.7.4", "LAST-ACK and the ACK of its FIN: CLOSED")


# --- simultaneous close (RFC 9293 Figure 13) ------------------------------------------------

@pytest.mark.case("teardown.simultaneous-close")
@pytest.mark.requires("app")
def test_simultaneous_close_through_closing(stack, peer, app):
    """Both sides close at once: the FINs cross, FIN-WAIT-1 -> CLOSING -> TIME-WAIT."""
    listener, conn = _established(peer, app)
    app.close(conn)
    fin = peer.expect("FA", seq=peer.rcv_nxt, ack=peer.snd_nxt, requirement="RFC9293/3.6",
                      what="CLOSE: <SEQ=100><ACK=300><CTL=FIN,ACK> (FIN-WAIT-1)")
    _state(stack, peer, "FIN-WAIT-1", "RFC9293/3.6", "CLOSE in ESTABLISHED: FIN-WAIT-1")
    ours = peer.send("FA", ack=fin.seq)                   # sent before its FIN arrived: does not ACK it
    peer.expect("A", seq=fin.seq + 1, ack=ours.seq + 1, requirement="RFC9293/3.10.7.4",
                what="FIN-WAIT-1, a FIN that does not acknowledge ours: CLOSING, <SEQ=101><ACK=301><CTL=ACK>")
    _state(stack, peer, "CLOSING", "RFC9293/3.10.7.4", "FIN-WAIT-1 and a FIN, our FIN not acknowledged: CLOSING")
    peer.send("A", ack=fin.seq + 1)                       # our ACK of its FIN
    peer.expect_none(within=0.2, requirement="RFC9293/3.10.7.4", what="CLOSING -> TIME-WAIT sends nothing")
    _state(stack, peer, "TIME-WAIT", "RFC9293/3.10.7.4", "CLOSING and the ACK of its FIN: TIME-WAIT")


# --- a SYN for a TIME-WAIT 4-tuple (S20) -----------------------------------------------------

# Answers of time-wait.reopen that open a new incarnation: its ISS from the old
# connection (old SND.NXT + an offset), or from the ISN generator.
REOPENS = ("reopen", "reopen-isn-clock")

def _reopened(stack, peer, app, profile, tolerance, listener, old, fin, b) -> None:
    """The SUT's answer to the new SYN just sent, as its profile documents it
    (`old`: the SUT's SYN-ACK of the old connection)."""
    old_snd_nxt = fin.seq + 1
    if b["answer"] == "rst":                 # RFC 793's "SYN in the window": reset, TIME-WAIT deleted
        peer.expect("RA", seq=old_snd_nxt, requirement=b["rule"],
                    what=f"documented answer: <SEQ=SND.NXT><CTL=RST,ACK> ({b['note'][:80]})")
        _state(stack, peer, None, b["rule"], "documented: the reset deletes TIME-WAIT")
        return
    if b["answer"] not in REOPENS:
        peer.expect("A", seq=old_snd_nxt, requirement=b["rule"], what=f"documented answer: ACK ({b['note'][:80]})")
        return
    synack = peer.expect("SA", ack=peer.iss + 1, requirement=b["rule"],
                         what="the SYN reopens the TIME-WAIT 4-tuple: SYN-ACK")
    require(seq_diff(synack.seq, old_snd_nxt) > 0, "RFC9293/MAY-2",
            "condition (1): the new ISS is larger than any sequence number of the old connection",
            f"ISS > old SND.NXT {old_snd_nxt}", f"ISS {synack.seq} ({seq_diff(synack.seq, old_snd_nxt):+d})")
    if b["answer"] == "reopen":              # the new ISS follows from the old connection
        offset = profile.value("time_wait_isn_offset")
        require(synack.seq == (old_snd_nxt + offset) % MOD, b["rule"], "the documented new ISS",
                f"old SND.NXT + {offset} = {(old_snd_nxt + offset) % MOD}",
                f"{synack.seq} (old SND.NXT {seq_diff(synack.seq, old_snd_nxt):+d})")
    else:                                     # the ISN generator: same 4-tuple, so the old ISS plus the clock
        tick = profile.value("isn_clock_tick")
        elapsed, clock = synack.t - old.t, seq_diff(synack.seq, old.seq) * tick
        require(tolerance.within(elapsed, clock), b["rule"],
                f"the documented new ISS: the old ISS advanced by the ISN clock ({profile.doc('isn_clock_tick')[:60]}...)",
                f"{elapsed:.6f} s +- {tolerance.allowed(elapsed):.3f} s of clock since the old SYN-ACK",
                f"{clock:.6f} s of clock (ISS {seq_diff(synack.seq, old.seq):+d} from the old ISS)")
    peer.send("A")
    app.accept(listener)
    _state(stack, peer, "ESTABLISHED", b["rule"], "the new incarnation is established")


@pytest.mark.case("teardown.time-wait-syn.without-timestamps")
@pytest.mark.requires("app")
def test_syn_above_rcv_nxt_reopens_time_wait(stack, peer, app, profile, tolerance):
    """No timestamps: a SYN with SEG.SEQ above RCV.NXT reaches TIME-WAIT."""
    b = profile.behaviour("time-wait.reopen")
    listener, synack, fin = _time_wait(stack, peer, app, timestamps=False)
    _incarnation(peer, peer.snd_nxt + 100000)             # above the old RCV.NXT
    peer.send("S")
    _reopened(stack, peer, app, profile, tolerance, listener, synack, fin, b)
    profile.conclude(b)


@pytest.mark.case("teardown.time-wait-syn.without-timestamps")
@pytest.mark.requires("app")
@pytest.mark.parametrize("offset", [pytest.param(0, id="seq-at-rcv-nxt"), pytest.param(-100000, id="seq-below")])
def test_old_syn_does_not_reopen_time_wait(stack, peer, app, profile, offset):
    """No timestamps: a SYN with SEG.SEQ at or below RCV.NXT is an old duplicate."""
    b = profile.behaviour("time-wait.old-syn")
    listener, synack, fin = _time_wait(stack, peer, app, timestamps=False)
    rcv_nxt = peer.snd_nxt
    peer.send("S", seq=rcv_nxt + offset, options=[("MSS", 1460)])
    _old_syn_answered(peer, fin.seq + 1, rcv_nxt, b)
    _state(stack, peer, "TIME-WAIT", "RFC9293/3.10.7.4", "the old SYN leaves TIME-WAIT as it was")
    profile.conclude(b)


@pytest.mark.case("teardown.time-wait-syn.with-timestamps")
@pytest.mark.requires("app")
def test_syn_with_newer_timestamp_reopens_time_wait(stack, peer, app, profile, tolerance):
    """Timestamps: a SYN with a newer TSval reopens TIME-WAIT although SEG.SEQ is below RCV.NXT (RFC 6191)."""
    _needs_timestamps(stack, profile)
    b = profile.behaviour("time-wait.reopen")
    listener, synack, fin = _time_wait(stack, peer, app)
    require(peer.ts_on, "RFC7323/3.2", "the old connection used timestamps", "TSopt negotiated", "no TSopt")
    _incarnation(peer, peer.snd_nxt - 100000)             # below the old RCV.NXT
    peer.advance_ts_clock(1000)                           # newer than TS.Recent (our FIN's TSval)
    peer.send("S")
    _reopened(stack, peer, app, profile, tolerance, listener, synack, fin, b)
    profile.conclude(b)


@pytest.mark.case("teardown.time-wait-syn.with-timestamps")
@pytest.mark.requires("app")
def test_syn_with_older_timestamp_does_not_reopen(stack, peer, app, profile):
    """Timestamps: a SYN with an older TSval is an old duplicate, whatever its SEG.SEQ (PAWS)."""
    _needs_timestamps(stack, profile)
    listener, synack, fin = _time_wait(stack, peer, app)
    require(peer.ts_on, "RFC7323/3.2", "the old connection used timestamps", "TSopt negotiated", "no TSopt")
    rcv_nxt = peer.snd_nxt
    peer.send("S", seq=rcv_nxt + 100000, options=_syn_options(peer, peer.tsval() - 100000))
    peer.expect("A", seq=fin.seq + 1, ack=rcv_nxt, requirement="RFC9293/SHLD-4",
                what="TSval older than TS.Recent (RFC 6191, PAWS): the SYN does not reopen; "
                     "<SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK>")
    _state(stack, peer, "TIME-WAIT", "RFC9293/SHLD-4", "the old SYN leaves TIME-WAIT as it was")


@pytest.mark.case("teardown.time-wait-syn.old-duplicate")
@pytest.mark.requires("app")
def test_reopening_syn_that_was_an_old_duplicate(stack, peer, app, profile):
    """A SYN above RCV.NXT reopens TIME-WAIT, but it was an old duplicate: the peer resets the SYN-ACK."""
    reopen = profile.behaviour("time-wait.reopen")
    if reopen["answer"] not in REOPENS:
        pytest.skip(f"stack {stack.name} does not reopen TIME-WAIT for a SYN above RCV.NXT (MAY-2, optional): "
                    f"{reopen['note']}")
    b = profile.behaviour("time-wait.reopen-old-duplicate")
    listener, synack, fin = _time_wait(stack, peer, app, timestamps=False)
    our_fin = peer.snd_nxt - 1
    syn = peer.send("S", seq=peer.snd_nxt + 100000, options=[("MSS", 1460)])
    synack = peer.expect("SA", ack=syn.seq + 1, requirement="RFC9293/MAY-2",
                         what="SEG.SEQ above RCV.NXT: the SYN is taken as a new incarnation")
    peer.send("R", seq=synack.ack)             # our side knows no such SYN: <SEQ=SEG.ACK><CTL=RST>
    peer.send("FA", seq=our_fin, ack=fin.seq + 1)          # the old connection's FIN, retransmitted
    if b["answer"] == "time-wait":
        peer.expect("A", seq=fin.seq + 1, ack=our_fin + 1, requirement=b["rule"],
                    what="condition (2): back in TIME-WAIT, the old FIN is acknowledged")
    else:
        peer.expect("R", seq=fin.seq + 1, requirement=b["rule"],
                    what="documented: the 4-tuple is CLOSED, the old FIN draws <SEQ=SEG.ACK><CTL=RST>")
        _state(stack, peer, None, b["rule"], "no TIME-WAIT socket is left")
    profile.conclude(b)


@pytest.mark.case("teardown.time-wait-old-segments")
@pytest.mark.requires("app")
def test_old_duplicates_do_not_disturb_time_wait(stack, peer, app, profile):
    """Old duplicates of the connection's segments reach TIME-WAIT: each is answered, nothing changes."""
    b = profile.behaviour("time-wait.old-syn")
    data = b"once upon a time"
    listener, synack, fin = _time_wait(stack, peer, app, timestamps=False, data=data)
    snd_nxt, rcv_nxt = fin.seq + 1, peer.snd_nxt
    peer.send("PA", seq=peer.iss + 1, ack=fin.seq, data=data)
    peer.expect("A", seq=snd_nxt, ack=rcv_nxt, requirement="RFC9293/3.10.7.4",
                what="an old duplicate data segment in TIME-WAIT: <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK>")
    _state(stack, peer, "TIME-WAIT", "RFC9293/3.10.7.4", "the old duplicate data segment changes nothing")
    peer.send("S", seq=peer.iss, options=[("MSS", 1460)])
    _old_syn_answered(peer, snd_nxt, rcv_nxt, b)
    _state(stack, peer, "TIME-WAIT", "RFC9293/3.10.7.4", "the old duplicate SYN changes nothing")
    peer.send("FA", seq=rcv_nxt - 1, ack=snd_nxt)          # our FIN again: the same numbers as before
    peer.expect("A", seq=snd_nxt, ack=rcv_nxt, requirement="RFC9293/3.10.7.4",
                what="TIME-WAIT still acknowledges the retransmitted FIN with the old numbers")
    profile.conclude(b)


# --- the orphaned FIN-WAIT-2 timeout (S21) --------------------------------------------------

@pytest.mark.case("teardown.fin-wait-2-timeout")
@pytest.mark.requires("app")
@pytest.mark.parametrize("how", ["sysctl-1s", "linger2-1s", "rto-floor",
                                 pytest.param("default", marks=pytest.mark.slow)])
def test_orphaned_fin_wait_2_times_out(stack, peer, app, profile, tolerance, observed, how):
    """The application closes, the peer ACKs the FIN and never sends its own.
    Where the profile documents an RTO floor (Linux: 3.5 RTO), the timeout
    expected is the larger of the tunable and the floor times the RTO that
    the SUT reports (TCP_INFO) just before the close; `rto-floor` raises
    rto_min so that the floor is what ends FIN-WAIT-2."""
    if profile.value("invalid_ratelimit") != 0:
        profile.set("invalid_ratelimit", 0)               # every probe is answered (see the profile)
    b = profile.behaviour("fin-wait-2.orphan-timeout")
    if b["answer"] == "idle":
        pytest.skip(f"stack {stack.name} ends FIN-WAIT-2 only after an idle time that every segment restarts, "
                    f"so the case's probes would keep it: {b['note']}")
    observed["tcp_fin_timeout"] = profile.value(b["answer"])      # the seed note says 60 s
    floor = profile.value("fin_wait_2_rto_floor")
    if how == "rto-floor":
        if not floor:
            pytest.skip(f"{profile.profile.source}: FIN-WAIT-2 has no RTO floor on {stack.name}")
        profile.set("rto_min", 400_000)                   # RTO = 0.4 s + RTT: 3.5 RTO = 1.4 s
    if how in ("sysctl-1s", "rto-floor"):
        profile.set("fin_timeout", 1)
    expected = profile.value(b["answer"])
    listener, conn = _established(peer, app)
    app.close(listener)                                   # the 4-tuple ends CLOSED, not LISTEN
    if how == "linger2-1s":
        app.setsockopt(conn, "TCP_LINGER2", 1)
        expected = 1
    why = f"{expected:g} s ({profile.doc(b['answer'])[:50]}...)"
    if floor:
        info = app.tcp_info(conn)
        if info is None:
            pytest.fail(f"{profile.profile.source} documents an RTO floor, but stack {stack.name} reports no "
                        f"RTO (TCP_INFO) to compute it from")
        rto = info["rto"] / 1e6
        observed["rto_at_close"] = rto
        if floor * rto > expected:
            why = f"{floor * rto:.3f} s = {floor:g} RTO of {rto:.3f} s, above the tunable's {expected:g} s (tcp_fin_time)"
            expected = floor * rto
        if how == "rto-floor":
            assert floor * rto > 1 + tolerance.allowed(1), f"rto_min 400 ms gave an RTO of {rto:.3f} s only"
    app.close(conn)                                       # orphaned: no user call can follow
    fin = peer.expect("FA", seq=peer.rcv_nxt, ack=peer.snd_nxt, requirement="RFC9293/3.6",
                      what="CLOSE sends a FIN (FIN-WAIT-1)")
    acked = peer.send("A")
    _state(stack, peer, "FIN-WAIT-2", "RFC9293/3.10.7.4", "FIN-WAIT-1 and the ACK of its FIN: FIN-WAIT-2")
    what = f"FIN-WAIT-2 ends after the ACK of the FIN: {why}"
    alive, probe = peer.probe_while(lambda: peer.send("A", seq=peer.snd_nxt - 1), "A", seq=fin.seq + 1,
                                    ack=peer.snd_nxt, start=acked.t, expected=expected, tolerance=tolerance,
                                    requirement=b["rule"], what=what)
    observed["fin_wait_2_still_there_at"] = round(alive, 3)
    rst = peer.expect("R", seq=probe.ack, within=tolerance.allowed(expected) / 4, requirement="RFC9293/3.10.7.1",
                      what="the orphaned FIN-WAIT-2 timed out: CLOSED answers <SEQ=SEG.ACK><CTL=RST>; "
                           "until then an old ACK draws <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK>")
    observed["fin_wait_2_lasted"] = round(rst.t - acked.t, 3)
    require_expiry(alive, rst.t - acked.t, expected, tolerance, b["rule"], what)
    _state(stack, peer, None, b["rule"], "the connection is deleted")
    profile.conclude(b)
