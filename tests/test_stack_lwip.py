"""`--stack lwip`: smoke cases of the suite against lwIP with their Allure
labels, and the lwIP agent's side of the app-control protocol."""

import pytest
from smoke import assert_agent_refuses_bad_requests, assert_broken_case_fails, assert_smoke_outcomes, started

from faults import ProfileRules, assert_case_passes, assert_control_fails, cell
from harness.connection import Connection
from harness.agent import AppError
from harness.stacks.lwip import LwipStack

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(not LwipStack.agent_path().exists(),
                       reason="the lwIP agent is not built: run python3 -m harness.setup --stack lwip"),
]
SMOKE = "data_on_third_ack or fin_retransmitted_into_time_wait"


def test_smoke_cases_pass_against_lwip_with_its_label(tmp_path):
    assert_smoke_outcomes("lwip", SMOKE, tmp_path, {"handshake.data-ack-to-syn-received": "passed",
                                                    "teardown.time-wait-fin-retransmission": "passed"})


@pytest.fixture(params=["ipv4", "ipv6"])
def lwip(request):
    yield from started(LwipStack, request.param)


def test_agent_speaks_protocol_1(lwip):
    hello = lwip.app.hello()
    assert hello["version"] == 1 and hello["stack"] == "lwip" and hello["lwip"] == "2.1.3"
    assert {"listen", "accept", "connect", "send", "recv", "shutdown", "close", "setsockopt", "state"} <= set(hello["ops"])
    assert "SO_LINGER" in hello["options"] and "SO_RCVBUF" not in hello["options"]
    assert lwip.version().startswith("lwIP 2.1.3")
    listener = lwip.app.listen(7)
    anyaddr = "0.0.0.0" if lwip.family == "ipv4" else "::"
    assert lwip.states(7) == [{"local": [lwip.sut_addr, 7], "remote": [anyaddr, 0], "state": "LISTEN"}]
    lwip.app.connect(lwip.peer_addr, 9, bind_port=1234)
    assert lwip.states(1234) == [{"local": [lwip.sut_addr, 1234], "remote": [lwip.peer_addr, 9], "state": "SYN-SENT",
                                  "rcv_wnd": 65535}]      # TCP_WND, which the scaled window field shows as 65534
    with pytest.raises(AppError) as e:
        lwip.app.accept(listener, timeout=0.05)
    assert e.value.error == "EAGAIN"


def test_agent_errors_are_errno_names_with_a_reason(lwip):
    assert_agent_refuses_bad_requests(lwip)
    conn = lwip.app.connect(lwip.peer_addr, 9, bind_port=1234)
    with pytest.raises(AppError) as e:
        lwip.app.setsockopt(conn, "TCP_SYNCNT", 2)
    assert e.value.error == "EOPNOTSUPP" and "TCP_SYNMAXRTX" in e.value.message
    lwip.app.setsockopt(conn, "SO_LINGER", [1, 0])
    assert lwip.app.getsockopt(conn, "SO_LINGER") == [1, 0]
    lwip.app.close(conn)
    with pytest.raises(AppError) as e:
        lwip.app.close(conn)
    assert e.value.error == "EBADF"


def test_an_option_lwip_lacks_skips_the_case_and_a_typo_fails_it(run_case, pytester):
    pytester.makepyfile(test_needs_options="""
        import pytest

        @pytest.mark.case("handshake.data-ack-to-syn-received")
        def test_syncnt(stack, app):
            app.connect(stack.peer_addr, 9, bind_port=1234, TCP_SYNCNT=2)

        @pytest.mark.case("handshake.data-ack-to-syn-received")
        def test_typo(stack, app):
            app.connect(stack.peer_addr, 9, bind_port=1234, TCP_SYNCOUNT=2)
    """)
    r = run_case("--stack", "lwip", "--family", "ipv4", "-rs", "test_needs_options.py")
    r.assert_outcomes(skipped=1, failed=1)
    r.stdout.fnmatch_lines(["*EINVAL: no socket option 'TCP_SYNCOUNT'*", "*stack lwip lacks it: lwIP has no TCP_SYNCNT*"])


# lwIP's first RTO is its initial 3 s (rto_min in its profile): first-rto-delay-a2 holds it 1.5 s late
@pytest.mark.parametrize("control", ["data-ack-ack-1", "time-wait-drop-ack3", "first-rto-delay-a2"])
def test_smoke_cases_fail_against_lwip_when_broken(run_case, control):
    """Negative controls through the lwIP adapter: the checked behaviour
    broken on the TAP link fails the case, naming its requirement."""
    assert_broken_case_fails(run_case, "lwip", control)


# --- the state x event matrix on lwIP ------------------------------------------------------------

class AdvertisedWindow:
    """The matrix taking RCV.WND from the window field, as before the agent reported it."""

    @pytest.fixture(autouse=True)
    def _tcpconf_advertised_window(self, monkeypatch):
        monkeypatch.setattr(Connection, "rcv_wnd", lambda conn: conn.peer.sut_window)
        yield


LWIP_RULES = [
    # (cell, row whose rules lwIP's profile documents, the requirement the failure names)
    ("established.fin-ack.acks-above-snd-nxt-server", "ack.unsent", "RFC9293/3.10.7.4"),     # two ACKs, one now
    ("syn-received.syn-ack.rcv-nxt-passive", "syn.passive", "RFC9293/3.10.7.4"),              # its SYN taken as text
    ("time-wait.syn.in-window", "syn.challenge", "RFC5961/4.2"),                              # RFC 793's reset
    ("close-wait.rst.past-window", "seq.unacceptable-rst", "RFC9293/3.10.7.4"),               # the right edge
]


@pytest.mark.parametrize("test, row, requirement", LWIP_RULES, ids=[r[1] for r in LWIP_RULES])
def test_a_matrix_cell_fails_without_the_lwip_rule_that_documents_it(run_case, test, row, requirement):
    result = run_case(cell(test), "--stack", "lwip", plugins=[ProfileRules(without=row)])
    assert_control_fails(result, requirement)
    assert f": {row}: " in result.stdout.str(), "the failure names the row of the table"


@pytest.mark.parametrize("test", [t for t, _, _ in LWIP_RULES])
def test_the_lwip_matrix_cell_is_a_documented_deviation_with_its_rules(run_case, test):
    result = run_case(cell(test), "--stack", "lwip", "-rx")
    assert_case_passes(result)
    assert result.parseoutcomes().get("xfailed") == 1 and "documented deviation of lwip" in result.stdout.str()


def test_the_window_edges_are_lwips_own_not_the_scaled_field(run_case):
    """lwIP's RCV.WND is 65535; its window field says 32767 << 1 = 65534. Read
    from the field, 'one past the window' is lwIP's last octet, which it
    accepts silently: the cell fails where nothing is wrong with lwIP."""
    test = cell("established.ack.past-window-server")
    assert_case_passes(run_case(test, "--stack", "lwip"))
    result = run_case(test, "--stack", "lwip", plugins=[AdvertisedWindow()])
    assert_control_fails(result, "RFC9293/3.10.7.4")
    assert "seq.unacceptable" in result.stdout.str()
