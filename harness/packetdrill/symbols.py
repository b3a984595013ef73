"""Symbols a packetdrill script may name, with their Linux values.

Rules of this file:
- Data only. The values are Linux's (include/uapi/...): packetdrill's
  scripts are written against Linux's numbers, and the interpreter
  evaluates them the same on every stack; a stack's agent is spoken to in
  names (socket options, poll events, errno names), never in these numbers.
- A name the tables lack is an error in the script ("unknown symbol"), as
  in packetdrill.
"""
from __future__ import annotations

import errno as _errno

# errno names (Linux's), both ways.
ERRNO = {name: num for num, name in _errno.errorcode.items()}
ERRNO.update({"EWOULDBLOCK": _errno.EAGAIN, "EDEADLOCK": _errno.EDEADLK, "ENOTSUP": _errno.EOPNOTSUPP})
ERRNO_NAME = dict(_errno.errorcode)

# (level, option) -> the app-control protocol's option name (Linux's name).
SOL_SOCKET, SOL_IP, SOL_TCP, SOL_IPV6 = 1, 0, 6, 41

SOCKET_OPTIONS = {
    "SO_DEBUG": 1, "SO_REUSEADDR": 2, "SO_TYPE": 3, "SO_ERROR": 4, "SO_DONTROUTE": 5, "SO_BROADCAST": 6,
    "SO_SNDBUF": 7, "SO_RCVBUF": 8, "SO_KEEPALIVE": 9, "SO_OOBINLINE": 10, "SO_NO_CHECK": 11,
    "SO_PRIORITY": 12, "SO_LINGER": 13, "SO_BSDCOMPAT": 14, "SO_REUSEPORT": 15, "SO_RCVLOWAT": 18,
    "SO_SNDLOWAT": 19, "SO_RCVTIMEO": 20, "SO_SNDTIMEO": 21, "SO_BINDTODEVICE": 25, "SO_TIMESTAMP": 29,
    "SO_ACCEPTCONN": 30, "SO_SNDBUFFORCE": 32, "SO_RCVBUFFORCE": 33, "SO_MARK": 36, "SO_TIMESTAMPING": 37,
    "SO_PROTOCOL": 38, "SO_DOMAIN": 39, "SO_RXQ_OVFL": 40, "SO_BUSY_POLL": 46, "SO_MAX_PACING_RATE": 47,
    "SO_INCOMING_CPU": 49, "SO_MEMINFO": 55, "SO_ZEROCOPY": 60, "SO_TXTIME": 61,
}
TCP_OPTIONS = {
    "TCP_NODELAY": 1, "TCP_MAXSEG": 2, "TCP_CORK": 3, "TCP_KEEPIDLE": 4, "TCP_KEEPINTVL": 5, "TCP_KEEPCNT": 6,
    "TCP_SYNCNT": 7, "TCP_LINGER2": 8, "TCP_DEFER_ACCEPT": 9, "TCP_WINDOW_CLAMP": 10, "TCP_INFO": 11,
    "TCP_QUICKACK": 12, "TCP_CONGESTION": 13, "TCP_MD5SIG": 14, "TCP_THIN_LINEAR_TIMEOUTS": 16,
    "TCP_THIN_DUPACK": 17, "TCP_USER_TIMEOUT": 18, "TCP_REPAIR": 19, "TCP_REPAIR_QUEUE": 20,
    "TCP_QUEUE_SEQ": 21, "TCP_REPAIR_OPTIONS": 22, "TCP_FASTOPEN": 23, "TCP_TIMESTAMP": 24,
    "TCP_NOTSENT_LOWAT": 25, "TCP_CC_INFO": 26, "TCP_SAVE_SYN": 27, "TCP_SAVED_SYN": 28,
    "TCP_REPAIR_WINDOW": 29, "TCP_FASTOPEN_CONNECT": 30, "TCP_ULP": 31, "TCP_MD5SIG_EXT": 32,
    "TCP_FASTOPEN_KEY": 33, "TCP_FASTOPEN_NO_COOKIE": 34, "TCP_ZEROCOPY_RECEIVE": 35, "TCP_INQ": 36,
    "TCP_TX_DELAY": 37, "TCP_AO_ADD_KEY": 38,
}
IP_OPTIONS = {"IP_TOS": 1, "IP_TTL": 2, "IP_HDRINCL": 3, "IP_OPTIONS": 4, "IP_RECVERR": 11,
              "IP_MTU_DISCOVER": 10, "IP_MTU": 14, "IP_FREEBIND": 15, "IP_BIND_ADDRESS_NO_PORT": 24}
