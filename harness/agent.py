"""App control: the application side of the stack under test.

Rules of this file:
- Standard library only. `python -m harness.agent` must run on any host
  with Python 3.8+, copied there as a single file, to drive that host's
  sockets for the suite.
- One protocol for every stack (this agent, the lwIP agent in C, the gVisor
  agent in Go): JSON lines, one request and one reply per line. It is
  described in PROTOCOL below and in README.md; a change to it bumps VERSION.
- The same SocketHost serves the in-process Linux stack (called directly,
  no serialisation) and remote hosts (over a stream socket or stdio), so the
  semantics of every operation live here once.

Theory of operation: the case calls App methods (listen, connect, send...);
App turns each into a request dict; a transport carries it to a SocketHost
(or an agent of another stack) that performs it and answers with a reply
dict; App turns a failed reply into AppError carrying the errno name.
"""
from __future__ import annotations

import base64
import errno
import json
import os
import select
import socket
import struct
import sys
import threading
import time

VERSION = 1

PROTOCOL = """\
tcpconf app-control protocol, version 1

Transport: a byte stream (TCP, unix socket or the agent's stdin/stdout).
Each request is one JSON object on one line; each reply is one JSON object
on one line, in order. Binary data travels base64-encoded.

Every reply has "ok": true with the operation's results, or "ok": false with
"error" (an errno name such as "ECONNREFUSED", "EAGAIN" for a timeout,
"EOPNOTSUPP" for an unknown operation or option, "EINVAL" for bad arguments)
and "message" (one line for a human).

  {"op":"hello"}                                   -> {"version":1,"stack":..,"ops":[..],"options":[..]}
  {"op":"listen","family":"ipv4","address":A,"port":P,"backlog":N,"options":{..}} -> {"id":S}
  {"op":"accept","id":S,"timeout":T}               -> {"id":C,"peer":[addr,port]}
  {"op":"connect","family":F,"address":A,"port":P,"bind":[addr,port]|null,"options":{..}} -> {"id":C}
        (non-blocking: returns at once, the SYN is on its way)
  {"op":"send","id":C,"data":B64,"timeout":T}      -> {"sent":N}
  {"op":"recv","id":C,"max":N,"timeout":T}         -> {"data":B64}   ("" = end of stream)
  {"op":"shutdown","id":C,"how":"rd"|"wr"|"rdwr"}  -> {}
  {"op":"close","id":C}                            -> {}
  {"op":"setsockopt","id":C,"name":NAME,"value":V} -> {}
  {"op":"getsockopt","id":C,"name":NAME}           -> {"value":V}
  {"op":"error","id":C}                            -> {"error":ERRNO_NAME|null}   (pending socket error)
  {"op":"state","port":P|null}                     -> {"sockets":[{"local":[a,p],"remote":[a,p],"state":RFC_NAME}]}
        (where the stack can report TCP state; RFC 9293 state names, e.g. "SYN-RECEIVED";
        a socket may add "rcv_wnd": its receive window in octets, which a scaled window
        field shows only rounded down)
  {"op":"sysctl","name":"net.ipv4.tcp_synack_retries","value":V|null} -> {"value":OLD}
        (agents on hosts with tunables; sets it when value is given)
  {"op":"forget","address":A}                      -> {"forgot":true|false}
        (drop what the host's TCP keeps about a peer address between connections,
        RFC 2140's temporal sharing: Linux's tcp_metrics, with RTT, RTTVAR, ssthresh
        and cwnd, which a new connection to the same address starts from)
  {"op":"poll","fds":[[C,["POLLIN","POLLOUT"]],..],"timeout":T} -> {"revents":[["POLLOUT"],..]}
        (poll(2) over the agent's sockets; event names as Linux spells them)
  {"op":"ioctl","id":C,"name":"SIOCINQ"|"SIOCOUTQ"|"SIOCOUTQNSD"} -> {"value":N}
        (octets readable; not yet acknowledged; not yet sent)
  {"op":"bye"}                                     -> {} and the agent closes every socket of this session

send and recv take "flags": message flags by name (MSG_PEEK, MSG_MORE,
MSG_OOB...); hello's "flags" lists the ones an agent knows. hello's "ops",
"options" and "flags" say what an agent offers: a client asks before it
relies on an operation, and an agent answers EOPNOTSUPP for what it lacks.

Option names: SO_REUSEADDR SO_KEEPALIVE SO_RCVBUF SO_SNDBUF SO_LINGER ([on, secs])
TCP_NODELAY TCP_MAXSEG TCP_KEEPIDLE TCP_KEEPINTVL TCP_KEEPCNT TCP_SYNCNT
TCP_LINGER2 TCP_DEFER_ACCEPT TCP_WINDOW_CLAMP TCP_USER_TIMEOUT TCP_QUICKACK
TCP_FASTOPEN TCP_FASTOPEN_CONNECT TCP_CONGESTION (string), SO_OOBINLINE, IP_TOS
IPV6_TCLASS IP_TTL IPV6_UNICAST_HOPS (the IP header fields of the socket's
segments), IP_RECVERR IPV6_RECVERR (ICMP errors reported to the application:
"error" returns them), and TCP_INFO, read-only: an
object with the SUT's own view of the connection (struct tcp_info's fields
without the tcpi_ prefix: state as its RFC 9293 name, rto, ato, rtt, rttvar
in microseconds, retransmits, backoff, snd_mss, rcv_mss, unacked,
snd_cwnd...), which cases use where a timer follows the SUT's RTT and
packetdrill's %{ }% blocks read. An agent answers EOPNOTSUPP for the ones its
stack lacks.
"""

