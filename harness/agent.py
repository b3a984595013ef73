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
        ("oob":true sends it as urgent data, MSG_OOB)
  {"op":"recv","id":C,"max":N,"timeout":T}         -> {"data":B64}   ("" = end of stream)
        ("oob":true reads the urgent octet out of band, MSG_OOB)
  {"op":"urgent","id":C}                           -> {"pending":BOOL,"at_mark":BOOL}
        (urgent data signalled and not yet read, as poll's POLLPRI; the read
        position at the urgent mark, as SIOCATMARK)
  {"op":"shutdown","id":C,"how":"rd"|"wr"|"rdwr"}  -> {}
  {"op":"close","id":C}                            -> {}
  {"op":"setsockopt","id":C,"name":NAME,"value":V} -> {}
  {"op":"getsockopt","id":C,"name":NAME}           -> {"value":V}
  {"op":"error","id":C}                            -> {"error":ERRNO_NAME|null}   (pending socket error)
  {"op":"state","port":P|null}                     -> {"sockets":[{"local":[a,p],"remote":[a,p],"state":RFC_NAME}]}
        (where the stack can report TCP state; RFC 9293 state names, e.g. "SYN-RECEIVED")
  {"op":"sysctl","name":"net.ipv4.tcp_synack_retries","value":V|null} -> {"value":OLD}
        (agents on hosts with tunables; sets it when value is given)
  {"op":"bye"}                                     -> {} and the agent closes every socket of this session

Option names: SO_REUSEADDR SO_KEEPALIVE SO_RCVBUF SO_SNDBUF SO_LINGER ([on, secs])
TCP_NODELAY TCP_MAXSEG TCP_KEEPIDLE TCP_KEEPINTVL TCP_KEEPCNT TCP_SYNCNT
TCP_LINGER2 TCP_DEFER_ACCEPT TCP_WINDOW_CLAMP TCP_USER_TIMEOUT TCP_QUICKACK
TCP_FASTOPEN TCP_CONGESTION (string), SO_OOBINLINE, IP_TOS IPV6_TCLASS IP_TTL
IPV6_UNICAST_HOPS (the IP header fields of the socket's segments),
IP_RECVERR IPV6_RECVERR (ICMP errors reported to the application: "error"
returns them), and TCP_INFO, read-only: an object with
the SUT's own view of the connection (state, rto, ato, rtt, rttvar in
microseconds, retransmits, backoff, snd_mss, rcv_mss, unacked), which cases
use where a timer follows the SUT's RTT. An agent answers EOPNOTSUPP for the
ones its stack lacks.
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
    # urgent data and the IP header of the socket's segments
    "SO_OOBINLINE": (socket.SOL_SOCKET, getattr(socket, "SO_OOBINLINE", 10), "int"),
    "IP_TOS": (socket.IPPROTO_IP, getattr(socket, "IP_TOS", 1), "int"),
    "IP_TTL": (socket.IPPROTO_IP, getattr(socket, "IP_TTL", 2), "int"),
    "IP_RECVERR": (socket.IPPROTO_IP, getattr(socket, "IP_RECVERR", 11), "int"),
    "IPV6_TCLASS": (socket.IPPROTO_IPV6, getattr(socket, "IPV6_TCLASS", 67), "int"),
    "IPV6_UNICAST_HOPS": (socket.IPPROTO_IPV6, getattr(socket, "IPV6_UNICAST_HOPS", 16), "int"),
    "IPV6_RECVERR": (socket.IPPROTO_IPV6, getattr(socket, "IPV6_RECVERR", 25), "int"),
}
SIOCATMARK = 0x8905             # include/uapi/linux/sockios.h

# struct tcp_info (include/uapi/linux/tcp.h) up to tcpi_rttvar: 8 octets, then
# u32 fields; the times in microseconds, as the kernel reports them.
TCP_INFO = struct.Struct("=BBBBBBBB17I")
TCP_INFO_FIELDS = {"retransmits": 2, "backoff": 4, "rto": 8, "ato": 9, "snd_mss": 10, "rcv_mss": 11,
                   "unacked": 12, "rtt": 23, "rttvar": 24}