IPV6_OPTIONS = {"IPV6_UNICAST_HOPS": 16, "IPV6_MTU_DISCOVER": 23, "IPV6_MTU": 24, "IPV6_RECVERR": 25,
                "IPV6_V6ONLY": 26, "IPV6_TCLASS": 67, "IPV6_FLOWINFO_SEND": 33, "IPV6_FLOWLABEL_MGR": 32}
LEVEL_OPTIONS = {SOL_SOCKET: SOCKET_OPTIONS, SOL_TCP: TCP_OPTIONS, SOL_IP: IP_OPTIONS, SOL_IPV6: IPV6_OPTIONS}
OPTION_NAME = {(level, num): name for level, table in LEVEL_OPTIONS.items() for name, num in table.items()}

MSG_FLAGS = {
    "MSG_OOB": 0x1, "MSG_PEEK": 0x2, "MSG_DONTROUTE": 0x4, "MSG_CTRUNC": 0x8, "MSG_PROXY": 0x10,
    "MSG_TRUNC": 0x20, "MSG_DONTWAIT": 0x40, "MSG_EOR": 0x80, "MSG_WAITALL": 0x100, "MSG_FIN": 0x200,
    "MSG_SYN": 0x400, "MSG_CONFIRM": 0x800, "MSG_RST": 0x1000, "MSG_ERRQUEUE": 0x2000,
    "MSG_NOSIGNAL": 0x4000, "MSG_MORE": 0x8000, "MSG_WAITFORONE": 0x10000, "MSG_BATCH": 0x40000,
    "MSG_ZEROCOPY": 0x4000000, "MSG_FASTOPEN": 0x20000000, "MSG_CMSG_CLOEXEC": 0x40000000,
}

POLL_EVENTS = {
    "POLLIN": 0x1, "POLLPRI": 0x2, "POLLOUT": 0x4, "POLLERR": 0x8, "POLLHUP": 0x10, "POLLNVAL": 0x20,
    "POLLRDNORM": 0x40, "POLLRDBAND": 0x80, "POLLWRNORM": 0x100, "POLLWRBAND": 0x200, "POLLMSG": 0x400,
    "POLLREMOVE": 0x1000, "POLLRDHUP": 0x2000,
}
EPOLL_FLAGS = {"EPOLLEXCLUSIVE": 1 << 28, "EPOLLWAKEUP": 1 << 29, "EPOLLONESHOT": 1 << 30, "EPOLLET": 1 << 31}
EPOLL_EVENTS = {"E" + name: value for name, value in POLL_EVENTS.items() if name != "POLLNVAL"}