SOL_TCP = socket.IPPROTO_TCP
# name -> (level, optname, kind); kind: int, linger, str, tcp_info
OPTIONS = {
    "SO_REUSEADDR": (socket.SOL_SOCKET, socket.SO_REUSEADDR, "int"),
    "SO_KEEPALIVE": (socket.SOL_SOCKET, socket.SO_KEEPALIVE, "int"),
    "SO_RCVBUF": (socket.SOL_SOCKET, socket.SO_RCVBUF, "int"),
    "SO_SNDBUF": (socket.SOL_SOCKET, socket.SO_SNDBUF, "int"),
    "SO_LINGER": (socket.SOL_SOCKET, socket.SO_LINGER, "linger"),
    "TCP_NODELAY": (SOL_TCP, getattr(socket, "TCP_NODELAY", 1), "int"),
    "TCP_MAXSEG": (SOL_TCP, getattr(socket, "TCP_MAXSEG", 2), "int"),
    "TCP_KEEPIDLE": (SOL_TCP, getattr(socket, "TCP_KEEPIDLE", 4), "int"),
    "TCP_KEEPINTVL": (SOL_TCP, getattr(socket, "TCP_KEEPINTVL", 5), "int"),
    "TCP_KEEPCNT": (SOL_TCP, getattr(socket, "TCP_KEEPCNT", 6), "int"),
    "TCP_SYNCNT": (SOL_TCP, getattr(socket, "TCP_SYNCNT", 7), "int"),
    "TCP_LINGER2": (SOL_TCP, getattr(socket, "TCP_LINGER2", 8), "int"),
    "TCP_DEFER_ACCEPT": (SOL_TCP, getattr(socket, "TCP_DEFER_ACCEPT", 9), "int"),
    "TCP_WINDOW_CLAMP": (SOL_TCP, getattr(socket, "TCP_WINDOW_CLAMP", 10), "int"),
    "TCP_QUICKACK": (SOL_TCP, getattr(socket, "TCP_QUICKACK", 12), "int"),
    "TCP_CONGESTION": (SOL_TCP, getattr(socket, "TCP_CONGESTION", 13), "str"),
    "TCP_USER_TIMEOUT": (SOL_TCP, getattr(socket, "TCP_USER_TIMEOUT", 18), "int"),
    "TCP_FASTOPEN": (SOL_TCP, getattr(socket, "TCP_FASTOPEN", 23), "int"),
    "TCP_INFO": (SOL_TCP, getattr(socket, "TCP_INFO", 11), "tcp_info"),        # read-only
    # RFC 7413 (coverage-rfcs): a client's Fast Open. Set before connect, the
    # SYN waits for the first send and carries its data with a cached cookie
    # (or a cookie request without one).
    "TCP_FASTOPEN_CONNECT": (SOL_TCP, getattr(socket, "TCP_FASTOPEN_CONNECT", 30), "int"),
    # urgent data and the IP header of the socket's segments (coverage-9293)
    "SO_OOBINLINE": (socket.SOL_SOCKET, getattr(socket, "SO_OOBINLINE", 10), "int"),
    "IP_TOS": (socket.IPPROTO_IP, getattr(socket, "IP_TOS", 1), "int"),
    "IP_TTL": (socket.IPPROTO_IP, getattr(socket, "IP_TTL", 2), "int"),
    "IP_RECVERR": (socket.IPPROTO_IP, getattr(socket, "IP_RECVERR", 11), "int"),
    "IPV6_TCLASS": (socket.IPPROTO_IPV6, getattr(socket, "IPV6_TCLASS", 67), "int"),
    "IPV6_UNICAST_HOPS": (socket.IPPROTO_IPV6, getattr(socket, "IPV6_UNICAST_HOPS", 16), "int"),
    "IPV6_RECVERR": (socket.IPPROTO_IPV6, getattr(socket, "IPV6_RECVERR", 25), "int"),
}

