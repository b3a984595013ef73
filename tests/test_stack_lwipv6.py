"""`--stack lwipv6`: lwIPv6 on a TAP, driven by its C agent.

A smoke set of conformance cases runs against it with the Allure contract
(`stack` = lwipv6): the passing ones pass and the documented deviations are
xfails; a case still fails when its behaviour is broken on the link; the
agent speaks the app-control protocol and says what lwIPv6 lacks (TCP state,
half-close, most options), which skips a case, never fails it. Skipped, with
one line saying how to build it, when the agent is not built.
"""

import pytest
from smoke import assert_agent_refuses_bad_requests, assert_broken_case_fails, assert_smoke_outcomes, raw_request, started

from faults import Fault, FaultPlugin, ProfileRules, assert_control_fails, cell
from readme import SMOKE as README_SMOKE, fresh_clone, run_readme
from harness import rules
from harness.agent import AppError
from harness.stacks.lwipv6 import Lwipv6Stack

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(not Lwipv6Stack.agent_path().exists(),
                       reason="the lwIPv6 agent is not built: run python3 -m harness.setup --stack lwipv6"),
]
SMOKE = "data_on_third_ack or fin_retransmitted_into_time_wait or simultaneous_close or syn_with_other_isn_in_window"


@pytest.mark.xdist_group("suite")
def test_the_readme_command_on_a_fresh_clone(tmp_path):
    """The README's set-up and run for lwIPv6, as written, narrowed to the smoke cases."""
    r = run_readme("python3 -m harness.setup --stack lwipv6 && .venv/bin/pytest conformance/ --stack lwipv6 -n 4",
                   fresh_clone(tmp_path), {"PYTEST_ADDOPTS": README_SMOKE})
    assert r.returncode == 0 and "4 passed" in r.stdout, f"exit {r.returncode}\n{r.stdout[-2500:]}\n{r.stderr[-2500:]}"


def test_smoke_cases_against_lwipv6_pass_or_deviate_as_documented(tmp_path):
    assert_smoke_outcomes("lwipv6", SMOKE, tmp_path, {
        "handshake.data-ack-to-syn-received": "passed",
        "teardown.time-wait-fin-retransmission": "passed",
        "teardown.simultaneous-close": "xfailed: RFC9293/3.10.7.4",     # CLOSING -> TIME-WAIT sends nothing
        "handshake.old-duplicate-syn": "xfailed: RFC9293/3.10.7.4",     # a SYN inside SYN-RECEIVED's window ignored
    })


@pytest.fixture(params=["ipv4", "ipv6"])
def lwipv6(request):
    yield from started(Lwipv6Stack, request.param)


def test_agent_speaks_protocol_1_without_state(lwipv6):
    hello = lwipv6.app.hello()
    assert hello["version"] == 1 and hello["stack"] == "lwipv6"
    assert {"listen", "accept", "connect", "send", "recv", "close", "setsockopt", "error"} <= set(hello["ops"])
    assert "state" not in hello["ops"] and "state" not in lwipv6.capabilities
    assert set(hello["options"]) == {"SO_REUSEADDR", "SO_KEEPALIVE", "TCP_KEEPIDLE"}
    assert lwipv6.version().startswith("lwIPv6 1.5a")
    assert lwipv6.link.sut_mac == "02:02:03:04:05:06"
    listener = lwipv6.app.listen(7)
    with pytest.raises(AppError) as e:
        lwipv6.app.accept(listener, timeout=0.05)
    assert e.value.error == "EAGAIN"
    with pytest.raises(AppError) as e:
        lwipv6.state_of(7, 40000)
    assert e.value.error == "EOPNOTSUPP" and "capability 'state'" in e.value.message
    assert raw_request(lwipv6, b'{"op": "state"}')["error"] == "EOPNOTSUPP"


def test_agent_errors_are_errno_names_with_a_reason(lwipv6):
    assert_agent_refuses_bad_requests(lwipv6)
    # Nobody answers this SYN: the connect runs on, and the connection cannot be used or closed meanwhile.
    conn = lwipv6.app.connect(lwipv6.peer_addr, 9, bind_port=1234)
    assert lwipv6.app.error(conn) is None
    with pytest.raises(AppError) as e:
        lwipv6.app.close(conn)
    assert e.value.error == "EOPNOTSUPP" and "connect is in progress" in e.value.message
    with pytest.raises(AppError) as e:
        lwipv6.app.send(conn, b"x", timeout=0.05)
    assert e.value.error == "EAGAIN"
    for name, why in (("TCP_KEEPINTVL", "75000 ms"), ("SO_LINGER", "ENOPROTOOPT"), ("TCP_NODELAY", "TF_NODELAY")):
        with pytest.raises(AppError) as e:
            lwipv6.app.connect(lwipv6.peer_addr, 9, **{name: 1})
        assert e.value.error == "EOPNOTSUPP" and why in e.value.message, e.value.message
    listener = lwipv6.app.listen(7, SO_KEEPALIVE=1)
    assert lwipv6.app.getsockopt(listener, "SO_KEEPALIVE") != 0
    lwipv6.app.setsockopt(listener, "TCP_KEEPIDLE", 42)
    assert lwipv6.app.getsockopt(listener, "TCP_KEEPIDLE") == 42
    with pytest.raises(AppError) as e:
        lwipv6.app.shutdown(listener)
    assert e.value.error == "EOPNOTSUPP" and "no FIN" in e.value.message
    lwipv6.app.close(listener)
    with pytest.raises(AppError) as e:
        lwipv6.app.close(listener)
    assert e.value.error == "EBADF"


