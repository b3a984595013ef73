"""Reading the options of incoming segments (RFC 9293 §3.1, §3.2).

The peer puts options where a careless parser trips: EOL and NOP around an
MSS, options on data segments, kinds the stack does not know (skipped by
their length), options off the 32-bit grid, and lengths that are illegal
(0, 1, past the header). Where an option must take effect the case reads
the effect from the wire: the MSS the peer offered bounds the SUT's data.
"""
import pytest
from scapy.layers.inet import TCP
from scapy.packet import Raw

from harness.flow import another, deliver, established, receive
from harness.segment import seq_add
from harness.verdict import require

MSS = 700                       # what the peer offers: below every link's, so its effect is seen
WRONG_MSS = 100                 # what a parser that misread the options would take
DATA = bytes(range(256)) * 12   # 3072 octets: several segments of MSS


def _sut_sends(peer, app, conn, requirement: str, what: str, data: bytes = DATA) -> list:
    """The SUT's application sends `data`; the segments that carried it."""
    app.send(conn, data)
    return receive(peer, len(data), requirement, what)


def _honours(segs, mss: int, requirement: str, what: str) -> None:
    sizes = [len(s.payload) for s in segs]
    require(max(sizes) <= mss, requirement, f"{what}: no segment carries more than MSS {mss}",
            f"payloads <= {mss}", f"payloads {sizes}")
    require(max(sizes) > WRONG_MSS, requirement, f"{what}: the MSS the SUT uses is {mss}, not {WRONG_MSS}",
            f"payloads up to {mss}", f"payloads {sizes}")


def send_raw_options(peer, flags: str, raw: bytes, data: bytes = b"", seq=None):
    """Send a segment whose option bytes end with `raw` exactly as given
    (after the timestamp option, when one is in use): a length byte that is
    illegal can only be written by hand. The header length covers `raw`
    rounded up to 4 octets (zero padding)."""
    pkt = peer.packet(flags, seq=seq, data=b"", options=[] if "S" not in flags else None)
    tcp = pkt[TCP]
    ours = bytes(TCP(options=tcp.options))[20:]
    opts = ours + raw
    opts += bytes(-len(opts) % 4)
    tcp.options = []
    tcp.dataofs = 5 + len(opts) // 4
    tcp.remove_payload()
    tcp.add_payload(Raw(opts + data))
    seg = peer.link.send(bytes(pkt))
    if seq is None:
        peer.snd_nxt = seq_add(tcp.seq, len(data) + ("S" in flags) + ("F" in flags))
    return seg


# --- MUST-4: EOL, NOP and MSS --------------------------------------------------------------

SYN_LAYOUTS = {
    # tcpreq's OptionSupportTest: nothing but the kinds every TCP must know
    "nop-nop-eol": ([("NOP", None), ("NOP", None), ("EOL", None)], None),
    "mss-nop-eol": ([("MSS", MSS), ("NOP", None), ("EOL", None)], MSS),
    # after EOL the header holds padding only: an MSS written there is not an option
    "mss-after-eol": ([("MSS", MSS), ("EOL", None), ("MSS", WRONG_MSS)], MSS),
}


@pytest.mark.case("options.mandatory-kinds")
@pytest.mark.requires("app")
@pytest.mark.parametrize("layout", list(SYN_LAYOUTS))
def test_syn_with_eol_nop_and_mss(stack, peer, app, layout):
    """A SYN whose options are EOL, NOP and MSS opens a connection, and the MSS takes effect."""
    options, mss = SYN_LAYOUTS[layout]
    listener = app.listen(peer.sut_port)
    peer.syn_options = options
    peer.send("S")
    peer.expect("SA", ack=peer.iss + 1, requirement="RFC9293/MUST-4",
                what="a SYN with EOL, NOP and MSS options is answered with a SYN-ACK")
    peer.send("A")
    conn = app.accept(listener)
    if mss is not None:
        segs = _sut_sends(peer, app, conn, "RFC9293/MUST-4", "the SUT sends its data")
        _honours(segs, mss, "RFC9293/MUST-4", "the MSS before EOL is read, what follows EOL is padding")