# struct tcp_info (include/uapi/linux/tcp.h), field by field in the kernel's
# order (up to tcpi_total_rto_time, Linux 6.7): its u8s, then (name, format)
# in layout order without padding; the times in microseconds, as the kernel
# reports them. An older kernel returns a shorter struct: the fields it
# lacks are left out.
TCP_INFO_U8 = ("state", "ca_state", "retransmits", "probes", "backoff", "options", "wscales", "app_limited_bits")
TCP_INFO_LAYOUT = [(n, "I") for n in (
    "rto", "ato", "snd_mss", "rcv_mss", "unacked", "sacked", "lost", "retrans", "fackets",
    "last_data_sent", "last_ack_sent", "last_data_recv", "last_ack_recv", "pmtu", "rcv_ssthresh", "rtt",
    "rttvar", "snd_ssthresh", "snd_cwnd", "advmss", "reordering", "rcv_rtt", "rcv_space", "total_retrans")] + [
    ("pacing_rate", "Q"), ("max_pacing_rate", "Q"), ("bytes_acked", "Q"), ("bytes_received", "Q"),
    ("segs_out", "I"), ("segs_in", "I"), ("notsent_bytes", "I"), ("min_rtt", "I"), ("data_segs_in", "I"),
    ("data_segs_out", "I"), ("delivery_rate", "Q"), ("busy_time", "Q"), ("rwnd_limited", "Q"),
    ("sndbuf_limited", "Q"), ("delivered", "I"), ("delivered_ce", "I"), ("bytes_sent", "Q"),
    ("bytes_retrans", "Q"), ("dsack_dups", "I"), ("reord_seen", "I"), ("rcv_ooopack", "I"), ("snd_wnd", "I"),
    ("rcv_wnd", "I"), ("rehash", "I"), ("total_rto", "H"), ("total_rto_recoveries", "H"), ("total_rto_time", "I")]
TCP_INFO_SIZE = 8 + sum(struct.calcsize("=" + f) for _, f in TCP_INFO_LAYOUT)


def decode_tcp_info(raw: bytes) -> dict:
    """struct tcp_info as {field: value}, without the tcpi_ prefix; `state`
    by its RFC 9293 name (`state_number` Linux's), the window scales split."""
    if len(raw) < 8:
        return {}
    out = dict(zip(TCP_INFO_U8, raw[:8]))
    wscales, bits = out.pop("wscales"), out.pop("app_limited_bits")
    out.update(snd_wscale=wscales & 0xF, rcv_wscale=wscales >> 4, delivery_rate_app_limited=bits & 1,
               fastopen_client_fail=(bits >> 1) & 3)
    at = 8
    for name, fmt in TCP_INFO_LAYOUT:
        size = struct.calcsize("=" + fmt)
        if at + size > len(raw):
            break
        out[name] = struct.unpack_from("=" + fmt, raw, at)[0]
        at += size
    out["state_number"] = out["state"]
    out["state"] = LINUX_STATES.get(out["state"], str(out["state"]))
    return out

FAMILIES = {"ipv4": socket.AF_INET, "ipv6": socket.AF_INET6}

# More Linux integer options, for packetdrill scripts (harness/packetdrill):
# what the public corpora set most after the protocol's own.
OPTIONS.update({name: (level, num, "int") for name, level, num in (
    ("TCP_CORK", SOL_TCP, 3), ("TCP_THIN_LINEAR_TIMEOUTS", SOL_TCP, 16), ("TCP_NOTSENT_LOWAT", SOL_TCP, 25),
    ("TCP_FASTOPEN_NO_COOKIE", SOL_TCP, 34), ("TCP_INQ", SOL_TCP, 36),
    ("SO_RCVLOWAT", socket.SOL_SOCKET, 18), ("SO_MARK", socket.SOL_SOCKET, 36), ("SO_ZEROCOPY", socket.SOL_SOCKET, 60),
    ("IP_MTU_DISCOVER", socket.IPPROTO_IP, 10), ("IP_FREEBIND", socket.IPPROTO_IP, 15))})

# poll(2) events by name (Linux values), ioctls on a TCP socket, and the
# message flags send and recv take (the `flags` list of hello).
POLL_EVENTS = {"POLLIN": 0x1, "POLLPRI": 0x2, "POLLOUT": 0x4, "POLLERR": 0x8, "POLLHUP": 0x10, "POLLNVAL": 0x20,
               "POLLRDNORM": 0x40, "POLLRDBAND": 0x80, "POLLWRNORM": 0x100, "POLLWRBAND": 0x200,
               "POLLRDHUP": 0x2000}
IOCTLS = {"SIOCINQ": 0x541B, "FIONREAD": 0x541B, "SIOCOUTQ": 0x5411, "SIOCOUTQNSD": 0x894B,
          "SIOCATMARK": 0x8905}
