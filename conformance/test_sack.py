"""RFC 2018 (SACK) and RFC 2883 (D-SACK), the SUT as receiver and as sender.

Our SYN offers SACK-permitted, an MSS of 1000 and no timestamps (so four
SACK blocks fit in an ACK). A stack that does not use SACK (profile value
`sack` = 0) skips these cases: SACK is optional. As receiver the SUT reports
what it holds beyond RCV.NXT; as sender it repairs only what our SACK
blocks say is missing.
"""
import pytest

from harness.agent import AppError
from harness.segment import seq_add, seq_diff
from harness.verdict import require

SMSS = 1000
SYN = [("MSS", SMSS), ("NOP", None), ("WScale", 7), ("SAckOK", b"")]


def _connect(peer, app, profile):
    if profile.value("sack") == 0:
        pytest.skip(f"the stack does not use SACK ({profile.doc('sack')[:80]})")
    peer.syn_options = list(SYN)
    listener = app.listen(peer.sut_port)
    peer.connect()
    require(peer.sack_ok, "RFC2018/2", "the SYN-ACK answers SACK-permitted", "sackOK", "none")
    return app.accept(listener)


def _blocks(seg) -> list:
    """The SACK blocks of an ACK as (left, right) pairs, in their order."""
    v = seg.option("SAck") or ()
    return [(v[i], v[i + 1]) for i in range(0, len(v) - 1, 2)]


def _rel(peer, blocks) -> str:
    return " ".join(f"{{{peer.rel_peer(l)}:{peer.rel_peer(r)}}}" for l, r in blocks) or "none"


@pytest.mark.case("rfc2018.receiver-blocks")
@pytest.mark.requires("app")
def test_sack_blocks_report_out_of_order_data(stack, peer, app, profile, observed):
    """Out-of-order data is reported in SACK blocks, the block of the latest segment first."""
    conn = _connect(peer, app, profile)
    base = peer.snd_nxt
    hole = base                                   # the first 200 octets come last
    held = []                                     # (left, right) we have sent beyond the hole, latest first
    for n, offset in enumerate((200, 400, 600, 300, 500)):  # the fourth and fifth join the blocks into one
        left = seq_add(base, offset)
        peer.send("A", seq=left, data=bytes([65 + n]) * 100)
        held.insert(0, (left, seq_add(left, 100)))
        ack = peer.expect("A", ack=hole, what="out-of-order data draws an immediate duplicate ACK (RFC 5681 §4.2)")
        blocks = _blocks(ack)
        # what the SUT holds: merge the ranges we sent
        ranges = sorted(held, key=lambda r: seq_diff(r[0], base))
        merged = []
        for l, r in ranges:
            if merged and seq_diff(l, merged[-1][1]) <= 0:
                merged[-1] = (merged[-1][0], r if seq_diff(r, merged[-1][1]) > 0 else merged[-1][1])
            else:
                merged.append((l, r))
        latest = held[0]
        require(blocks and seq_diff(blocks[0][0], latest[0]) <= 0 and seq_diff(blocks[0][1], latest[1]) >= 0,
                "RFC2018/4", "the first SACK block covers the segment that arrived last",
                f"first block around {_rel(peer, [latest])}", f"blocks {_rel(peer, blocks)}")
        require(all(b in merged for b in blocks), "RFC2018/4",
                "every SACK block is a whole contiguous range of data held beyond RCV.NXT",
                f"blocks among {_rel(peer, merged)}", f"blocks {_rel(peer, blocks)}")
        require(len(blocks) == min(len(merged), 4), "RFC2018/4",
                "as many distinct blocks as are held and fit (four without timestamps)",
                f"{min(len(merged), 4)} blocks", f"blocks {_rel(peer, blocks)}")
    # Fill the hole: everything is acknowledged, no SACK block remains.
    peer.send("A", seq=hole, data=b"_" * 200)
    ack = peer.expect("A", ack=seq_add(base, 700), what="the hole filled: all data is acknowledged")
    require(not _blocks(ack), "RFC2018/4", "no block once nothing is held beyond RCV.NXT", "no SACK option",
            f"blocks {_rel(peer, _blocks(ack))}")
    got = app.recv_exactly(conn, 700)
    want = b"_" * 200 + b"A" * 100 + b"D" * 100 + b"B" * 100 + b"E" * 100 + b"C" * 100
    require(got == want, "RFC2018/4", "the data reaches the application in order", "700 octets in order", got[:40])


