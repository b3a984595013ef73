"""The maximum segment size, both ways (RFC 9293 §3.7.1, RFC 6691).

The SUT announces its MSS on its SYNs and bounds its data by the MSS the
peer announced: the default (536 IPv4, 1220 IPv6) when there was none, less
the TCP options it puts on every segment (timestamps: 12 octets), and never
more than its link carries. An MSS option anywhere but on a SYN means
nothing, and the SUT never sends one there.
"""
import pytest

from harness.flow import established, receive, stale
from harness.verdict import require

DEFAULT_MSS = {"ipv4": 536, "ipv6": 1220}       # RFC 9293 §3.7.1 (MUST-15)
IP_HEADER = {"ipv4": 20, "ipv6": 40}
TCP_HEADER = 20
TS_OPTION = 12                                  # kind 8, length 10, and two NOPs (RFC 7323 Appendix A)
DATA = bytes(range(256)) * 24                   # 6144 octets: several full segments and a short one
# No SACK-permitted: the options on each of the SUT's data segments are then
# the timestamps or nothing (mss.full-segments has the case with SACK).
NO_TS = [("MSS", 1000), ("NOP", None), ("WScale", 7)]
WITH_TS = [("MSS", 1000), ("NOP", None), ("NOP", None), ("Timestamp", (0, 0)), ("NOP", None), ("WScale", 7)]
MAX_OPTIONS = 40                                # the data offset leaves 40 octets for options


