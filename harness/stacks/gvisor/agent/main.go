// Command gvisor-agent runs gVisor's netstack on a TAP device and lets the
// tcpconf suite drive its application side.
//
// Rules of this program:
//   - It speaks the tcpconf app-control protocol, version 1 (harness/agent.py,
//     PROTOCOL): one JSON request per line on stdin, one JSON reply per line
//     on stdout, in order. Nothing else is ever written to stdout; diagnostics
//     go to stderr.
//   - Every operation is done with netstack's own API (tcpip.Endpoint, waiter
//     queues, stack and transport-protocol options), never with host sockets:
//     what the wire shows is what netstack does.
//   - The stack is configured as gVisor's sandbox, runsc, configures its own
//     (runsc/boot/loader.go newEmptySandboxNetworkStack: SACK and receive
//     buffer moderation on; pkg/sentry/socket/netstack New: Nagle on for
//     every stream socket), unless the command line says otherwise
//     (-sack=false gives the library's default).
//   - Socket options map to netstack as gVisor's sentry maps the Linux ones
//     (pkg/sentry/socket/netstack/netstack.go): same units, same clamping.
//   - Blocking operations (accept, send, recv) wait on the endpoint's waiter
//     queue with the request's deadline, never by polling.
//
// Build (offline, GOPATH mode, Debian's golang-gvisor-gvisor-dev):
//
//	GO111MODULE=off GOPATH=/usr/share/gocode GOPROXY=off go build -o gvisor-agent .
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"runtime"
	"strings"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/link/fdbased"
	"gvisor.dev/gvisor/pkg/tcpip/link/tun"
	"gvisor.dev/gvisor/pkg/tcpip/network/arp"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
)

// protocolVersion is the app-control protocol version (harness/agent.py VERSION).
const protocolVersion = 1

// nicID is the only NIC: the TAP device.
const nicID tcpip.NICID = 1

// gvisorVersion is the Debian version of golang-gvisor-gvisor-dev this agent
// was built against (set with -ldflags "-X main.gvisorVersion=...").
var gvisorVersion = "unknown"

type addrList []string

func (a *addrList) String() string     { return strings.Join(*a, ",") }
func (a *addrList) Set(v string) error { *a = append(*a, v); return nil }

func main() {
	var addrs addrList
	tap := flag.String("tap", "tap0", "TAP device to attach to (it must exist and be up)")
	mac := flag.String("mac", "02:00:00:74:63:01", "the stack's MAC address")
	mtu := flag.Uint("mtu", 1500, "link MTU")
	sack := flag.Bool("sack", true, "negotiate SACK (runsc enables it; the library default is off)")
	flag.Var(&addrs, "addr", "the stack's address with prefix, e.g. 198.18.0.1/24 or 2001:2::1/64 (repeatable)")
	flag.Parse()
	if len(addrs) == 0 {
		fatal("no -addr given")
	}
	a, err := newStack(*tap, *mac, uint32(*mtu), *sack, addrs)
	if err != nil {
		fatal(err.Error())
	}
	serve(a, os.Stdin, os.Stdout)
}

func fatal(msg string) {
	fmt.Fprintln(os.Stderr, "gvisor-agent:", msg)
	os.Exit(2)
}

