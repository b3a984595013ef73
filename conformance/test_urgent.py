"""Urgent data (RFC 9293 §3.8.5): the urgent pointer points to the octet
after the urgent data, on the segments the SUT sends (MUST-62) and on the
ones it receives, a stack keeps supporting it (MUST-30) for urgent data of
any length (MUST-31), tells the application asynchronously (MUST-32) and
lets it find the urgent mark (MUST-33).

The application's side uses the app control: send and recv with the flag
MSG_OOB, poll's POLLPRI as the asynchronous signal, the ioctl SIOCATMARK
for the mark. A stack without urgent data answers EOPNOTSUPP there and the
case is skipped, naming it; what every stack must do with a URG segment
(deliver its data) runs everywhere."""
import pytest

from harness.agent import AppError
from harness.flow import established
from harness.verdict import require


def _inline(app, conn) -> bool:
    """Urgent data inline where the stack can (SO_OOBINLINE): True if set."""
    try:
        app.setsockopt(conn, "SO_OOBINLINE", 1)
        return True
    except AppError as e:
        if e.error != "EOPNOTSUPP":
            raise
        return False


def _signalled(app, conn) -> bool:
    """Urgent data is signalled to the application: poll's POLLPRI."""
    return "POLLPRI" in app.poll(conn, "POLLPRI")


def _at_mark(app, conn) -> bool:
    return app.ioctl(conn, "SIOCATMARK") == 1


def _urgent(peer, data: bytes, up: int | None = None):
    """A data segment with URG set and the urgent pointer `up` octets after
    SEG.SEQ (default: just past its last octet)."""
    return peer.send("UPA", data=data, urgptr=len(data) if up is None else up)


# --- MUST-30 -----------------------------------------------------------------------------------

@pytest.mark.case("urgent.received")
@pytest.mark.requires("app")
def test_segment_with_urgent_data_is_accepted(stack, peer, app):
    """Data with URG set is acknowledged and delivered, with no reset."""
    listener, conn = established(peer, app)
    _inline(app, conn)
    before, urgent = b"normal data, then ", b"urgent data!"
    peer.send("PA", data=before)
    _urgent(peer, urgent)
    peer.expect("A", seq=peer.rcv_nxt, ack=peer.snd_nxt, requirement="RFC9293/MUST-30",
                what="a segment with urgent data is acknowledged, not reset",
                skip=lambda s: s.has_ack and not s.rst and s.ack != peer.snd_nxt)
    got = app.recv_exactly(conn, len(before + urgent))
    require(got == before + urgent, "RFC9293/MUST-30",
            "every octet of the urgent segment is delivered (inline where the stack has SO_OOBINLINE)",
            repr(before + urgent), repr(got))


# --- MUST-62 -----------------------------------------------------------------------------------

@pytest.mark.case("urgent.pointer-sent")
@pytest.mark.requires("app")
def test_urgent_pointer_points_past_the_urgent_data(stack, peer, app):
    """The application sends urgent data: the SUT's segment has URG, and SEG.SEQ + SEG.UP is the octet after it."""
    listener, conn = established(peer, app)
    app.send(conn, b"abc!", flags=("MSG_OOB",))
    seg = peer.expect("UA", seq=peer.rcv_nxt, requirement="RFC9293/MUST-62",
                      what="urgent data is sent with URG set")
    require(seg.payload.endswith(b"!") and seg.urgptr == len(seg.payload), "RFC9293/MUST-62",
            "the urgent pointer points to the octet following the urgent data (SEG.SEQ + SEG.UP = after the '!')",
            f"urg {len(seg.payload)}", f"urg {seg.urgptr} over {seg.payload!r}")
    peer.send("A")


# --- MUST-32, MUST-33 -----------------------------------------------------------------------------

@pytest.mark.case("urgent.signalled")
@pytest.mark.requires("app")
def test_application_is_told_of_urgent_data_and_finds_the_mark(stack, peer, app):
    """Urgent data arrives: the application is signalled (POLLPRI), reads up to the mark (SIOCATMARK), then the
    urgent octet out of band."""
    listener, conn = established(peer, app)
    at_mark = _at_mark(app, conn)              # a stack without urgent data is skipped here, naming it
    require(not _signalled(app, conn), "RFC9293/MUST-32", "no urgent data is signalled before any arrives",
            "no POLLPRI", "POLLPRI")
    peer.send("PA", data=b"normal ")
    _urgent(peer, b"then urgent!")
    peer.expect("A", seq=peer.rcv_nxt, ack=peer.snd_nxt, what="the data is acknowledged",
                skip=lambda s: s.has_ack and s.ack != peer.snd_nxt)
    require(_signalled(app, conn), "RFC9293/MUST-32",
            "the arrival of urgent data is signalled to the application (POLLPRI) before it reads anything",
            "POLLPRI", "no POLLPRI")
    require(not at_mark and not _at_mark(app, conn), "RFC9293/MUST-33",
            "the application can tell it has not reached the mark yet", "SIOCATMARK 0", "SIOCATMARK 1")
    normal = app.recv(conn, max=100)
    require(normal == b"normal then urgent", "RFC9293/MUST-33",
            "a read stops at the urgent mark: it returns the data before the urgent octet", repr(b"normal then urgent"),
            repr(normal))
    require(_at_mark(app, conn), "RFC9293/MUST-33", "at the mark, SIOCATMARK says so",
            "SIOCATMARK 1", "SIOCATMARK 0")
    oob = app.recv(conn, max=1, flags=("MSG_OOB",))
    require(oob == b"!", "RFC9293/MUST-33", "the urgent octet is read out of band", repr(b"!"), repr(oob))


# --- MUST-31 -----------------------------------------------------------------------------------

@pytest.mark.case("urgent.any-length")
@pytest.mark.requires("app")
def test_urgent_data_spanning_several_segments(stack, peer, app):
    """Urgent data over three segments, the pointer of each at the end of the third: all of it is delivered
    and the application is signalled."""
    listener, conn = established(peer, app)
    if not _inline(app, conn):
        _at_mark(app, conn)                 # a stack without urgent data is skipped here, naming it
    parts = [b"first part, ", b"second part, ", b"third part!"]
    total = sum(len(p) for p in parts)
    left = total
    for part in parts:                      # tcpreq's UrgentPointerTest: one pointer, seen from each segment
        _urgent(peer, part, up=left)
        left -= len(part)
    peer.expect("A", seq=peer.rcv_nxt, ack=peer.snd_nxt, requirement="RFC9293/MUST-31",
                what="the urgent sequence is acknowledged", skip=lambda s: s.has_ack and s.ack != peer.snd_nxt)
    require(_signalled(app, conn), "RFC9293/MUST-31", "the application is told urgent data arrived (POLLPRI)",
            "POLLPRI", "no POLLPRI")
    got = app.recv_exactly(conn, total)
    require(got == b"".join(parts), "RFC9293/MUST-31",
            f"an urgent sequence of {total} octets over three segments is delivered whole and in order (inline)",
            repr(b"".join(parts)), repr(got))