def _sack_room(ts_on: bool) -> int:
    """Octets the largest SACK option takes beside the timestamps, aligned
    with NOPs: 4 blocks (36 octets) alone, 3 (28) beside timestamps."""
    left = MAX_OPTIONS - (TS_OPTION if ts_on else 0)
    blocks = min(4, (left - 2) // 8)
    size = 2 + 8 * blocks
    return size + (-size % 4)


# How many octets of a full segment a stack leaves for options beyond the
# ones the segment carries: per the profile's "mss.full-segments".
ROOM = {"exact": lambda peer: 0, "sack-room": lambda peer: _sack_room(peer.ts_on) if peer.sack_ok else 0}


def _open(peer, app, options, requirement: str):
    """The SUT accepts a connection whose SYN carried `options`: (conn, SYN-ACK)."""
    listener = app.listen(peer.sut_port)
    peer.syn_options = options
    peer.send("S")
    synack = peer.expect("SA", ack=peer.iss + 1, requirement=requirement,
                         what="a listening SUT answers the SYN with a SYN-ACK")
    peer.send("A")
    return app.accept(listener), synack


def _payloads(peer, app, conn, requirement: str, data: bytes = DATA) -> list[int]:
    app.send(conn, data)
    return [len(s.payload) for s in receive(peer, len(data), requirement, "the SUT sends its application's data")]


def _bounded(sizes: list[int], mss: int, requirement: str, what: str) -> None:
    """Every segment carries at most `mss` octets, and the full ones exactly
    that: the SUT uses the MSS it must, not a smaller one by mistake."""
    require(max(sizes) <= mss, requirement, f"{what}: no segment carries more than {mss} octets",
            f"payloads <= {mss}", f"payloads {sizes}")


# --- MUST-14, MAY-3: sending and receiving the MSS option ---------------------------------

@pytest.mark.case("mss.option-both-ways")
@pytest.mark.requires("app")
@pytest.mark.parametrize("mss", [700, 1200])
def test_received_mss_bounds_the_data(stack, peer, app, profile, observed, mss):
    """The SUT's SYN-ACK carries an MSS option and its data respects the one the peer sent."""
    b = profile.behaviour("mss.full-segments")
    conn, synack = _open(peer, app, [("MSS", mss), ("NOP", None), ("NOP", None), ("SAckOK", b"")],
                         "RFC9293/MUST-14")
    require(synack.has_option("MSS"), "RFC9293/MUST-14", "the SUT sends the MSS option on its SYN-ACK",
            "an MSS option", peer.describe(synack))
    sizes = _payloads(peer, app, conn, "RFC9293/MUST-14")
    observed["payloads"] = sizes
    _bounded(sizes, mss, "RFC9293/MUST-14", f"the peer's MSS of {mss}")
    full = mss - ROOM[b["answer"]](peer)
    require(max(sizes) == full, b["rule"],
            f"with {len(DATA)} octets queued the SUT fills its segments: the peer's MSS of {mss}"
            + (f" less {mss - full} octets, documented: {b['note']}" if full != mss else ""),
            f"full segments of {full}", f"payloads {sizes}")
    profile.conclude(b)


@pytest.mark.case("mss.always-sent")
@pytest.mark.requires("app")
def test_mss_option_on_synack_to_a_syn_without_one(stack, peer, app, profile, observed):
    """A SYN without options: the stack sends the MSS option on its SYN-ACK all the same, as its profile documents."""
    b = profile.behaviour("mss.always")
    listener = app.listen(peer.sut_port)
    peer.syn_options = []
    peer.send("S")
    synack = peer.expect("SA", ack=peer.iss + 1, requirement="RFC9293/MAY-3",
                         what="a SYN without options is answered with a SYN-ACK")
    observed["synack_mss"] = synack.option("MSS")
    want = b["answer"] == "sent"
    require(synack.has_option("MSS") == want, b["rule"],
            f"documented: the MSS option {'is' if want else 'is not'} sent on every SYN ({b['note']})",
            f"MSS option {'present' if want else 'absent'}", peer.describe(synack))
    profile.conclude(b)


# --- MUST-15: no MSS received -------------------------------------------------------------

@pytest.mark.case("mss.default-without-option")
@pytest.mark.requires("app")
def test_no_mss_option_means_the_default(stack, peer, app, observed):
    """The peer's SYN has no MSS option: the SUT sends at most 536 (IPv4) or 1220 (IPv6) octets per segment."""
    conn, _ = _open(peer, app, [("NOP", None), ("WScale", 7)], "RFC9293/MUST-15")
    sizes = _payloads(peer, app, conn, "RFC9293/MUST-15")
    observed["payloads"] = sizes
    _bounded(sizes, DEFAULT_MSS[stack.family], "RFC9293/MUST-15",
             f"without an MSS option the send MSS is {DEFAULT_MSS[stack.family]} ({stack.family})")


# --- MUST-16, RFC 6691: the effective send MSS -------------------------------------------

@pytest.mark.case("mss.effective")
@pytest.mark.requires("app")
@pytest.mark.parametrize("timestamps", [False, True], ids=["without-timestamps", "with-timestamps"])
def test_effective_mss_subtracts_options(stack, peer, app, profile, observed, timestamps):
    """The effective send MSS is the peer's MSS less the TCP options of each segment (timestamps: 12 octets)."""
    if timestamps and profile.value("timestamps") == 0:
        pytest.skip(f"stack {stack.name} lacks timestamps (RFC 7323, optional): {profile.doc('timestamps')}")
    conn, _ = _open(peer, app, WITH_TS if timestamps else NO_TS, "RFC9293/MUST-16")
    require(peer.ts_on == timestamps, "RFC7323/3.2", "timestamps are on exactly when both SYNs carried them",
            f"timestamps {'on' if timestamps else 'off'}", f"timestamps {'on' if peer.ts_on else 'off'}")
    sizes = _payloads(peer, app, conn, "RFC9293/MUST-16")
    observed["payloads"] = sizes
    mss = 1000 - (TS_OPTION if timestamps else 0)
    _bounded(sizes, mss, "RFC6691/2" if timestamps else "RFC9293/MUST-16",
             f"MSS 1000 less {TS_OPTION if timestamps else 0} octets of options on every segment")
    require(max(sizes) == mss, "RFC9293/MUST-16",
            f"the full segments carry exactly the effective MSS, {mss} (SHLD-28: maximum-sized segments)",
            f"full segments of {mss}", f"payloads {sizes}")


@pytest.mark.case("mss.effective")
@pytest.mark.requires("app")
def test_effective_mss_bounded_by_the_link(stack, peer, app, observed):
    """The peer offers an MSS larger than the SUT's link carries: the link's MMS_S bounds the data."""
    conn, _ = _open(peer, app, [("MSS", 9000), ("NOP", None), ("WScale", 7)], "RFC9293/MUST-16")
    sizes = _payloads(peer, app, conn, "RFC9293/MUST-16")
    observed["payloads"] = sizes
    bound = stack.mtu - IP_HEADER[stack.family] - TCP_HEADER
    observed["link_mtu"] = stack.mtu
    _bounded(sizes, bound, "RFC9293/MUST-16",
             f"min(SendMSS + 20, MMS_S) - 20 with MMS_S = MTU {stack.mtu} - IP header {IP_HEADER[stack.family]}")


# --- MUST-65: no MSS outside a SYN ---------------------------------------------------------

@pytest.mark.case("mss.only-on-syn")
@pytest.mark.requires("app")
def test_mss_on_a_data_segment_is_ignored(stack, peer, app, observed):
    """An MSS option on a data segment changes nothing: the send MSS is the one of the SYN."""
    conn, _ = _open(peer, app, [("MSS", 700), ("NOP", None), ("WScale", 7)], "RFC9293/3.7.1")
    data = b"a late MSS option rides on this"
    peer.send("PA", data=data, options=[("MSS", 1200)])
    peer.expect("A", seq=peer.rcv_nxt, ack=peer.snd_nxt, requirement="RFC9293/MUST-5",
                what="the data segment carrying an MSS option is acknowledged")
    app.recv_exactly(conn, len(data))
    app.send(conn, DATA)
    segs = receive(peer, len(DATA), "RFC9293/MUST-65", "the SUT sends its application's data")
    sizes = [len(s.payload) for s in segs]
    observed["payloads"] = sizes
    _bounded(sizes, 700, "RFC9293/3.7.1",
             "SendMSS is the MSS received at connection setup: an MSS on a data segment is ignored, 700 stays")


@pytest.mark.case("mss.only-on-syn")
@pytest.mark.requires("app")
def test_sut_sends_mss_only_on_syn(stack, peer, app):
    """Over a whole connection (data both ways, close) the SUT puts an MSS option on its SYN-ACK only."""
    conn, _ = _open(peer, app, [("MSS", 700), ("NOP", None), ("WScale", 7)], "RFC9293/MUST-65")
    data = b"some data for the SUT"
    peer.send("PA", data=data)
    peer.expect("A", seq=peer.rcv_nxt, ack=peer.snd_nxt, requirement="RFC9293/MUST-65",
                what="the data is acknowledged")
    app.recv_exactly(conn, len(data))
    app.send(conn, DATA)
    receive(peer, len(DATA), "RFC9293/MUST-65", "the SUT sends its application's data")
    app.close(conn)
    peer.expect("FA", seq=peer.rcv_nxt, requirement="RFC9293/3.6", what="the SUT closes", skip=stale(peer))
    sent = [e for e in stack.trace.entries if peer.mine(e)]
    late = [peer.describe(e) for e in sent if not e.syn and e.has_option("MSS")]
    require(not late, "RFC9293/MUST-65", "the SUT sends the MSS option only on SYN segments",
            "no MSS option after the SYN-ACK", "; ".join(late))
