"""The application side of user-mode networks that proxy their guest's TCP
onto host sockets (slirp, passt): the app-control protocol on loopback
sockets of the case's namespace.

Rules of this file:
- The stack under test is the network's guest-facing TCP; its
  "application" is the host. A guest connecting to the network's own
  address makes it connect() to the host's loopback on that port, so
  `listen` listens there. A host connect() to a forwarded port makes it open
  a connection to the guest from the client's port, so `connect` connects
  to the forward (`forward`, by the stack) from the port the case wants on
  the wire (and the address the stack needs, `source`).
- The listener's backlog is the host's largest: its accept queue is the
  host kernel's, not the stack's, and a full one would hold the stack's
  SYN-ACK back by the host kernel's own SYN retransmissions.
- Socket options set host sockets, not the stack's TCP: only those whose
  effect the stack carries to its guest are offered (`carried`: an abortive
  close, SO_LINGER 0, is read as ECONNRESET, and the stack resets the
  guest's connection); every other one answers EOPNOTSUPP with the stack's
  reason (`not_carried`), and the case is skipped.
"""
from __future__ import annotations

import socket

from ..agent import AppError, SocketHost

LOOPBACK = {"ipv4": "127.0.0.1", "ipv6": "::1"}


class ProxiedHost(SocketHost):
    carried = frozenset({"SO_REUSEADDR", "SO_LINGER"})

    def not_carried(self, name: str) -> str:
        """Why option `name` does not reach the stack's TCP."""
        return "it would set a host socket, not the stack's TCP"

    def forward(self, family: str, address: str, port: int) -> int:
        """The host port whose connections the stack carries to the guest's
        `address` and `port`."""
        raise NotImplementedError

    def source(self, family: str) -> str:
        """The host address the clients connect from, and to the forwards."""
        return LOOPBACK[family]

    def op_hello(self, **_):
        return dict(super().op_hello(), options=sorted(self.carried))

    def _refuse(self, name: str) -> None:
        if name not in self.carried:
            raise AppError("EOPNOTSUPP", f"{name} on {self.stack}: {self.not_carried(name)}")

    def op_setsockopt_on(self, s, name, value) -> None:
        self._refuse(name)
        SocketHost.op_setsockopt_on(s, name, value)

    def op_setsockopt(self, id, name, value):
        self._refuse(name)
        return super().op_setsockopt(id, name, value)

    def op_getsockopt(self, id, name):
        self._refuse(name)
        return super().op_getsockopt(id, name)

    def op_state(self, port=None):
        """The host's sockets are not the stack's TCP: no states, unless the
        stack can tell its own (SlirpHost)."""
        raise AppError("EOPNOTSUPP", f"{self.stack} reports no TCP states of its own")

    def op_listen(self, family, address, port, backlog=16, options=None):
        return super().op_listen(family, LOOPBACK[family], port, max(int(backlog), socket.SOMAXCONN), options)

    def op_connect(self, family, address, port, bind=None, options=None):
        host = self.source(family)
        return super().op_connect(family, host, self.forward(family, address, int(port)),
                                  [host, int(bind[1])] if bind else None, options)
