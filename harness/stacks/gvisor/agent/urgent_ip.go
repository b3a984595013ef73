package main

// Urgent data and the IP header of a socket's segments (RFC 9293 §3.8.5,
// §3.9.1.9, §3.9.2): the socket options gVisor's sentry maps for a stream
// socket (pkg/sentry/socket/netstack/netstack.go), and the protocol's
// "urgent" operation and "oob" sends and reads, which netstack cannot do.

import (
	"gvisor.dev/gvisor/pkg/tcpip"
)

// noUrgent: netstack's TCP ignores the URG bit and the urgent pointer
// (transport/tcp has no urgent processing) and the sentry refuses MSG_OOB.
const noUrgent = "netstack has no urgent data: its TCP ignores the URG bit and the urgent pointer, " +
	"and a runsc socket refuses MSG_OOB"

func init() {
	sockopts["IP_TOS"] = intOpt("IP_TOS", tcpip.IPv4TOSOption)
	sockopts["IPV6_TCLASS"] = intOpt("IPV6_TCLASS", tcpip.IPv6TrafficClassOption)
	sockopts["IP_TTL"] = intOpt("IP_TTL", tcpip.IPv4TTLOption)
	sockopts["IPV6_UNICAST_HOPS"] = intOpt("IPV6_UNICAST_HOPS", tcpip.IPv6HopLimitOption)
	sockopts["IP_RECVERR"] = boolOpt((*tcpip.SocketOptions).SetIPv4RecvError, (*tcpip.SocketOptions).GetIPv4RecvError, false)
	sockopts["IPV6_RECVERR"] = boolOpt((*tcpip.SocketOptions).SetIPv6RecvError, (*tcpip.SocketOptions).GetIPv6RecvError, false)
	unsupported["SO_OOBINLINE"] = noUrgent
	ops["urgent"] = (*agent).opUrgent
}

func (a *agent) opUrgent(req *request) (fields, *opError) {
	return nil, &opError{"EOPNOTSUPP", noUrgent}
}

// refuseOOB answers a send or recv with "oob": true.
func refuseOOB(req *request) *opError {
	if req.Oob {
		return &opError{"EOPNOTSUPP", noUrgent}
	}
	return nil
}
