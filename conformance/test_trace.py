"""How the report shows an exchange: the seed note's tcpdump captures (S9).

The tester is the note's client, the SUT its server (port 23 in the note).
The case checks the stack's numbering (RFC 9293 §3.4: a SYN and a FIN each
occupy one sequence number, data starts at ISN+1) through the trace's two
tcpdump views, line by line against the note's capture.
"""
import re

import pytest

from harness.verdict import require

# The seed note's SYN options: [mss 1460,nop,wscale 8,nop,nop,sackOK].
NOTE_SYN_OPTIONS = [("MSS", 1460), ("NOP", None), ("WScale", 8), ("NOP", None), ("NOP", None), ("SAckOK", b"")]
GREETING = b"tcpconf ready\r\n"      # the note's server sends 15 octets
REPLY = b"q\n"                      # its client 2

# The note's capture in tcpdump's default view, one line per segment:
# (sender, flags, what follows "Flags [..]" other than win and options). The
# first segment of each direction is absolute: {C} the client's ISN, {S} the
# server's. With -S every number is absolute: C+n and S+n.
NOTE = [
    ("client", "S", "seq {C}"),
    ("server", "S.", "seq {S}, ack {C+1}"),
    ("client", ".", "ack {S+1}"),
    ("server", "P.", "seq {S+1}:{S+16}, ack {C+1}, length 15"),
    ("client", ".", "ack {S+16}"),
    ("client", "P.", "seq {C+1}:{C+3}, ack {S+16}, length 2"),
    ("server", ".", "ack {C+3}"),
    ("client", "F.", "seq {C+3}, ack {S+16}"),
    ("server", "F.", "seq {S+16}, ack {C+4}"),
    ("client", ".", "ack {S+17}"),
]
# The server may acknowledge the client's FIN before it sends its own.
FIN_ACK = ("server", ".", "ack {C+4}")


def expected_lines(note, c_isn: int, s_isn: int, relative: bool) -> list[str]:
    """The note's lines with numbers: relative after each direction's first
    segment (tcpdump's default), or all absolute (tcpdump -S)."""
    first = {"client": True, "server": True}
    out = []
    for sender, flags, rest in note:
        absolute = not relative or first[sender]
        first[sender] = False

        def number(m):
            side, offset = m.group(1), int(m.group(2) or 0)
            base = c_isn if side == "C" else s_isn
            return str((base + offset) % (1 << 32) if absolute else offset)
        other = "server" if sender == "client" else "client"
        out.append(f"{sender} > {other}: Flags [{flags}], " + re.sub(r"\{([CS])(?:\+(\d+))?\}", number, rest))
    return out


def essentials(line: str) -> str:
    """A tcpdump line without what the note does not fix: time, IP version,
    ports, window, options, `length 0`, and PSH, which the sender chooses."""
    line = re.sub(r"^\s*[\d.]+ IP6? ", "", line)
    line = re.sub(r"(client|server)\.\d+", r"\1", line)
    line = re.sub(r", win \d+", "", line)
    line = re.sub(r", options \[[^\]]*\]", "", line)
    line = re.sub(r", length 0$", "", line)
    return line.replace("[P.]", "[.]").replace("[FP.]", "[F.]")


@pytest.mark.case("trace.relative-and-absolute")
@pytest.mark.requires("app")
def test_tcpdump_relative_and_absolute(stack, peer, app, observed):
    """The seed note's exchange, replayed against the SUT, reads as the note's capture both ways."""
    trace = peer.trace
    trace.names.update({(peer.addr, peer.port): f"client.{peer.port}",
                        (peer.sut_addr, peer.sut_port): f"server.{peer.sut_port}"})
    listener = app.listen(peer.sut_port)
    peer.send("S", window=64240, options=NOTE_SYN_OPTIONS)
    synack = peer.expect("SA", what="a listening SUT answers the note's SYN")
    s_isn = synack.seq
    peer.window = 4106
    peer.send("A", ack=s_isn + 1)
    conn = app.accept(listener)
    app.send(conn, GREETING)
    peer.expect("A", what="the SUT sends the 15 octets of its greeting")
    peer.send("A", ack=s_isn + 16)
    peer.send("PA", data=REPLY, ack=s_isn + 16)
    peer.expect("A", within=0.5, what="the SUT acknowledges the client's 2 octets")
    app.recv_exactly(conn, len(REPLY))
    fin_sent_at = len(trace.entries)
    peer.send("FA", ack=s_isn + 16)
    # The server closes after the client's FIN has reached it (a SUT a path
    # away gets it later than it is sent): its application reads the end.
    require(app.recv(conn) == b"", "RFC9293/MUST-12", "the client's FIN reaches the server: end of data",
            "end of data", "more data")
    app.close(conn)
    peer.expect("FA", what="the SUT closes after the client: its FIN",
                skip=lambda s: s.flags == frozenset("A") and not s.payload)
    peer.send("A", ack=s_isn + 17)

    acked_fin_first = any(peer.mine(e) and e.flags == frozenset("A") for e in trace.entries[fin_sent_at:])
    note = NOTE[:8] + ([FIN_ACK] if acked_fin_first else []) + NOTE[8:]
    for relative, view in ((True, "tcpdump (relative sequence numbers)"), (False, "tcpdump -S (absolute)")):
        want = [essentials(line) for line in expected_lines(note, peer.iss, s_isn, relative)]
        # Only the exchange's segments: a shared link may carry other packets
        # (neighbour discovery, MLD reports of a remote host).
        seen = [essentials(line) for line in trace.tcpdump(relative).splitlines()
                if " client." in line and " server." in line]
        observed[f"{'relative' if relative else 'absolute'}_view"] = seen
        require(len(seen) == len(want), "RFC9293/3.4", f"{view}: one line per segment of the note's exchange",
                f"{len(want)} lines", f"{len(seen)} lines")
        for n, (w, s) in enumerate(zip(want, seen), 1):
            require(w == s, "RFC9293/3.4",
                    f"{view}, line {n}: SYN and FIN occupy one sequence number each, data starts at ISN+1",
                    w, s)