MSG_FLAGS = {"MSG_OOB": ("send", "recv"), "MSG_PEEK": ("recv",), "MSG_TRUNC": ("recv",),
             "MSG_MORE": ("send",), "MSG_EOR": ("send",), "MSG_NOSIGNAL": ("send",)}


def _timeval(seconds: float) -> bytes:
    """A struct timeval; a positive time never rounds to 0 (no timeout at all)."""
    whole = int(seconds)
    usec = int((seconds - whole) * 1e6)
    return struct.pack("ll", whole, max(usec, 1) if seconds > 0 and not whole else usec)


def msg_flags(names, op: str) -> int:
    """The flag bits of a send or recv request's `flags` names."""
    bits = 0
    for name in names or ():
        if op not in MSG_FLAGS.get(name, ()):
            raise AppError("EOPNOTSUPP", f"{op} takes no flag {name!r} here; it takes "
                                         f"{', '.join(n for n, ops in MSG_FLAGS.items() if op in ops)}")
        bits |= getattr(socket, name)
    return bits

# Linux TCP states (include/net/tcp_states.h) by their RFC 9293 names.
LINUX_STATES = {
    1: "ESTABLISHED", 2: "SYN-SENT", 3: "SYN-RECEIVED", 4: "FIN-WAIT-1", 5: "FIN-WAIT-2",
    6: "TIME-WAIT", 7: "CLOSED", 8: "CLOSE-WAIT", 9: "LAST-ACK", 10: "LISTEN", 11: "CLOSING",
    12: "SYN-RECEIVED",
}


class AppError(Exception):
    """An operation failed on the stack under test; `error` is the errno name."""

    def __init__(self, error: str, message: str = ""):
        self.error = error
        self.message = message
        super().__init__(f"{error}: {message}" if message else error)


def _errname(e: OSError) -> str:
    if isinstance(e, (socket.timeout, TimeoutError)) and not e.errno:
        return "EAGAIN"
    return errno.errorcode.get(e.errno, "EIO")


