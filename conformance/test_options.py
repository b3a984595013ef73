"""Options of the handshake, both ways (RFC 9293 §3.2 and §3.7.1, RFC 7323, RFC 2018).

What the stack puts on its own SYN, what its SYN-ACK answers to what a SYN
offers, and how it reads a window scale shift above 14. Which of window
scale, SACK-permitted and timestamps the stack offers at all comes from its
profile (Linux: tcp_window_scaling, tcp_sack, tcp_timestamps, read from the
SUT); the RFCs say when each may appear.
"""
import pytest

from harness.segment import options_text, seq_diff
from harness.verdict import require

MAX_SHIFT = 14                     # RFC 7323 §2.3
# Length of each option kind the handshake uses (RFC 9293 §3.2, RFC 7323, RFC 2018).
OPTION_LENGTH = {2: 4, 3: 3, 4: 2, 8: 10}
NAMES = {"WScale": "window scale", "SAckOK": "SACK-permitted", "Timestamp": "timestamps"}
# The optional SYN options: the profile value that switches each on, and its rule.
SWITCHES = {"WScale": ("window_scaling", "RFC7323/2.2"), "SAckOK": ("sack", "RFC2018/2"),
            "Timestamp": ("timestamps", "RFC7323/3.2")}
# A SYN offering everything, as current Linux and BSD clients do.
FULL = (("MSS", 1460), ("SAckOK", b""), ("Timestamp", (0, 0)), ("NOP", None), ("WScale", 7))


def _layout(seg) -> list:
    """Problems with the raw option bytes of `seg`: every option but EOL and
    NOP has a length byte that fits the header and matches its kind's
    format (MUST-68), and only zero padding follows EOL (MUST-69)."""
    tcp = bytes(seg.tcp)
    opts = tcp[20:seg.tcp.dataofs * 4]
    problems, i = [], 0
    while i < len(opts):
        kind = opts[i]
        if kind == 0:
            if any(opts[i + 1:]):
                problems.append(f"non-zero padding after EOL at option offset {i}")
            break
        if kind == 1:
            i += 1
            continue
        if i + 1 >= len(opts) or opts[i + 1] < 2 or i + opts[i + 1] > len(opts):
            problems.append(f"option kind {kind} at offset {i} has no valid length byte")
            break
        if kind in OPTION_LENGTH and opts[i + 1] != OPTION_LENGTH[kind]:
            problems.append(f"option kind {kind} has length {opts[i + 1]}, its format says {OPTION_LENGTH[kind]}")
        i += opts[i + 1]
    return problems


def _mss_bound(stack, profile) -> int:
    """MMS_R - 20: the largest MSS the SUT may advertise on its link (MUST-67)."""
    return stack.mtu - (20 if stack.family == "ipv4" else 40) - 20


def _enabled(profile) -> dict:
    """Which of the optional SYN options the stack is set to use."""
    return {name: profile.value(key) != 0 for name, (key, _) in SWITCHES.items()}


def _check_mss(peer, seg, bound: int) -> None:
    mss = seg.option("MSS")
    require(mss is not None, "RFC9293/SHLD-5",
            "a SYN whose receive MSS differs from the default (536 / 1220) carries the MSS option",
            f"mss <= {bound}", peer.describe(seg))
    require(mss <= bound, "RFC9293/MUST-67", "the advertised MSS is at most MMS_R - 20 for the link",
            f"mss <= {bound}", f"mss {mss}")


def _check_shift(peer, seg) -> None:
    shift = seg.option("WScale")
    if shift is not None:
        require(shift <= MAX_SHIFT, "RFC7323/2.3", "a window scale shift is at most 14",
                f"wscale <= {MAX_SHIFT}", f"wscale {shift}")


