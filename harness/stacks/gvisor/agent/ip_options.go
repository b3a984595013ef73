package main

// The IP header of a socket's segments and its ICMP error reports (RFC 9293
// §3.9.1.9, §3.9.2, §3.9.1.8): the socket options gVisor's sentry maps for a
// stream socket (pkg/sentry/socket/netstack/netstack.go). Urgent data
// (SO_OOBINLINE, and MSG_OOB in ops_packetdrill.go) netstack cannot do.

import (
	"gvisor.dev/gvisor/pkg/tcpip"
)

// noUrgent: netstack's TCP ignores the URG bit and the urgent pointer
// (transport/tcp has no urgent processing) and the sentry refuses MSG_OOB.
const noUrgent = "netstack has no urgent data: its TCP ignores the URG bit and the urgent pointer"

func init() {
	sockopts["IP_TOS"] = intOpt("IP_TOS", tcpip.IPv4TOSOption)
	sockopts["IPV6_TCLASS"] = intOpt("IPV6_TCLASS", tcpip.IPv6TrafficClassOption)
	sockopts["IP_TTL"] = intOpt("IP_TTL", tcpip.IPv4TTLOption)
	sockopts["IPV6_UNICAST_HOPS"] = intOpt("IPV6_UNICAST_HOPS", tcpip.IPv6HopLimitOption)
	sockopts["IP_RECVERR"] = boolOpt((*tcpip.SocketOptions).SetIPv4RecvError, (*tcpip.SocketOptions).GetIPv4RecvError, false)
	sockopts["IPV6_RECVERR"] = boolOpt((*tcpip.SocketOptions).SetIPv6RecvError, (*tcpip.SocketOptions).GetIPv6RecvError, false)
	unsupported["SO_OOBINLINE"] = noUrgent
}