@pytest.mark.case("rfc2883.dsack")
@pytest.mark.requires("app")
def test_dsack_reports_duplicates(stack, peer, app, profile, observed):
    """A duplicate segment is reported in a D-SACK block, first; below RCV.NXT or inside a SACK block."""
    conn = _connect(peer, app, profile)
    b = profile.behaviour("sack.dsack")
    if b["answer"] != "dsack":
        pytest.skip(f"the stack documents no D-SACK: {b['note'][:100]}")
    first = peer.snd_nxt
    peer.send("A", data=b"a" * 100)
    peer.expect("A", ack=peer.snd_nxt, what="our data is acknowledged")
    peer.send("A", seq=first, data=b"a" * 100)       # the same segment again
    ack = peer.expect("A", ack=peer.snd_nxt, requirement="RFC2883/4",
                      what="a duplicate segment draws an ACK at once")
    blocks = _blocks(ack)
    require(blocks and blocks[0] == (first, seq_add(first, 100)), "RFC2883/4",
            "the duplicate is reported as the first block, a D-SACK below SEG.ACK (RFC 2883 §4 (1))",
            f"first block {_rel(peer, [(first, seq_add(first, 100))])}", f"blocks {_rel(peer, blocks)}")
    # A duplicate beyond a hole: D-SACK first, then the block that contains it (§4 (2)).
    hole = peer.snd_nxt
    left = seq_add(hole, 100)
    peer.send("A", seq=left, data=b"c" * 200)
    peer.expect("A", ack=hole, what="out-of-order data draws a duplicate ACK")
    peer.send("A", seq=left, data=b"c" * 100)
    ack = peer.expect("A", ack=hole, requirement="RFC2883/4", what="a duplicate out-of-order segment draws an ACK")
    blocks = _blocks(ack)
    want = [(left, seq_add(left, 100)), (left, seq_add(left, 200))]
    require(blocks[:2] == want, "RFC2883/4",
            "the duplicate first (D-SACK), then the SACK block that contains it (RFC 2883 §4 (2))",
            f"blocks {_rel(peer, want)}", f"blocks {_rel(peer, blocks)}")
    observed["dsack"] = _rel(peer, blocks)
    profile.conclude(b)


@pytest.mark.case("rfc2018.sender-holes")
@pytest.mark.requires("app")
def test_sender_retransmits_only_the_holes(stack, peer, app, profile, observed):
    """Segments 1 and 4 of a flight are lost: the SUT retransmits those two and nothing our SACK blocks cover."""
    profile.set_if_tunable("rto_min", 1_000_000)     # a busy tester still answers before the RTO
    conn = _connect(peer, app, profile)
    try:
        app.setsockopt(conn, "SO_SNDBUF", 1 << 20)
    except AppError as e:
        if e.error != "EOPNOTSUPP":
            raise
    app.send(conn, bytes(8 * SMSS), timeout=0.2)
    flight = [peer.expect("A", seq=peer.rcv_nxt, what=f"segment {n + 1} of the flight") for n in range(8)]
    una = flight[0].seq
    lost = [flight[0], flight[3]]
    sacked = [(flight[1].seq, flight[2].end), (flight[4].seq, flight[7].end)]
    holes = {(s.seq, s.end) for s in lost}
    peer.rcv_nxt = una
    # Three duplicate ACKs as the segments after each hole arrive, the latest block first.
    reports = [[(flight[1].seq, flight[2].end)],
               [(flight[4].seq, flight[5].end), sacked[0]],
               [sacked[1], sacked[0]]]
    repaired, others, sent = set(), [], []
    for blocks in reports:
        sent.append(peer.send("A", ack=una, options=[("NOP", None), ("NOP", None),
                                                     ("SAck", tuple(x for b in blocks for x in b))]))
    while len(repaired) < 2:
        seg = peer.next_segment(within=2.0)
        require(seg is not None, "RFC2018/8", "the SUT retransmits the two holes (fast recovery or its RTO)",
                "retransmissions of segments 1 and 4", f"only {len(repaired)}")
        if not seg.payload or seg.t < sent[0].t:  # sent before any SACK reached it (a tail loss probe)
            continue
        span = (seg.seq, seg.end)
        in_sacked = [b for b in sacked if seq_diff(seg.seq, b[0]) >= 0 and seq_diff(seg.end, b[1]) <= 0]
        require(not in_sacked, "RFC2018/8",
                "the sender retransmits no data the receiver reported in a SACK block",
                f"only holes {_rel(peer, sorted(holes))}", peer.describe(seg))
        if span in holes:
            repaired.add(span)
        else:
            others.append(seg)
    observed["retransmitted_holes"] = len(repaired)
    observed["new_segments_meanwhile"] = len(others)
    peer.send("A", ack=flight[-1].end)