# --- MUST-5: options on any segment --------------------------------------------------------

ON_DATA = {
    "nop-eol": [("NOP", None), ("NOP", None), ("EOL", None)],
    "sack-block": [("NOP", None), ("NOP", None), ("SAck", (1000, 2000))],
    "unknown-kind": [(158, b"\x00\x00")],
}


@pytest.mark.case("options.any-segment")
@pytest.mark.requires("app")
@pytest.mark.parametrize("options", list(ON_DATA))
def test_options_on_data_segments(stack, peer, app, options):
    """Data segments that carry options are accepted like any other."""
    listener, conn = established(peer, app)
    data = b"options travel on data segments too"
    opts = ON_DATA[options]
    if options == "sack-block":          # a SACK block about data the SUT never sent: meaningless, harmless
        opts = [("NOP", None), ("NOP", None), ("SAck", (seq_add(peer.rcv_nxt, 1000), seq_add(peer.rcv_nxt, 2000)))]
    peer.send("PA", data=data, options=opts)
    peer.expect("A", seq=peer.rcv_nxt, ack=peer.snd_nxt, requirement="RFC9293/MUST-5",
                what="a data segment with options is acknowledged (options are allowed on any segment)")
    got = app.recv_exactly(conn, len(data))
    require(got == data, "RFC9293/MUST-5", "the application reads the data of a segment with options",
            repr(data), repr(got))


# --- MUST-6: unknown kinds are skipped by their length ------------------------------------

UNKNOWN = {
    "kind-158": (158, b"\xa5\xa5"),                      # tcpreq's UnknownOptionTest
    "experimental-253": (253, b"\x12\x34\xde\xad"),      # RFC 6994 experiment with an ExID nobody uses
    "long-kind-99": (99, bytes(14)),                     # 16 octets of an unassigned kind
}


@pytest.mark.case("options.unknown-kind")
@pytest.mark.requires("app")
@pytest.mark.parametrize("kind", list(UNKNOWN))
def test_unknown_option_is_skipped(stack, peer, app, kind):
    """An option of a kind the stack does not know is skipped by its length, on a SYN and on data."""
    listener = app.listen(peer.sut_port)
    peer.syn_options = [UNKNOWN[kind], ("MSS", MSS), ("NOP", None), ("NOP", None), ("EOL", None)]
    peer.send("S")
    peer.expect("SA", ack=peer.iss + 1, requirement="RFC9293/MUST-6",
                what="a SYN with an unknown option (before its MSS) is answered with a SYN-ACK")
    peer.send("A")
    conn = app.accept(listener)
    data = b"an unknown option before this data"
    peer.send("PA", data=data, options=[UNKNOWN[kind]])
    peer.expect("A", seq=peer.rcv_nxt, ack=peer.snd_nxt, requirement="RFC9293/MUST-6",
                what="a data segment with an unknown option is acknowledged")
    require(app.recv_exactly(conn, len(data)) == data, "RFC9293/MUST-6",
            "the application reads the data of a segment with an unknown option", repr(data), "other data")
    segs = _sut_sends(peer, app, conn, "RFC9293/MUST-6", "the SUT sends its data")
    _honours(segs, MSS, "RFC9293/MUST-6", "the unknown option was skipped by its length to reach the MSS")


# --- MUST-7: illegal lengths --------------------------------------------------------------

ILLEGAL = {
    "length-0": b"\x02\x00\x02\xf1",              # tcpreq's IllegalLengthOptionTest: MSS of length 0
    "length-1": b"\x02\x01\x02\xf1",
    "past-header": b"\x02\x04\x02\xbc\x1e\x28\xaa\xaa",    # MSS 700, then kind 30 claiming 40 octets
}