FAMILIES = {"ipv4": socket.AF_INET, "ipv6": socket.AF_INET6}

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
        return {"version": VERSION, "stack": self.stack, "ops": self.ops(), "options": sorted(OPTIONS)}

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

    def op_send(self, id, data, timeout=1.0, oob=False):
        if oob:
            return self._send_urgent(id, data)
        s = self._sock(id)
        buf = base64.b64decode(data)
        sent = 0
        deadline = time.monotonic() + float(timeout)
        while sent < len(buf):
            try:
                sent += s.send(buf[sent:])
                continue
            except BlockingIOError:
                pass
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([], [s], [], left)[1]:
                break
        return {"sent": sent}

    def op_recv(self, id, max=65536, timeout=1.0, oob=False):
        if oob:
            return self._recv_urgent(id, max, timeout)
        s = self._sock(id)
        if not select.select([s], [], [], float(timeout))[0]:
            raise AppError("EAGAIN", f"nothing to read within {timeout} s")
        return {"data": base64.b64encode(s.recv(int(max))).decode()}

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
            raw = s.getsockopt(level, opt, TCP_INFO.size)
            fields = TCP_INFO.unpack(raw.ljust(TCP_INFO.size, b"\0"))
            return {"value": {"state": LINUX_STATES.get(fields[0], str(fields[0])),
                              **{k: fields[i] for k, i in TCP_INFO_FIELDS.items()}}}
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

    def op_bye(self):
        self.close_all()
        return {}

    # --- urgent data (RFC 9293 §3.8.5) ----------------------------------------------
    def _send_urgent(self, id, data):
        """send(MSG_OOB): the data's last octet is urgent, and the urgent
        pointer of the segment carrying it points past it."""
        return {"sent": self._sock(id).send(base64.b64decode(data), socket.MSG_OOB)}

    def _recv_urgent(self, id, max, timeout):
        """recv(MSG_OOB), waiting up to `timeout` for urgent data to be
        signalled (exceptional condition, POLLPRI). EINVAL: none pending."""
        s = self._sock(id)
        select.select([], [], [s], float(timeout))
        return {"data": base64.b64encode(s.recv(int(max), socket.MSG_OOB)).decode()}

    def op_urgent(self, id):
        import fcntl
        s = self._sock(id)
        mark = struct.unpack("i", fcntl.ioctl(s.fileno(), SIOCATMARK, struct.pack("i", 0)))[0]
        return {"pending": bool(select.select([], [], [s], 0)[2]), "at_mark": bool(mark)}

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

    def send(self, conn: int, data: bytes, timeout: float = 1.0, oob: bool = False) -> int:
        extra = {"oob": True} if oob else {}
        return self.call("send", id=conn, data=base64.b64encode(data).decode(), timeout=timeout, **extra)["sent"]

    def recv(self, conn: int, max: int = 65536, timeout: float = 1.0, oob: bool = False) -> bytes:
        extra = {"oob": True} if oob else {}
        return base64.b64decode(self.call("recv", id=conn, max=max, timeout=timeout, **extra)["data"])

    def urgent(self, conn: int) -> dict:
        """{'pending': urgent data signalled (POLLPRI), 'at_mark': SIOCATMARK}."""
        return self.call("urgent", id=conn)

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
        data = (json.dumps(req) + "\n").encode()
        try:
            while data:
                data = data[os.write(self.wfd, data):]
        except (BrokenPipeError, ConnectionError):
            raise AppError("ECONNRESET", "the app-control agent is gone (did it crash?)") from None
        deadline = time.monotonic() + self.timeout + float(req.get("timeout", 0) or 0)
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.rfd], [], [], left)[0]:
                raise AppError("ETIMEDOUT", f"the app-control agent did not answer {req.get('op')!r} in time")
            chunk = os.read(self.rfd, 65536)
            if not chunk:
                raise AppError("ECONNRESET", "the app-control agent closed the connection (did it crash?)")
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return json.loads(line)


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
