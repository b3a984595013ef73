"""`--stack passt`: smoke cases of the suite against passt with their Allure
labels, passt's host side, and the StreamLink that carries its frames (the
link is tested without root, on a socket pair)."""
from pathlib import Path
import shutil
import socket
import threading
import time

import pytest
from smoke import assert_broken_case_fails, assert_smoke_outcomes
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import ARP, Ether

from harness.agent import AppError
from harness.l2 import FRAME_LENGTH, LinkError, StreamLink
from harness.stacks import StackConfig
from harness.stacks.passt import FORWARDS, PasstHost, PasstStack
from harness.trace import Trace

installed = pytest.mark.skipif(shutil.which("passt") is None,
                               reason="passt is not installed: run python3 -m harness.setup --stack passt")
SMOKE = "close_after_data_sut_as_server or isn_of_another_tuple"
TESTER, SUT = "02:00:00:74:63:02", "02:00:00:74:63:01"


def _framed(frame: bytes) -> bytes:
    return FRAME_LENGTH.pack(len(frame)) + frame


def test_stream_link_carries_frames_behind_their_length():
    mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    link = StreamLink(Trace(), mine, TESTER, {"ipv4": "198.18.0.2"}, "198.18.0.1")
    try:
        # the SUT asks for the tester's address: the link answers, nothing is traced
        ask = bytes(Ether(dst="ff:ff:ff:ff:ff:ff", src=SUT) /
                    ARP(op=1, hwsrc=SUT, psrc="198.18.0.1", pdst="198.18.0.2"))
        syn = bytes(IP(src="198.18.0.1", dst="198.18.0.2") / TCP(sport=7, dport=40000, flags="S"))
        data = _framed(ask) + _framed(bytes(Ether(dst=TESTER, src=SUT, type=0x0800)) + syn)
        theirs.sendall(data[:7])                       # frames arrive in pieces, as on any stream
        assert link._read_ready() == []
        theirs.sendall(data[7:])
        got = link._read_ready()
        assert [raw for raw, _ in got] == [syn] and link.sut_mac == SUT
        answer = theirs.recv(65536)
        (n,) = FRAME_LENGTH.unpack_from(answer)
        assert n == len(answer) - FRAME_LENGTH.size
        reply = Ether(answer[FRAME_LENGTH.size:])
        assert reply[ARP].op == 2 and reply[ARP].hwsrc == TESTER and reply[ARP].psrc == "198.18.0.2"
        theirs.close()
        with pytest.raises(LinkError):
            link._read_ready()
    finally:
        link.close()


def test_stream_link_sends_delayed_frames_while_the_case_reads():
    """With a path delay the link's own thread sends our frames while the
    case's thread reads the stream: the socket stays non-blocking, so a read
    with nothing to read returns at once instead of hanging."""
    mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    link = StreamLink(Trace(), mine, TESTER, {"ipv4": "198.18.0.2"}, "198.18.0.1")
    link.sut_mac = SUT
    link.delays.append(lambda raw, sent_by: 0.001)
    got = bytearray()
    drain = threading.Thread(target=lambda: [got.extend(c) for c in iter(lambda: theirs.recv(65536), b"")])
    drain.start()
    syn = bytes(IP(src="198.18.0.2", dst="198.18.0.1") / TCP(sport=40000, dport=7, flags="S"))

    def case():
        for _ in range(300):
            link.send(syn)
            for _ in range(20):
                link._read_ready()             # the SUT sends nothing: each read must return

    reader = threading.Thread(target=case)
    reader.start()
    reader.join(timeout=10)
    hung = reader.is_alive()
    if hung:
        theirs.sendall(b"\0")                  # wake the read that blocked
        reader.join()
    try:
        assert not hung, "a read of the stream blocked while the link's thread sent a frame"
        deadline = time.monotonic() + 5
        while len(got) < 300 * (FRAME_LENGTH.size + 14 + len(syn)) and time.monotonic() < deadline:
            time.sleep(0.01)
        frames, at = [], 0
        while at < len(got):
            (n,) = FRAME_LENGTH.unpack_from(got, at)
            frames.append(bytes(got[at + FRAME_LENGTH.size:at + FRAME_LENGTH.size + n]))
            at += FRAME_LENGTH.size + n
        assert len(frames) == 300 and all(f[14:] == syn for f in frames)
    finally:
        link.close()
        theirs.close()
        drain.join()


def test_passt_reaches_only_its_forwarded_ports():
    host = PasstHost(None, "ipv4")
    assert host.forward("ipv4", "198.18.0.2", FORWARDS.start) == FORWARDS.start
    with pytest.raises(AppError) as e:
        host.forward("ipv4", "198.18.0.2", 1234)
    assert e.value.error == "EADDRNOTAVAIL" and "-t" in e.value.message
    assert host.source("ipv6") == "2001:2::1"        # the SUT's address: passt keeps it as the source
    assert host.dispatch({"op": "state"})["error"] == "EOPNOTSUPP"
    reply = host.dispatch({"op": "setsockopt", "id": 1, "name": "SO_RCVBUF", "value": 1})
    assert reply["error"] == "EOPNOTSUPP" and "ACK_TIMEOUT" in reply["message"]


# --- against passt (root) ----------------------------------------------------------------------------

@pytest.mark.root
@installed
def test_smoke_cases_pass_against_passt_with_its_label(tmp_path):
    assert_smoke_outcomes("passt", SMOKE, tmp_path, {"teardown.fin-sequence-numbers": "passed",
                                                     "isn.unpredictable": "passed"})


@pytest.mark.root
@installed
def test_passt_comes_up_and_goes_away(family):
    st = PasstStack(StackConfig(family, Trace())).start()
    try:
        assert st.app.hello()["options"] == ["SO_LINGER", "SO_REUSEADDR"]
        assert st.link.sut_mac == SUT and st.version().startswith("passt 0.0~git20230309")
        assert st.peer_ports == FORWARDS
        proc, where = st.proc, st.dir
    finally:
        st.close()
    assert proc.poll() is not None                   # --one-off: it ended with its client
    assert not Path(where).exists()


@pytest.mark.root
@installed
# passt's retransmission timeout is its constant 2 s (rto_min): first-rto-delay-a2 holds it 1.5 s late
@pytest.mark.parametrize("control", ["fin-seq+1", "first-rto-delay-a2"])
def test_smoke_cases_fail_against_passt_when_broken(run_case, control):
    """Negative controls through the passt adapter: the checked behaviour
    broken on the stream link fails the case, naming its requirement."""
    assert_broken_case_fails(run_case, "passt", control)