def _alive(stack, peer, rng, requirement: str) -> None:
    """The stack still works: a new connection on another port opens."""
    fresh = another(stack, peer, peer.port + 1 if peer.port < 60999 else peer.port - 1, rng)
    fresh.send("S")
    fresh.expect("SA", ack=fresh.iss + 1, requirement=requirement,
                 what="after the illegal option the stack is alive: a new SYN draws a SYN-ACK")
    fresh.send("R", seq=fresh.iss + 1)


def _any_answer(peer, flags: str, requirement: str) -> None:
    """Whatever the SUT answered to the malformed segment is allowed (ACK,
    SYN-ACK, RST or silence): read past it."""
    peer.next_segment(within=0.2)


@pytest.mark.case("options.illegal-length")
@pytest.mark.requires("app")
@pytest.mark.parametrize("illegal", list(ILLEGAL))
def test_illegal_option_length_on_syn(stack, peer, app, rng, illegal):
    """A SYN with an option of illegal length: any answer, but no crash."""
    app.listen(peer.sut_port)
    peer.syn_options = []
    send_raw_options(peer, "S", ILLEGAL[illegal])
    _any_answer(peer, "S", "RFC9293/MUST-7")
    _alive(stack, peer, rng, "RFC9293/MUST-7")


@pytest.mark.case("options.illegal-length")
@pytest.mark.requires("app")
@pytest.mark.parametrize("illegal", list(ILLEGAL))
def test_illegal_option_length_on_data(stack, peer, app, rng, illegal):
    """A data segment with an option of illegal length: any answer, no crash, and the connection goes on or is reset."""
    listener, conn = established(peer, app)
    send_raw_options(peer, "PA", ILLEGAL[illegal], data=b"malformed")
    answer = peer.next_segment(within=0.3)
    if answer is None or not answer.rst:
        # processed or dropped: the connection still carries data
        if answer is None or answer.ack != peer.snd_nxt:
            peer.snd_nxt = peer.snd_una      # dropped: send the data again, well-formed
        deliver(peer, b"well-formed", "RFC9293/MUST-7",
                "after a segment with an illegal option length the connection still carries data")
    _alive(stack, peer, rng, "RFC9293/MUST-7")


# --- MUST-64: options off the 32-bit grid ---------------------------------------------------

UNALIGNED = {
    # MSS at offset 1, window scale at 5, SACK-permitted at 8, timestamps at 10
    "mss-at-offset-1": [("NOP", None), ("MSS", MSS), ("WScale", 7), ("SAckOK", b""), ("Timestamp", (0, 0))],
    # everything packed, the MSS last at offset 15
    "mss-last": [("WScale", 7), ("SAckOK", b""), ("Timestamp", (0, 0)), ("MSS", MSS)],
}


@pytest.mark.case("options.unaligned")
@pytest.mark.requires("app")
@pytest.mark.parametrize("layout", list(UNALIGNED))
def test_options_at_odd_offsets(stack, peer, app, profile, layout):
    """Options that do not start on a 32-bit boundary take effect: MSS bounds the data, timestamps are echoed."""
    listener = app.listen(peer.sut_port)
    peer.syn_options = UNALIGNED[layout]
    syn = peer.send("S")
    synack = peer.expect("SA", ack=peer.iss + 1, requirement="RFC9293/MUST-64",
                         what="a SYN with unaligned options is answered with a SYN-ACK")
    if profile.value("timestamps") != 0:
        ts = synack.option("Timestamp")
        require(ts is not None and ts[1] == syn.option("Timestamp")[0], "RFC9293/MUST-64",
                "the timestamp option at an odd offset was read: the SYN-ACK echoes its TSval",
                f"TS ecr {syn.option('Timestamp')[0]}", f"TS {ts}")
    peer.send("A")
    conn = app.accept(listener)
    segs = _sut_sends(peer, app, conn, "RFC9293/MUST-64", "the SUT sends its data")
    _honours(segs, MSS - (12 if peer.ts_on else 0), "RFC9293/MUST-64", "the MSS at an odd offset was read")
