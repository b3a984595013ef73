"""`--stack slirp`: smoke cases of the suite against libslirp with their
Allure labels, the pump's control lines, slirp's states as the suite reads
them, and the host side's option policy. The parsing of slirp's connection
table is tested without root."""
import json

import pytest
from smoke import assert_broken_case_fails, assert_smoke_outcomes, started

from harness.agent import AppError
from harness.stacks.slirp import FORWARD_PORTS, SlirpHost, SlirpStack

built = pytest.mark.skipif(not SlirpStack.agent_path().exists(),
                           reason="the slirp pump is not built: run python3 -m harness.setup --stack slirp")
SMOKE = "close_after_data_sut_as_server or fin_retransmitted_into_time_wait"


class Pump:
    """The pump's side of the control lines, for tests without root."""

    def __init__(self, info: str):
        self.info, self.lines = info, []

    def exchange(self, line, what, wait=0.0):
        self.lines.append(line)
        if line.startswith("connections"):
            return json.dumps({"ok": True, "info": self.info}).encode()
        return b'{"ok": true}'


INFO = """  Protocol[State]    FD  Source Address  Port   Dest. Address  Port RecvQ SendQ
  TCP[ESTABLISHED]     7      198.18.0.2 40000      198.18.0.1  8080     0     0
  TCP[HOST_FORWARD]    9       127.0.0.1 61000      198.18.0.2 40001     0     0
  TCP[SYN_SENT]       10       127.0.0.1 61000      198.18.0.2 40001     0     0
  TCP[TIME_WAIT]      -1      198.18.0.2 40002      198.18.0.1  8081     0     0
  UDP[HOST_FORWARD]    3       127.0.0.1  5353      198.18.0.2    53     0     0
"""


def test_states_are_read_from_slirps_connection_table(family):
    host = SlirpHost(None, Pump(INFO), family)
    host.forwarded[61000] = 2222                  # the rule's port -> the client's, slirp's port on the wire
    socks = host.op_state()["sockets"]
    if family == "ipv4":
        assert socks == [
            {"local": ["198.18.0.1", 8080], "remote": ["198.18.0.2", 40000], "state": "ESTABLISHED"},
            {"local": [None, 2222], "remote": ["198.18.0.2", 40001], "state": "SYN-SENT"},
            {"local": ["198.18.0.1", 8081], "remote": ["198.18.0.2", 40002], "state": "TIME-WAIT"}]
    else:                                          # slirp prints IPv4 addresses only
        assert [(s["local"], s["remote"], s["state"]) for s in socks] == [
            ([None, 8080], [None, 40000], "ESTABLISHED"), ([None, 2222], [None, 40001], "SYN-SENT"),
            ([None, 8081], [None, 40002], "TIME-WAIT")]
    assert [s["state"] for s in host.op_state(port=8081)["sockets"]] == ["TIME-WAIT"]
    host.listening[3] = 8081                       # the host listens: slirp answers SYNs to that port
    assert [s["state"] for s in host.op_state(port=8081)["sockets"]] == ["LISTEN", "TIME-WAIT"]


def test_options_slirp_cannot_carry_are_refused_with_the_reason():
    host = SlirpHost(None, Pump(""), "ipv4")
    reply = host.dispatch({"op": "setsockopt", "id": 1, "name": "TCP_KEEPIDLE", "value": 1})
    assert reply["error"] == "EOPNOTSUPP" and "slirp_do_keepalive" in reply["message"]
    reply = host.dispatch({"op": "getsockopt", "id": 1, "name": "TCP_INFO"})
    assert reply["error"] == "EOPNOTSUPP" and "compiled in" in reply["message"]
    assert host.dispatch({"op": "setsockopt", "id": 1, "name": "SO_LINGER", "value": [1, 0]})["error"] == "EBADF"


def test_a_forwarding_rule_per_connect_above_the_ephemeral_ports():
    pump = Pump("")
    host = SlirpHost(None, pump, "ipv6")
    assert [host.forward("ipv6", "2001:2::2", p) for p in (5000, 5001)] == [61000, 61001]
    assert pump.lines == ["hostfwd ::1 61000 2001:2::2 5000", "hostfwd ::1 61001 2001:2::2 5001"]
    assert FORWARD_PORTS.start > 60999                   # beyond the namespace's ephemeral ports


# --- against libslirp (root) -------------------------------------------------------------------------

@pytest.fixture(params=["ipv4", "ipv6"])
def slirp(request):
    yield from started(SlirpStack, request.param)


@pytest.mark.root
@built
def test_smoke_cases_pass_against_slirp_with_its_label(tmp_path):
    assert_smoke_outcomes("slirp", SMOKE, tmp_path, {"teardown.fin-sequence-numbers": "passed",
                                                     "teardown.time-wait-fin-retransmission": "passed"})


@pytest.mark.root
@built
def test_pump_and_host_side(slirp):
    hello = slirp.app.hello()
    assert hello["version"] == 1 and hello["stack"] == "slirp" and hello["system"] == "libslirp 4.7.0"
    assert hello["options"] == ["SO_LINGER", "SO_OOBINLINE", "SO_REUSEADDR"]
    assert slirp.version().startswith("libslirp 4.7.0")
    assert slirp.link.sut_mac.startswith("52:5")           # slirp's own MAC, derived from its address
    with pytest.raises(AppError) as e:
        slirp.host.control("frobnicate")
    assert e.value.error == "EOPNOTSUPP" and "hostfwd" in e.value.message
    with pytest.raises(AppError) as e:
        slirp.host.control("hostfwd 127.0.0.1 nope 198.18.0.2 1")
    assert e.value.error == "EINVAL"
    # an active open: the forwarding rule makes slirp connect to the guest from the client's port
    conn = slirp.app.connect(slirp.peer_addr, 40001, bind_port=2222)
    deadline = 2.0
    assert slirp.wait_for_state(2222, 40001, "SYN-SENT", deadline) is not None, slirp.states()
    slirp.app.setsockopt(conn, "SO_LINGER", [1, 0])
    with pytest.raises(AppError) as e:
        slirp.app.setsockopt(conn, "TCP_NODELAY", 1)
    assert e.value.error == "EOPNOTSUPP"


@pytest.mark.root
@built
# slirp's first RTO is 1.5 s (rto_min in its profile): first-rto-delay-a2 holds it 1.5 s late
@pytest.mark.parametrize("control", ["fin-seq+1", "first-rto-delay-a2"])
def test_smoke_cases_fail_against_slirp_when_broken(run_case, control):
    """Negative controls through the slirp adapter: the checked behaviour
    broken on the TAP link fails the case, naming its requirement."""
    assert_broken_case_fails(run_case, "slirp", control)