class SocketHost:
    """Performs protocol requests on this host's sockets.

    `make_socket(family)` creates a socket; the Linux stack passes one that
    creates it inside the SUT's network namespace.
    """

    stack = "python"

    def __init__(self, make_socket=None):
        self.make_socket = make_socket or (lambda fam: socket.socket(fam, socket.SOCK_STREAM))
        self.socks: dict[int, socket.socket] = {}
        self.next_id = 1

    # --- dispatch ---------------------------------------------------------------
    def dispatch(self, req: dict) -> dict:
        op = req.get("op")
        fn = getattr(self, "op_" + str(op), None)
        if fn is None:
            return {"ok": False, "error": "EOPNOTSUPP",
                    "message": f"unknown operation {op!r}; protocol {VERSION} knows {', '.join(self.ops())}"}
        args = {k: v for k, v in req.items() if k != "op"}
        try:
            out = fn(**args)
        except AppError as e:
            return {"ok": False, "error": e.error, "message": e.message}
        except OSError as e:
            return {"ok": False, "error": _errname(e), "message": f"{op}: {e.strerror or e}"}
        except (TypeError, ValueError, KeyError) as e:
            return {"ok": False, "error": "EINVAL", "message": f"{op}: bad arguments: {e}"}
        out = dict(out or {})
        out["ok"] = True
        return out

    def ops(self) -> list:
        return sorted(n[3:] for n in dir(self) if n.startswith("op_"))

    def _sock(self, id) -> socket.socket:
        try:
            return self.socks[int(id)]
        except (KeyError, ValueError):
            raise AppError("EBADF", f"no socket with id {id!r}") from None

    def _add(self, s: socket.socket) -> int:
        i = self.next_id
        self.next_id += 1
        self.socks[i] = s
        return i

    def _apply(self, s: socket.socket, options: dict | None) -> None:
        for name, value in (options or {}).items():
            self.op_setsockopt_on(s, name, value)

    @staticmethod
    def op_setsockopt_on(s: socket.socket, name: str, value) -> None:
        if name not in OPTIONS:
            raise AppError("EOPNOTSUPP", f"unknown socket option {name!r}; known: {', '.join(sorted(OPTIONS))}")
        level, opt, kind = OPTIONS[name]
        if kind == "tcp_info":
            raise AppError("EINVAL", f"{name} can be read (getsockopt), not set")
        if kind == "linger":
            s.setsockopt(level, opt, struct.pack("ii", int(value[0]), int(value[1])))
        elif kind == "str":
            s.setsockopt(level, opt, str(value).encode())
        else:
            s.setsockopt(level, opt, int(value))

    # --- operations ---------------------------------------------------------------
    def op_hello(self, **_):
        return {"version": VERSION, "stack": self.stack, "ops": self.ops(), "options": sorted(OPTIONS),
                "flags": sorted(MSG_FLAGS)}

    def op_listen(self, family, address, port, backlog=16, options=None):
        s = self.make_socket(FAMILIES[family])
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._apply(s, options)
            s.bind((address, int(port)))
            s.listen(int(backlog))
        except BaseException:
            s.close()
            raise
        s.setblocking(False)
        return {"id": self._add(s)}

    def op_accept(self, id, timeout=1.0):
        s = self._sock(id)
        if not select.select([s], [], [], float(timeout))[0]:
            raise AppError("EAGAIN", f"no connection to accept within {timeout} s")
        c, peer = s.accept()
        c.setblocking(False)
        return {"id": self._add(c), "peer": list(peer[:2])}

    def op_connect(self, family, address, port, bind=None, options=None):
        s = self.make_socket(FAMILIES[family])
        try:
            self._apply(s, options)
            if bind:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind((bind[0], int(bind[1])))
            s.setblocking(False)
            err = s.connect_ex((address, int(port)))
        except BaseException:
            s.close()
            raise
        if err not in (0, errno.EINPROGRESS):
            s.close()
            raise AppError(errno.errorcode.get(err, "EIO"), f"connect to {address} port {port}: {os.strerror(err)}")
        return {"id": self._add(s)}

    def op_send(self, id, data, timeout=1.0, flags=None):
        """Send all of `data`, blocking as a blocking socket does (in the
        kernel, SO_SNDTIMEO = timeout: the writer wakes when the stack frees
        send memory, which poll's writability does not show) at most
        `timeout` seconds; {"sent": octets taken}. timeout 0: what fits now."""
        s = self._sock(id)
        buf = base64.b64decode(data)
        how = msg_flags(flags, "send")
        sent = 0
        deadline = time.monotonic() + float(timeout)
        try:
            while sent < len(buf):
                left = deadline - time.monotonic()
                s.setblocking(left > 0)
                if left > 0:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, _timeval(left))
                try:
                    sent += s.send(buf[sent:], how)
                except BlockingIOError:
                    break
        finally:
            if float(timeout) > 0:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, _timeval(0))
            s.setblocking(False)
        return {"sent": sent}

    def op_recv(self, id, max=65536, timeout=1.0, flags=None):
        s = self._sock(id)
        how = msg_flags(flags, "recv")
        ready = select.select([s], [], [s] if how & socket.MSG_OOB else [], float(timeout))
        if not ready[0] and not ready[2]:
            raise AppError("EAGAIN", f"nothing to read within {timeout} s")
        return {"data": base64.b64encode(s.recv(int(max), how)).decode()}

    def op_shutdown(self, id, how="wr"):
        hows = {"rd": socket.SHUT_RD, "wr": socket.SHUT_WR, "rdwr": socket.SHUT_RDWR}
        if how not in hows:
            raise AppError("EINVAL", f"shutdown how must be rd, wr or rdwr, not {how!r}")
        self._sock(id).shutdown(hows[how])
        return {}

    def op_close(self, id):
        self._sock(id).close()
        del self.socks[int(id)]
        return {}

    def op_setsockopt(self, id, name, value):
        self.op_setsockopt_on(self._sock(id), name, value)
        return {}

    def op_getsockopt(self, id, name):
        if name not in OPTIONS:
            raise AppError("EOPNOTSUPP", f"unknown socket option {name!r}")
        level, opt, kind = OPTIONS[name]
        s = self._sock(id)
        if kind == "linger":
            return {"value": list(struct.unpack("ii", s.getsockopt(level, opt, 8)))}
        if kind == "str":
            return {"value": s.getsockopt(level, opt, 64).split(b"\0")[0].decode()}
        if kind == "tcp_info":
            return {"value": decode_tcp_info(s.getsockopt(level, opt, TCP_INFO_SIZE))}
        return {"value": s.getsockopt(level, opt)}

    def op_error(self, id):
        err = self._sock(id).getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        return {"error": errno.errorcode.get(err, str(err)) if err else None}

    def op_state(self, port=None):
        """TCP states from /proc/net/tcp{,6} (Linux hosts)."""
        out = []
        for fam, path in (("ipv4", "/proc/net/tcp"), ("ipv6", "/proc/net/tcp6")):
            try:
                with open(path) as f:
                    lines = f.read().splitlines()[1:]
            except OSError:
                continue
            for line in lines:
                parts = line.split()
                local, remote, st = parts[1], parts[2], int(parts[3], 16)
                la, lp = _proc_addr(local, fam)
                ra, rp = _proc_addr(remote, fam)
                if port is not None and int(port) not in (lp, rp):
                    continue
                out.append({"local": [la, lp], "remote": [ra, rp], "state": LINUX_STATES.get(st, str(st))})
        return {"sockets": out}

    # --- operations packetdrill scripts need (poll, ioctl) ------------------------------
    def op_poll(self, fds, timeout=0.0):
        """poll(2) over the given sockets: fds = [[id, [event names]], ...];
        the reply's revents = [[event names], ...] in the same order."""
        p = select.poll()
        socks = []
        for entry in fds:
            id, events = entry
            s = self._sock(id)
            mask = 0
            for name in events:
                if name not in POLL_EVENTS:
                    raise AppError("EOPNOTSUPP", f"unknown poll event {name!r}; known: {', '.join(POLL_EVENTS)}")
                mask |= POLL_EVENTS[name]
            p.register(s.fileno(), mask)
            socks.append(s.fileno())
        ready = dict(p.poll(max(0, int(float(timeout) * 1000 + 0.999))))
        return {"revents": [[n for n, bit in POLL_EVENTS.items() if ready.get(fd, 0) & bit] for fd in socks]}

    def op_ioctl(self, id, name):
        """The socket's queue lengths: SIOCINQ (= FIONREAD: octets readable),
        SIOCOUTQ (octets not yet acknowledged), SIOCOUTQNSD (not yet sent);
        SIOCATMARK: 1 when the next octet to read is the urgent mark."""
        if name not in IOCTLS:
            raise AppError("EOPNOTSUPP", f"unknown ioctl {name!r}; known: {', '.join(sorted(IOCTLS))}")
        import fcntl
        raw = fcntl.ioctl(self._sock(id).fileno(), IOCTLS[name], b"\0" * 4)
        return {"value": struct.unpack("i", raw)[0]}

    def op_bye(self):
        self.close_all()
        return {}

    def close_all(self) -> None:
        for s in self.socks.values():
            try:
                s.close()
            except OSError:
                pass
        self.socks.clear()