SYMBOLS: dict[str, int] = {
    # families, types, protocols
    "AF_UNSPEC": 0, "AF_UNIX": 1, "AF_INET": 2, "AF_INET6": 10, "AF_PACKET": 17,
    "PF_UNSPEC": 0, "PF_UNIX": 1, "PF_INET": 2, "PF_INET6": 10,
    "SOCK_STREAM": 1, "SOCK_DGRAM": 2, "SOCK_RAW": 3, "SOCK_NONBLOCK": 0o4000, "SOCK_CLOEXEC": 0o2000000,
    "IPPROTO_IP": 0, "IPPROTO_ICMP": 1, "IPPROTO_TCP": 6, "IPPROTO_UDP": 17, "IPPROTO_IPV6": 41,
    "IPPROTO_ICMPV6": 58, "IPPROTO_RAW": 255,
    "SOL_SOCKET": SOL_SOCKET, "SOL_IP": SOL_IP, "SOL_TCP": SOL_TCP, "SOL_IPV6": SOL_IPV6, "SOL_UDP": 17,
    # shutdown, fcntl, open
    "SHUT_RD": 0, "SHUT_WR": 1, "SHUT_RDWR": 2,
    "F_DUPFD": 0, "F_GETFD": 1, "F_SETFD": 2, "F_GETFL": 3, "F_SETFL": 4, "FD_CLOEXEC": 1,
    "O_RDONLY": 0, "O_WRONLY": 1, "O_RDWR": 2, "O_CREAT": 0o100, "O_EXCL": 0o200, "O_TRUNC": 0o1000,
    "O_APPEND": 0o2000, "O_NONBLOCK": 0o4000, "O_NDELAY": 0o4000, "O_CLOEXEC": 0o2000000,
    # ioctl
    "SIOCINQ": 0x541B, "FIONREAD": 0x541B, "SIOCOUTQ": 0x5411, "TIOCOUTQ": 0x5411, "SIOCOUTQNSD": 0x894B,
    "SIOCATMARK": 0x8905, "FIONBIO": 0x5421,
    # epoll
    "EPOLL_CTL_ADD": 1, "EPOLL_CTL_DEL": 2, "EPOLL_CTL_MOD": 3, "EPOLL_CLOEXEC": 0o2000000,
    # IP
    "IP_PMTUDISC_DONT": 0, "IP_PMTUDISC_WANT": 1, "IP_PMTUDISC_DO": 2, "IP_PMTUDISC_PROBE": 3,
    "IPTOS_LOWDELAY": 0x10, "IPTOS_THROUGHPUT": 0x08, "IPTOS_RELIABILITY": 0x04,
    "INADDR_ANY": 0,
    # TCP_INFO's tcpi_state and ca_state values, for code blocks and getsockopt
    "TCP_ESTABLISHED": 1, "TCP_SYN_SENT": 2, "TCP_SYN_RECV": 3, "TCP_FIN_WAIT1": 4, "TCP_FIN_WAIT2": 5,
    "TCP_TIME_WAIT": 6, "TCP_CLOSE": 7, "TCP_CLOSE_WAIT": 8, "TCP_LAST_ACK": 9, "TCP_LISTEN": 10,
    "TCP_CLOSING": 11,
    "TCP_CA_Open": 0, "TCP_CA_Disorder": 1, "TCP_CA_CWR": 2, "TCP_CA_Recovery": 3, "TCP_CA_Loss": 4,
    "TCPI_OPT_TIMESTAMPS": 1, "TCPI_OPT_SACK": 2, "TCPI_OPT_WSCALE": 4, "TCPI_OPT_ECN": 8,
    "TCPI_OPT_ECN_SEEN": 16, "TCPI_OPT_SYN_DATA": 32, "TCPI_OPT_USEC_TS": 64, "TCPI_OPT_TFO_CHILD": 128,
    # cmsg types used with TCP
    "TCP_CM_INQ": 36, "SCM_TIMESTAMPING": 37, "SCM_TSTAMP_SND": 0, "SCM_TSTAMP_SCHED": 1,
    "SCM_TSTAMP_ACK": 2, "SO_EE_ORIGIN_TIMESTAMPING": 4, "SO_EE_ORIGIN_ZEROCOPY": 5,
    "SO_EE_ORIGIN_ICMP": 2, "SO_EE_ORIGIN_ICMP6": 3,
    # SO_TIMESTAMPING flags
    "SOF_TIMESTAMPING_TX_HARDWARE": 1, "SOF_TIMESTAMPING_TX_SOFTWARE": 2, "SOF_TIMESTAMPING_RX_HARDWARE": 4,
    "SOF_TIMESTAMPING_RX_SOFTWARE": 8, "SOF_TIMESTAMPING_SOFTWARE": 16, "SOF_TIMESTAMPING_SYS_HARDWARE": 32,
    "SOF_TIMESTAMPING_RAW_HARDWARE": 64, "SOF_TIMESTAMPING_OPT_ID": 128, "SOF_TIMESTAMPING_TX_SCHED": 256,
    "SOF_TIMESTAMPING_TX_ACK": 512, "SOF_TIMESTAMPING_OPT_CMSG": 1024, "SOF_TIMESTAMPING_OPT_TSONLY": 2048,
    "SOF_TIMESTAMPING_OPT_STATS": 4096,
}
for table in (SOCKET_OPTIONS, TCP_OPTIONS, IP_OPTIONS, IPV6_OPTIONS, MSG_FLAGS, POLL_EVENTS, EPOLL_EVENTS,
              EPOLL_FLAGS, ERRNO):
    SYMBOLS.update(table)


def names_of(value: int, table: dict) -> str:
    """A bit mask as the names of its bits: 0x5 -> 'POLLIN|POLLOUT' ('0' for none)."""
    names, rest = [], value
    for name, bit in sorted(table.items(), key=lambda kv: kv[1]):
        if bit and value & bit == bit and rest & bit:
            names.append(name)
            rest &= ~bit
    if rest:
        names.append(hex(rest))
    return "|".join(names) or "0"