// newStack builds netstack on the TAP: one NIC with the given addresses and
// an on-link route for each prefix, the network protocols those need (ARP
// with IPv4; NDP is part of IPv6), and TCP.
func newStack(tapName, mac string, mtu uint32, sack bool, addrs []string) (*agent, error) {
	hw, err := net.ParseMAC(mac)
	if err != nil {
		return nil, fmt.Errorf("-mac %s: %v", mac, err)
	}
	var protos []tcpip.ProtocolAddress
	var routes []tcpip.Route
	var v4, v6 bool
	for _, a := range addrs {
		ip, ipnet, err := net.ParseCIDR(a)
		if err != nil {
			return nil, fmt.Errorf("-addr %s: %v", a, err)
		}
		prefix, _ := ipnet.Mask.Size()
		pa := tcpip.ProtocolAddress{AddressWithPrefix: tcpip.AddressWithPrefix{PrefixLen: prefix}}
		if ip4 := ip.To4(); ip4 != nil {
			v4 = true
			pa.Protocol = ipv4.ProtocolNumber
			pa.AddressWithPrefix.Address = tcpip.Address(ip4)
		} else {
			v6 = true
			pa.Protocol = ipv6.ProtocolNumber
			pa.AddressWithPrefix.Address = tcpip.Address(ip.To16())
		}
		protos = append(protos, pa)
		routes = append(routes, tcpip.Route{Destination: pa.AddressWithPrefix.Subnet(), NIC: nicID})
	}
	var netProtos []stack.NetworkProtocolFactory
	if v4 {
		netProtos = append(netProtos, ipv4.NewProtocol, arp.NewProtocol)
	}
	if v6 {
		// The zero options: no DAD, no router solicitations, no MLD, no
		// auto-generated link-local address: the link stays quiet.
		netProtos = append(netProtos, ipv6.NewProtocol)
	}
	s := stack.New(stack.Options{
		NetworkProtocols:   netProtos,
		TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol},
	})

	// TUNSETIFF would create a missing device (in whatever namespace this
	// runs): attach only to the TAP the harness made.
	ifc, err := net.InterfaceByName(tapName)
	if err != nil {
		return nil, fmt.Errorf("no TAP device %s here: %v", tapName, err)
	}
	fd, err := tun.OpenTAP(tapName)
	if err != nil {
		return nil, fmt.Errorf("open TAP %s: %v", tapName, err)
	}
	link, err := fdbased.New(&fdbased.Options{
		FDs:            []int{fd},
		MTU:            mtu,
		EthernetHeader: true,
		Address:        tcpip.LinkAddress(hw),
	})
	if err != nil {
		return nil, fmt.Errorf("fdbased link on %s: %v", tapName, err)
	}
	counted := newCountingLink(link)
	if e := s.CreateNIC(nicID, counted); e != nil {
		return nil, fmt.Errorf("create NIC: %s", e)
	}
	for _, pa := range protos {
		if e := s.AddProtocolAddress(nicID, pa, stack.AddressProperties{}); e != nil {
			return nil, fmt.Errorf("add address %s: %s", pa.AddressWithPrefix, e)
		}
	}
	s.SetRouteTable(routes)

	// As runsc configures its netstack.
	sackOpt := tcpip.TCPSACKEnabled(sack)
	moderate := tcpip.TCPModerateReceiveBufferOption(true)
	for _, opt := range []tcpip.SettableTransportProtocolOption{&sackOpt, &moderate} {
		if e := s.SetTransportProtocolOption(tcp.ProtocolNumber, opt); e != nil {
			return nil, fmt.Errorf("set %T: %s", opt, e)
		}
	}
	return &agent{s: s, link: counted, tapFD: fd, tapIndex: ifc.Index, socks: map[int]*sock{}, nextID: 1}, nil
}

// serve reads requests line by line and answers each, until bye or end of input.
func serve(a *agent, in *os.File, out *os.File) {
	r := bufio.NewReaderSize(in, 1<<20)
	w := bufio.NewWriter(out)
	enc := json.NewEncoder(w)
	for {
		line, err := r.ReadBytes('\n')
		if len(strings.TrimSpace(string(line))) > 0 {
			var req request
			var reply map[string]interface{}
			if jerr := json.Unmarshal(line, &req); jerr != nil {
				reply = failure(opError{"EINVAL", "not a JSON request object: " + jerr.Error()})
			} else {
				reply = a.dispatch(&req)
			}
			enc.Encode(reply)
			w.Flush()
			if req.Op == "bye" {
				a.closeAll()
				return
			}
		}
		if err != nil {
			a.closeAll()
			return
		}
	}
}

func systemName() string {
	return fmt.Sprintf("gVisor netstack %s (Go %s)", gvisorVersion, strings.TrimPrefix(runtime.Version(), "go"))
}