def _proc_addr(text: str, family: str):
    addr, port = text.split(":")
    raw = bytes.fromhex(addr)
    if family == "ipv4":
        a = socket.inet_ntop(socket.AF_INET, raw[::-1])
    else:
        words = [raw[i:i + 4][::-1] for i in range(0, 16, 4)]
        a = socket.inet_ntop(socket.AF_INET6, b"".join(words))
    return a, int(port, 16)


# --- client side ----------------------------------------------------------------------

class App:
    """The case's handle on the application of the stack under test."""

    def __init__(self, call, family: str, address: str):
        self._call = call            # dict -> dict
        self.family = family
        self.address = address       # the SUT's address

    def call(self, op: str, **args) -> dict:
        for name in [args.get("name")] if op in ("setsockopt", "getsockopt") else list(args.get("options") or ()):
            if name not in OPTIONS:      # a typo in a case: an error, not a capability the stack lacks
                raise AppError("EINVAL", f"no socket option {name!r} in protocol {VERSION}; "
                                         f"known: {', '.join(sorted(OPTIONS))}")
        reply = self._call({"op": op, **args})
        if not reply.get("ok"):
            raise AppError(reply.get("error", "EIO"), reply.get("message", ""))
        return reply

    def hello(self) -> dict:
        return self.call("hello")

    def greet(self) -> dict:
        """The agent's hello, checked: an AppError (EPROTO) unless it speaks
        this protocol version."""
        hello = self.hello()
        if hello.get("version") != VERSION:
            raise AppError("EPROTO", f"the agent speaks protocol {hello.get('version')}, the suite {VERSION}")
        return hello

    def listen(self, port: int, backlog: int = 16, address: str | None = None, **options) -> int:
        """Listen on `port` of the SUT's address (or `address`: "0.0.0.0" or
        "::" for every address)."""
        return self.call("listen", family=self.family, address=address or self.address, port=port,
                         backlog=backlog, options=options)["id"]

    def accept(self, listener: int, timeout: float = 1.0) -> int:
        return self.call("accept", id=listener, timeout=timeout)["id"]

    def connect(self, address: str, port: int, bind_port: int | None = None, **options) -> int:
        bind = [self.address, bind_port] if bind_port else None
        return self.call("connect", family=self.family, address=address, port=port,
                         bind=bind, options=options)["id"]

    def send(self, conn: int, data: bytes, timeout: float = 1.0, flags: tuple = ()) -> int:
        extra = {"flags": list(flags)} if flags else {}
        return self.call("send", id=conn, data=base64.b64encode(data).decode(), timeout=timeout, **extra)["sent"]

    def recv(self, conn: int, max: int = 65536, timeout: float = 1.0, flags: tuple = ()) -> bytes:
        extra = {"flags": list(flags)} if flags else {}
        return base64.b64decode(self.call("recv", id=conn, max=max, timeout=timeout, **extra)["data"])

    def poll(self, conn: int, *events: str, timeout: float = 0.0) -> set:
        """The events of `events` (poll(2) names, e.g. POLLPRI) the socket has now."""
        return set(self.call("poll", fds=[[conn, list(events)]], timeout=timeout)["revents"][0])

    def ioctl(self, conn: int, name: str) -> int:
        return self.call("ioctl", id=conn, name=name)["value"]

    def recv_exactly(self, conn: int, n: int, timeout: float = 1.0) -> bytes:
        out = b""
        deadline = time.monotonic() + timeout
        while len(out) < n:
            chunk = self.recv(conn, n - len(out), max(0.0, deadline - time.monotonic()))
            if not chunk:
                break
            out += chunk
        return out

    def shutdown(self, conn: int, how: str = "wr") -> None:
        self.call("shutdown", id=conn, how=how)

    def close(self, conn: int) -> None:
        self.call("close", id=conn)

    def setsockopt(self, conn: int, name: str, value) -> None:
        self.call("setsockopt", id=conn, name=name, value=value)

    def getsockopt(self, conn: int, name: str):
        return self.call("getsockopt", id=conn, name=name)["value"]

    def tcp_info(self, conn: int) -> dict | None:
        """The SUT's own account of a connection (Linux TCP_INFO: rto, rtt,
        rttvar in microseconds, retransmits, backoff...), or None where the
        stack's app control offers none."""
        try:
            return self.getsockopt(conn, "TCP_INFO")
        except AppError as e:
            if e.error == "EOPNOTSUPP":
                return None
            raise

    def error(self, conn: int):
        return self.call("error", id=conn)["error"]

    def state(self, port: int | None = None) -> list:
        return self.call("state", port=port)["sockets"]


