"""A connection brought into any RFC 9293 state on demand, on any stack with app control.

Rules of this file:
- One way for every case to reach a state: CLOSED (nothing listens),
  LISTEN, SYN-SENT, SYN-RECEIVED (passive, or by simultaneous open),
  ESTABLISHED (the SUT as server or as client), FIN-WAIT-1, FIN-WAIT-2,
  CLOSING, TIME-WAIT, CLOSE-WAIT and LAST-ACK, each by the exchange of RFC
  9293's figures, the peer's side played by the Peer.
- Every step checks the SUT's answer on the wire, and the state reached is
  awaited through the stack's state report where it has one (a state our
  segment brings about is awaited until a deadline, never sampled once).
- The SUT closes with shutdown(SHUT_WR), not close(): its socket stays open
  for reading, so text keeps being processed in FIN-WAIT-1 and -2 as the
  RFC's seventh check says, and no orphan timer ends the state. A listener
  is closed once its connection is accepted, so that nothing else on the
  port answers for the connection.
- The SUT sends ten octets once established and the peer acknowledges them:
  SND.UNA is then a sequence number that acknowledged data, not the SYN.
- `tcb()` gives the SUT's variables as the peer knows them, in the names of
  harness/rules.py, for the oracle.
"""
from __future__ import annotations

from .rules import SYNCHRONIZED, Segment as RuleSegment, judge
from .segment import MOD
from .verdict import ConformanceFailure

DATA = b"0123456789"        # the SUT's ten octets


class Unreachable(Exception):
    """The stack documents that it cannot reach the state this way (the
    case is skipped with this reason)."""