def test_what_lwipv6_lacks_skips_the_case_naming_it(run_case, pytester):
    pytester.makepyfile(test_needs_more="""
        import pytest

        @pytest.mark.case("handshake.data-ack-to-syn-received")
        def test_state(stack, peer, app):
            app.listen(peer.sut_port)
            stack.state_of(peer.sut_port, peer.port)

        @pytest.mark.case("handshake.data-ack-to-syn-received")
        def test_syncnt(stack, app):
            app.connect(stack.peer_addr, 9, bind_port=1234, TCP_SYNCNT=2)

        @pytest.mark.case("handshake.data-ack-to-syn-received")
        def test_typo(stack, app):
            app.connect(stack.peer_addr, 9, bind_port=1234, TCP_SYNCOUNT=2)
    """)
    r = run_case("--stack", "lwipv6", "--family", "ipv4", "-rs", "test_needs_more.py")
    r.assert_outcomes(skipped=2, failed=1)
    r.stdout.fnmatch_lines(["*EINVAL: no socket option 'TCP_SYNCOUNT'*"])
    r.stdout.fnmatch_lines(["*stack lwipv6 lacks it: lwIPv6 cannot report TCP state (capability 'state')*"])
    r.stdout.fnmatch_lines(["*stack lwipv6 lacks it: lwIPv6 has no TCP_SYNCNT*"])


# lwIPv6's first RTO is its initial 3 s (rto_min in its profile): first-rto-delay-a2 holds it 1.5 s late
@pytest.mark.parametrize("control", ["data-ack-ack-1", "time-wait-drop-ack3", "first-rto-delay-a2"])
def test_smoke_cases_fail_against_lwipv6_when_broken(run_case, control):
    """Negative controls through the lwIPv6 adapter: the checked behaviour
    broken on the TAP link fails the case, naming its requirement."""
    assert_broken_case_fails(run_case, "lwipv6", control)


# --- the state x event matrix on lwIPv6: no state report, so the wire proves the state ---------------

@pytest.mark.parametrize("test, outcome", [
    ("established.rst.in-window-server", "xfailed"),    # reset, no challenge ACK (rst.in-window)
    ("time-wait.ack.far", "xfailed"),                   # no ACK, RCV.NXT moved: the follow-up octet shows it
    ("closing.ack.acks-snd-nxt", "xfailed"),            # an ACK as CLOSING ends (ack.closing)
    ("fin-wait-2.ack-data.rcv-nxt", "passed"),
    ("syn-received.syn.rcv-nxt-simultaneous", "skipped"),   # no simultaneous open
], ids=lambda v: v if "." in v else None)
def test_matrix_cells_on_lwipv6_follow_its_rules(run_case, test, outcome):
    result = run_case(cell(test), "--stack", "lwipv6", "-rsx")
    result.assert_outcomes(**{outcome: 1})


def test_matrix_a_wrong_rule_for_lwipv6_fails_the_cell_on_the_wire(run_case):
    """A profile that says lwIPv6 ignores a RST inside the window: it resets,
    and the follow-up octet of old data draws the reset of a closed port
    where an ESTABLISHED connection would acknowledge it."""
    wrong = rules.Override("rst.in-window", states=("ESTABLISHED",), source="a profile that is wrong")
    result = run_case(cell("established.rst.in-window-server"), "--stack", "lwipv6", plugins=[ProfileRules(added=[wrong])])
    assert_control_fails(result, "RFC5961/3.2")
    out = result.stdout.str()
    assert "follow-up octet of old data" in out and "[R.]" in out


def test_matrix_a_broken_answer_fails_the_cell_on_lwipv6(run_case):
    """lwIPv6 takes a SYN at RCV.NXT for one octet and acknowledges it: that
    ACK one off on the link fails the cell, naming the rule it departs from."""
    fault = Fault("A", nth=2, action="ack", offset=-1)
    result = run_case(cell("established.syn.rcv-nxt-server"), "--stack", "lwipv6", plugins=[FaultPlugin(fault)])
    assert_control_fails(result, "RFC5961/4.2", fault)
    assert "syn.challenge" in result.stdout.str()