class StreamTransport:
    """Carries requests as JSON lines over a byte stream: a connected socket,
    or the pipes of an agent process. Every reply is awaited with a deadline,
    so a hung agent fails the case instead of hanging the run."""

    def __init__(self, rfd: int, wfd: int, timeout: float = 30.0, keep=None):
        self.rfd, self.wfd = rfd, wfd
        self.timeout = timeout
        self.buf = b""
        self.keep = keep                   # objects owning the descriptors

    def __call__(self, req: dict) -> dict:
        return json.loads(self.exchange(json.dumps(req), req.get("op"), float(req.get("timeout", 0) or 0)))

    def exchange(self, line: str, what, wait: float = 0.0) -> bytes:
        """Write one line, read the one line that answers it (`what` names
        the request in errors; `wait`: seconds the request itself may take)."""
        data = (line + "\n").encode()
        try:
            while data:
                data = data[os.write(self.wfd, data):]
        except (BrokenPipeError, ConnectionError):
            raise AppError("ECONNRESET", "the app-control agent is gone (did it crash?)") from None
        deadline = time.monotonic() + self.timeout + wait
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.rfd], [], [], left)[0]:
                raise AppError("ETIMEDOUT", f"the app-control agent did not answer {what!r} in time")
            chunk = os.read(self.rfd, 65536)
            if not chunk:
                raise AppError("ECONNRESET", "the app-control agent closed the connection (did it crash?)")
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return line


def connect_agent(where: str, timeout: float = 30.0) -> StreamTransport:
    """`host:port` or a unix socket path -> transport to a running agent."""
    if "/" in where:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        s.connect(where)
    else:
        host, _, port = where.rpartition(":")
        s = socket.create_connection((host.strip("[]"), int(port)), timeout=timeout)
    s.setblocking(True)
    return StreamTransport(s.fileno(), s.fileno(), timeout, keep=s)


# --- server side ------------------------------------------------------------------------

def serve_stream(host: SocketHost, rfile, wfile) -> None:
    for line in rfile:
        line = line.strip()
        if not line:
            continue
        req = None
        try:
            req = json.loads(line)
            reply = host.dispatch(req) if isinstance(req, dict) else {
                "ok": False, "error": "EINVAL", "message": "a request is a JSON object"}
        except json.JSONDecodeError as e:
            reply = {"ok": False, "error": "EINVAL", "message": f"not JSON: {e}"}
        wfile.write((json.dumps(reply) + "\n").encode())
        wfile.flush()
        if isinstance(req, dict) and req.get("op") == "bye":
            break
    host.close_all()