class Connection:
    def __init__(self, stack, peer, app, overrides=(), rng=None):
        self.stack, self.peer, self.app = stack, peer, app
        self.overrides = tuple(overrides)
        self.state = "CLOSED"
        self.passive = True
        self.listener = self.conn = None
        self.snd_una = None               # the SUT's SND.UNA: what the peer has acknowledged
        self.any = (rng.getrandbits(32) if rng else 0x1234567) % MOD
        self.rtt = 0.0                    # the slowest answer seen while building

    # --- what the oracle needs ------------------------------------------------------------
    def tcb(self) -> dict:
        p = self.peer
        tcb = {"IRS": p.iss, "ANY": self.any, "PASSIVE": self.passive}
        if self.state in ("CLOSED", "LISTEN"):
            return tcb
        tcb.update(ISS=p.irs, SND_UNA=self.snd_una, SND_NXT=p.rcv_nxt)
        if self.state in SYNCHRONIZED:
            tcb.update(RCV_NXT=p.snd_nxt % MOD, RCV_WND=p.sut_window, MAX_SND_WND=self.max_snd_wnd())
        return tcb

    def max_snd_wnd(self) -> int:
        """MAX.SND.WND: the largest window the peer has advertised on this
        connection, as the SUT reads it (scaled after the SYNs when both
        offered window scaling)."""
        p = self.peer
        shift = dict(p.syn_options).get("WScale", 0) if p.sut_wscale is not None else 0
        best = 0
        for e in p.trace.segments():
            if e.sent_by == "peer" and e.sport == p.port and e.dport == p.sut_port:
                best = max(best, e.window << (0 if e.syn else min(shift, 14)))
        return best

    # --- reaching a state -------------------------------------------------------------------
    def reach(self, state: str, variant: str = "") -> "Connection":
        getattr(self, "_" + state.lower().replace("-", "_"))(variant)
        self.state = state
        self.await_state(state, "RFC9293/3.10.7", f"the connection was brought into {state}")
        return self

    def _closed(self, _):
        pass

    def _listen(self, _):
        self.listener = self.app.listen(self.peer.sut_port)

    def _syn_sent(self, _):
        p = self.peer
        self.conn = self.app.connect(p.addr, p.port, bind_port=p.sut_port)
        self.peer.expect("S", requirement="RFC9293/3.10.1", what="OPEN (active) sends a SYN: SYN-SENT")
        self.snd_una = p.irs

    def _syn_received(self, variant):
        p = self.peer
        if variant == "simultaneous":
            self._syn_sent(variant)
            self.passive = False
            documented = judge("SYN-SENT", self.tcb(), RuleSegment(frozenset("S"), p.iss), self.overrides).documented
            if documented.next != "SYN-RECEIVED":
                row = documented.decided_by.id
                raise Unreachable(f"stack {self.stack.name} documents no simultaneous open "
                                  f"(row {row}: {documented.decided_by.text})")
            self._answered(p.send("S"), "SA", seq=p.irs, ack=p.iss + 1, requirement="RFC9293/3.10.7.3",
                           what="SYN-SENT, a SYN without ACK: SYN-RECEIVED, <SEQ=ISS><ACK=RCV.NXT><CTL=SYN,ACK>")
        else:
            self._listen(variant)
            self._answered(p.send("S"), "SA", ack=p.iss + 1, requirement="RFC9293/3.10.7.2",
                           what="LISTEN, a SYN: SYN-RECEIVED, <SEQ=ISS><ACK=RCV.NXT><CTL=SYN,ACK>")
            self.snd_una = p.irs

    def _established(self, variant):
        p = self.peer
        if variant == "client":
            self.conn = self.app.connect(p.addr, p.port, bind_port=p.sut_port)
            self.peer.expect("S", requirement="RFC9293/3.10.1", what="OPEN (active) sends a SYN: SYN-SENT")
            self.snd_una, self.state, self.passive = p.irs, "SYN-SENT", False
            synack = RuleSegment(frozenset("SA"), p.iss, p.irs + 1)
            documented = judge("SYN-SENT", self.tcb(), synack, self.overrides).documented
            sent = p.send("SA")
            for answer in documented.answers:      # the RFC's ACK, or what the stack's profile documents
                self._answered(sent, "".join(sorted(answer.ctl)), seq=answer.seq, ack=answer.ack,
                               requirement="RFC9293/3.10.7.3",
                               what="SYN-SENT, a SYN-ACK acknowledging its SYN: ESTABLISHED, "
                                    "<SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK>")
        else:
            self._listen(variant)
            self._answered(p.send("S"), "SA", ack=p.iss + 1, requirement="RFC9293/3.10.7.2",
                           what="LISTEN, a SYN: SYN-RECEIVED, <SEQ=ISS><ACK=RCV.NXT><CTL=SYN,ACK>")
            p.send("A")
            self.conn = self.app.accept(self.listener)
            self.app.close(self.listener)
            self.listener = None
        self.app.send(self.conn, DATA)
        self.peer.expect("A", seq=p.rcv_nxt, ack=p.snd_nxt, data=DATA, requirement="RFC9293/3.10.7.4",
                 what="ESTABLISHED: the SUT's application data is sent from SND.NXT")
        p.send("A")
        self.snd_una = p.rcv_nxt

    def _fin_wait_1(self, _):
        self._established("server")
        self._close()

    def _close(self):
        p = self.peer
        self.app.shutdown(self.conn, "wr")
        self.peer.expect("FA", seq=p.rcv_nxt, ack=p.snd_nxt, requirement="RFC9293/3.10.4",
                 what="CLOSE: the SUT sends <SEQ=SND.NXT><CTL=FIN,ACK>")

    def _fin_wait_2(self, _):
        self._fin_wait_1("")
        self.peer.send("A")
        self.snd_una = self.peer.rcv_nxt
        self.await_state("FIN-WAIT-2", "RFC9293/3.10.7.4", "FIN-WAIT-1: the ACK of its FIN enters FIN-WAIT-2")

    def _closing(self, _):
        p = self.peer
        self._fin_wait_1("")
        self.state = "FIN-WAIT-1"
        fin = (p.rcv_nxt - 1) % MOD
        crossing = RuleSegment(frozenset("FA"), p.snd_nxt, fin)
        documented = judge("FIN-WAIT-1", self.tcb(), crossing, self.overrides).documented
        sent = p.send("FA", ack=fin)
        for answer in documented.answers:      # the RFC's ACK, or what the stack's profile documents
            self._answered(sent, "".join(sorted(answer.ctl)), seq=answer.seq, ack=answer.ack,
                           requirement="RFC9293/3.10.7.4",
                           what="FIN-WAIT-1, a FIN not acknowledging its own: CLOSING, the FIN is acknowledged")

    def _time_wait(self, _):
        p = self.peer
        self._fin_wait_2("")
        self._answered(p.send("FA"), "A", seq=p.rcv_nxt, ack=p.snd_nxt, requirement="RFC9293/3.10.7.4",
                       what="FIN-WAIT-2, a FIN: TIME-WAIT, the FIN is acknowledged")

    def _close_wait(self, _):
        p = self.peer
        self._established("server")
        self._answered(p.send("FA"), "A", seq=p.rcv_nxt, ack=p.snd_nxt, requirement="RFC9293/3.10.7.4",
                       what="ESTABLISHED, a FIN: CLOSE-WAIT, the FIN is acknowledged")

    def _last_ack(self, _):
        self._close_wait("")
        self._close()

    def _answered(self, sent, flags, seq=None, ack=None, *, requirement, what):
        """The SUT answers the segment just sent; keeps the slowest answer time."""
        seg = self.peer.expect(flags, seq=seq, ack=ack, requirement=requirement, what=what)
        self.rtt = max(self.rtt, seg.t - sent.t)
        return seg

    # --- states -------------------------------------------------------------------------------
    def observed(self, state: str) -> str | None:
        """What the stack's state report shows for this 4-tuple in `state`:
        None where no socket exists (CLOSED, and LISTEN: only the listener)."""
        return None if state in ("CLOSED", "LISTEN") else state

    def await_state(self, state: str, requirement: str, what: str, within: float = 0.5) -> None:
        """Wait until the stack reports `state` for this connection (stacks
        without a state report: the wire already proved it)."""
        __tracebackhide__ = True
        if "state" not in self.stack.capabilities:
            return
        p, want = self.peer, self.observed(state)
        if self.stack.wait_for_state(p.sut_port, p.port, want, within) is None:
            seen = self.stack.state_of(p.sut_port, p.port)
            raise ConformanceFailure(requirement, what, want or f"{state} (no socket for the connection)",
                                     seen or "no socket for the connection")
        if state == "LISTEN":
            listening = any(s["state"] == "LISTEN" for s in self.stack.states(p.sut_port)
                            if s["local"][1] == p.sut_port)
            if not listening:
                raise ConformanceFailure(requirement, what, "a socket in LISTEN on the port", "none")