@pytest.mark.case("options.syn")
@pytest.mark.requires("app")
def test_options_of_the_stacks_syn(stack, peer, app, profile, observed):
    """The stack's own SYN on an active open carries MSS, window scale, SACK-permitted and timestamps."""
    app.connect(peer.addr, peer.port, bind_port=peer.sut_port)
    syn = peer.expect("S", requirement="RFC9293/3.10.1", what="the SUT's active open sends a SYN")
    observed["syn_options"] = options_text(syn)
    problems = _layout(syn)
    require(not problems, "RFC9293/MUST-68", "every option but EOL and NOP has a length byte matching its format",
            "well-formed options", "; ".join(problems))
    _check_mss(peer, syn, _mss_bound(stack, profile))
    for name, on in _enabled(profile).items():
        key, rule = SWITCHES[name]
        require(syn.has_option(name) == on, rule,
                f"the SYN {'offers' if on else 'does not offer'} {NAMES[name]} as the stack is set ({profile.doc(key)})",
                f"{NAMES[name]} {'present' if on else 'absent'}", f"{peer.describe(syn)} options {options_text(syn)}")
    _check_shift(peer, syn)
    ts = syn.option("Timestamp")
    if ts is not None:
        require(ts[1] == 0, "RFC7323/3.2", "TSecr is zero on a segment without ACK (the SYN)",
                "TS ecr 0", f"TS val {ts[0]} ecr {ts[1]}")


OFFERS = {
    "all": FULL,
    "none": (),
    "wscale-only": (("NOP", None), ("WScale", 7)),
    "timestamps-only": (("NOP", None), ("NOP", None), ("Timestamp", (0, 0))),
    "sack-only": (("NOP", None), ("NOP", None), ("SAckOK", b"")),
}


@pytest.mark.case("options.synack-echo")
@pytest.mark.requires("app")
@pytest.mark.parametrize("offer", list(OFFERS))
def test_synack_answers_the_options_offered(stack, peer, app, profile, observed, offer):
    """A SYN offering some options: the SYN-ACK acknowledges it and answers only what was offered."""
    app.listen(peer.sut_port)
    peer.syn_options = list(OFFERS[offer])
    syn = peer.send("S")
    synack = peer.expect("SA", ack=peer.iss + 1, requirement="RFC9293/3.10.7.2",
                         what="LISTEN: a SYN draws <SEQ=ISS><ACK=SEG.SEQ+1><CTL=SYN,ACK>")
    observed["synack_options"] = options_text(synack)
    if "state" in stack.capabilities:
        state = stack.state_of(peer.sut_port, peer.port)
        require(state == "SYN-RECEIVED", "RFC9293/3.10.7.2", "after its SYN-ACK the server is in SYN-RECEIVED",
                "SYN-RECEIVED", state)
    problems = _layout(synack)
    require(not problems, "RFC9293/MUST-68", "every option but EOL and NOP has a length byte matching its format",
            "well-formed options", "; ".join(problems))
    _check_mss(peer, synack, _mss_bound(stack, profile))
    enabled = _enabled(profile)
    offered = {n for n, _ in syn.options}
    for name, rule in (("WScale", "RFC7323/2.2"), ("Timestamp", "RFC7323/3.2")):
        want = name in offered and enabled[name]
        require(synack.has_option(name) == want, rule,
                f"a SYN-ACK carries {NAMES[name]} only if the SYN did (and the stack uses it): "
                f"offered {'yes' if name in offered else 'no'}",
                f"{NAMES[name]} {'present' if want else 'absent'}", f"{peer.describe(synack)} options {options_text(synack)}")
    if "SAckOK" in offered:
        b, rule, want, why = None, "RFC2018/2", enabled["SAckOK"], "answers the SYN's, as the stack is set"
    else:
        b = profile.behaviour("synack.unsolicited-sack-permitted")
        rule, want, why = b["rule"], enabled["SAckOK"] and b["answer"] == "sent", f"without the SYN's: {b['note']}"
    require(synack.has_option("SAckOK") == want, rule, f"SACK-permitted on the SYN-ACK {why}",
            f"SACK-permitted {'present' if want else 'absent'}", f"{peer.describe(synack)} options {options_text(synack)}")
    _check_shift(peer, synack)
    ts = synack.option("Timestamp")
    if ts is not None:
        require(ts[1] == syn.option("Timestamp")[0], "RFC7323/3.2",
                "the SYN-ACK's TSecr echoes the TSval of the SYN it acknowledges",
                f"TS ecr {syn.option('Timestamp')[0]}", f"TS val {ts[0]} ecr {ts[1]}")
    if b is not None:
        profile.conclude(b)