class AgentHost(SocketHost):
    """The standalone agent: SocketHost plus the host's tunables (Linux
    /proc/sys), so a remote SUT can be configured like a local namespace."""

    stack = sys.platform

    def op_hello(self, **_):
        import platform
        return dict(super().op_hello(), system=f"{platform.system()} {platform.release()} ({platform.machine()})")

    def op_sysctl(self, name, value=None):
        if not all(part.replace("_", "").replace("-", "").isalnum() for part in str(name).split(".")):
            raise AppError("EINVAL", f"bad sysctl name {name!r}")
        path = "/proc/sys/" + str(name).replace(".", "/")
        try:
            with open(path) as f:
                old = f.read().strip()
            if value is not None:
                with open(path, "w") as f:
                    f.write(str(value))
        except FileNotFoundError:
            raise AppError("ENOENT", f"no sysctl {name} on this host") from None
        return {"value": old}

    def op_forget(self, address):
        if not sys.platform.startswith("linux"):
            raise AppError("EOPNOTSUPP", "this host keeps no TCP metrics the agent knows of")
        try:
            return {"forgot": forget_tcp_metrics(str(address))}
        except ValueError:
            raise AppError("EINVAL", f"bad address {address!r}") from None
        except OSError as e:
            raise AppError(errno.errorcode.get(e.errno, "EIO"), f"tcp_metrics: {e.strerror}") from None


def forget_tcp_metrics(address: str) -> bool:
    """Delete the Linux TCP metrics (RFC 2140 temporal sharing) of one peer
    address in this namespace, as `ip tcp_metrics delete ADDRESS` does:
    generic netlink family "tcp_metrics", TCP_METRICS_CMD_DEL. False where
    none were kept."""
    import ipaddress

    def attr(kind: int, payload: bytes) -> bytes:
        data = struct.pack("HH", 4 + len(payload), kind) + payload
        return data + bytes(-len(data) % 4)

    def request(sock, family_id: int, cmd: int, attrs: bytes, flags: int) -> bytes:
        """Send one request; its reply, or raise the error the kernel sent."""
        body = struct.pack("BBH", cmd, 1, 0) + attrs                  # genlmsghdr: cmd, version 1
        sock.send(struct.pack("IHHII", 16 + len(body), family_id, 0x1 | flags, 0, 0) + body)   # NLM_F_REQUEST
        reply = sock.recv(65536)
        if struct.unpack_from("H", reply, 4)[0] == 2:                  # NLMSG_ERROR (0 = an ACK)
            err = -struct.unpack_from("i", reply, 16)[0]
            if err:
                raise OSError(err, os.strerror(err))
        return reply

    ip = ipaddress.ip_address(address)
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 16) as sock:      # NETLINK_GENERIC
        sock.bind((0, 0))
        reply = request(sock, 0x10, 3, attr(2, b"tcp_metrics\0"), 0)       # CTRL_CMD_GETFAMILY, FAMILY_NAME
        at, family_id = 20, None
        while at + 4 <= len(reply):
            n, kind = struct.unpack_from("HH", reply, at)
            if kind == 1:                                              # CTRL_ATTR_FAMILY_ID
                family_id = struct.unpack_from("H", reply, at + 4)[0]
            at += (n + 3) & ~3
        if family_id is None:
            raise OSError(errno.ENOENT, "no tcp_metrics family")
        try:
            request(sock, family_id, 2, attr(1 if ip.version == 4 else 2, ip.packed), 0x4)  # DEL, ADDR_IPV4/6; ACK
        except OSError as e:
            if e.errno == errno.ESRCH:
                return False
            raise
    return True


def main(argv=None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m harness.agent",
                                description="tcpconf app-control agent (standard library only)",
                                epilog=PROTOCOL, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--listen", metavar="HOST:PORT", help="serve clients over TCP (one thread and socket set each)")
    g.add_argument("--unix", metavar="PATH", help="serve over a unix socket")
    g.add_argument("--stdio", action="store_true", help="serve one session on stdin/stdout")
    a = p.parse_args(argv)
    if a.stdio:
        serve_stream(AgentHost(), sys.stdin.buffer, sys.stdout.buffer)
        return 0
    if a.unix:
        srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            os.unlink(a.unix)
        except FileNotFoundError:
            pass
        srv.bind(a.unix)
    else:
        host, _, port = a.listen.rpartition(":")
        host = host.strip("[]")
        srv = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind((host, int(port)))
    srv.listen(4)
    print(f"tcpconf agent: protocol {VERSION}, listening on {a.unix or a.listen}", file=sys.stderr, flush=True)
    try:
        serve_clients(srv)
    except KeyboardInterrupt:
        return 0


def serve_clients(srv: socket.socket) -> None:
    """Serve the clients of a listening socket, one thread and one set of
    sockets each, for ever."""
    def session(c):
        with c:
            serve_stream(AgentHost(), c.makefile("rb"), c.makefile("wb"))

    while True:
        c, _ = srv.accept()
        threading.Thread(target=session, args=(c,), daemon=True).start()


if __name__ == "__main__":
    sys.exit(main())