# The SUT's data is acknowledged burst by burst: as soon as no segment
# follows within BURST_GAP, one ACK of all of it, with the same window field.
# Nothing may look like a loss to the SUT, so that its congestion window
# grows round after round (how fast is its congestion control's business:
# the transfer is long enough for any) until the send window alone stops it:
# the prompt ACKs come long before any RTO, and the SYN offers no
# SACK-permitted, because a tail loss probe (RFC 8985 §7, SACK-based) fires
# 2 SRTT after a flight, sooner than a tester can answer on a busy machine,
# and a probe acknowledged without D-SACK counts as a loss. A slow SUT may
# still lose an ACK on its way in (user-mode Linux under load): it then
# retransmits data we have, which we acknowledge again, as any receiver does.
BURST_GAP = 0.002
DATA_WINDOWS = 16


@pytest.mark.case("options.wscale-clamp")
@pytest.mark.requires("app")
@pytest.mark.parametrize("shift", [15, 20])
def test_window_scale_above_14_is_used_as_14(stack, peer, app, profile, observed, shift):
    """The peer offers a window scale shift above 14 and advertises a window field of 1."""
    if profile.value("window_scaling") == 0:
        pytest.skip(f"stack {stack.name} lacks window scaling (RFC 7323, optional): {profile.doc('window_scaling')}")
    listener = app.listen(peer.sut_port)
    peer.syn_options = [("MSS", 1460), ("NOP", None), ("NOP", None), ("Timestamp", (0, 0)), ("NOP", None),
                        ("WScale", shift)]
    peer.send("S")
    synack = peer.expect("SA", ack=peer.iss + 1, requirement="RFC9293/3.10.7.2",
                         what="LISTEN: a SYN draws a SYN-ACK")
    require(synack.has_option("WScale"), "RFC7323/2.2", "the SUT answers the window scale option",
            "wscale on the SYN-ACK", f"options {options_text(synack)}")
    peer.window = 1                           # SND.WND = 1 << 14 = 16384 octets if clamped
    window = peer.window << MAX_SHIFT
    peer.send("A")
    conn = app.accept(listener)
    app.setsockopt(conn, "SO_SNDBUF", 1 << 20)
    end = peer.rcv_nxt + app.send(conn, bytes(DATA_WINDOWS * window), timeout=0.5)
    # Every segment must end within the window of the latest ACK sent (the
    # SUT may not have seen it yet, so this bound is generous); the widest
    # reach beyond an ACK shows how much window the SUT used.
    acked, widest, smss, acks, again = peer.rcv_nxt, 0, 0, 0, 0
    while seq_diff(end, peer.rcv_nxt) > 0:
        pending, had = peer.rcv_nxt != acked, peer.rcv_nxt
        seg = peer.next_segment(within=BURST_GAP if pending else 1.5)
        if seg is None:
            require(pending, "RFC7323/2.3", "the SUT sends its data as the window of 1 << 14 octets opens",
                    f"data up to {peer.rel_sut(end)}", f"nothing for 1.5 s after the ACK of {peer.rel_sut(acked)}")
            peer.send("A")
            acked, acks = peer.rcv_nxt, acks + 1
            continue
        if not seg.payload:
            continue
        if seq_diff(seg.end, had) <= 0:           # data we had, again: our ACK never reached the SUT
            peer.send("A")                        # an old segment draws <SEQ=SND.NXT><ACK=RCV.NXT> (§3.10.7.4)
            acked, again = peer.rcv_nxt, again + 1
            continue
        smss = max(smss, len(seg.payload))
        reach = seq_diff(seg.end, acked)
        require(reach <= window, "RFC7323/2.3",
                f"a shift of {shift} is used as 14: the SUT sends no further than SEG.ACK + (1 << 14)",
                f"at most {window} octets beyond the ACK of {peer.rel_sut(acked)}",
                f"{peer.describe(seg)}, {reach} octets beyond it (a shift of {shift} would allow {1 << shift})")
        widest = max(widest, reach)
    observed["widest_flight"] = widest
    observed["acks"] = acks
    observed["acks_again_for_retransmissions"] = again
    require(widest > window - smss, "RFC7323/2.3",
            "with its congestion window grown the SUT fills the window of 1 << 14 octets to within one segment "
            "(a smaller shift would stop it earlier)", f"more than {window} - {smss} octets beyond an ACK",
            f"at most {widest} octets in {acks} rounds")
