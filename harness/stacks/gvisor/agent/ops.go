package main

// The protocol's operations on netstack endpoints. Each op_ function takes
// the decoded request and returns the reply's fields or an opError; dispatch
// adds "ok".

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"sort"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/waiter"
)

type request struct {
	Op      string                     `json:"op"`
	ID      *int                       `json:"id"`
	Family  string                     `json:"family"`
	Address string                     `json:"address"`
	Port    *int                       `json:"port"`
	Backlog *int                       `json:"backlog"`
	Options map[string]json.RawMessage `json:"options"`
	Bind    []json.RawMessage          `json:"bind"`
	Timeout *float64                   `json:"timeout"`
	Data    string                     `json:"data"`
	Max     *int                       `json:"max"`
	How     string                     `json:"how"`
	Name    string                     `json:"name"`
	Value   json.RawMessage            `json:"value"`
	Flags   []string                   `json:"flags"` // send and recv: message flags (ops_packetdrill.go)
	FDs     [][]json.RawMessage        `json:"fds"`   // poll: [[id, [events]], ...]
}

// maxListenBacklog is runsc's cap on listen(2)'s backlog (Linux: somaxconn).
const maxListenBacklog = 1024

type opError struct {
	errno   string
	message string
}

type fields = map[string]interface{}

type sock struct {
	ep tcpip.Endpoint
	wq *waiter.Queue
}

type agent struct {
	s        *stack.Stack
	link     *countingLink
	tapFD    int
	tapIndex int
	socks    map[int]*sock
	nextID   int
}

var ops map[string]func(*agent, *request) (fields, *opError)

func init() {
	ops = map[string]func(*agent, *request) (fields, *opError){
		"hello":      (*agent).opHello,
		"listen":     (*agent).opListen,
		"accept":     (*agent).opAccept,
		"connect":    (*agent).opConnect,
		"send":       (*agent).opSend,
		"recv":       (*agent).opRecv,
		"shutdown":   (*agent).opShutdown,
		"close":      (*agent).opClose,
		"setsockopt": (*agent).opSetsockopt,
		"getsockopt": (*agent).opGetsockopt,
		"error":      (*agent).opError,
		"state":      (*agent).opState,
		"sysctl":     (*agent).opSysctl,
		"bye":        (*agent).opBye,
	}
}

func opNames() []string {
	var names []string
	for n := range ops {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func failure(e opError) fields {
	return fields{"ok": false, "error": e.errno, "message": e.message}
}

func (a *agent) dispatch(req *request) fields {
	fn, ok := ops[req.Op]
	if !ok {
		return failure(opError{"EOPNOTSUPP", fmt.Sprintf("unknown operation %q; protocol %d knows %v",
			req.Op, protocolVersion, opNames())})
	}
	out, err := fn(a, req)
	if err != nil {
		return failure(*err)
	}
	if out == nil {
		out = fields{}
	}
	out["ok"] = true
	return out
}

// --- helpers -------------------------------------------------------------------------

func bad(format string, args ...interface{}) *opError {
	return &opError{"EINVAL", fmt.Sprintf(format, args...)}
}

func (a *agent) sock(req *request) (*sock, *opError) {
	if req.ID == nil {
		return nil, bad("%s: no socket id", req.Op)
	}
	s, ok := a.socks[*req.ID]
	if !ok {
		return nil, &opError{"EBADF", fmt.Sprintf("no socket with id %d", *req.ID)}
	}
	return s, nil
}

func (a *agent) add(ep tcpip.Endpoint, wq *waiter.Queue) int {
	id := a.nextID
	a.nextID++
	a.socks[id] = &sock{ep, wq}
	return id
}

func timeout(req *request) time.Duration {
	if req.Timeout == nil {
		return time.Second
	}
	return time.Duration(*req.Timeout * float64(time.Second))
}

// fullAddress parses an address of the request's family.
func fullAddress(family, address string, port int) (tcpip.FullAddress, tcpip.NetworkProtocolNumber, *opError) {
	ip := net.ParseIP(address)
	if ip == nil {
		return tcpip.FullAddress{}, 0, bad("%q is not an IP address", address)
	}
	if port < 0 || port > 65535 {
		return tcpip.FullAddress{}, 0, bad("port %d out of range", port)
	}
	if ip.IsUnspecified() { // every address of the family: netstack's empty Address
		if (family == "ipv4") != (ip.To4() != nil) {
			return tcpip.FullAddress{}, 0, bad("%s is not an address of %s", address, family)
		}
		netProto := ipv4.ProtocolNumber
		if family == "ipv6" {
			netProto = ipv6.ProtocolNumber
		}
		return tcpip.FullAddress{Port: uint16(port)}, netProto, nil
	}
	switch family {
	case "ipv4":
		if ip.To4() == nil {
			return tcpip.FullAddress{}, 0, bad("%s is not an IPv4 address", address)
		}
		return tcpip.FullAddress{Addr: tcpip.Address(ip.To4()), Port: uint16(port)}, ipv4.ProtocolNumber, nil
	case "ipv6":
		if ip.To4() != nil {
			return tcpip.FullAddress{}, 0, bad("%s is not an IPv6 address", address)
		}
		return tcpip.FullAddress{Addr: tcpip.Address(ip.To16()), Port: uint16(port)}, ipv6.ProtocolNumber, nil
	}
	return tcpip.FullAddress{}, 0, bad("family must be ipv4 or ipv6, not %q", family)
}

func addrString(a tcpip.Address, netProto tcpip.NetworkProtocolNumber) string {
	if a == "" {
		if netProto == ipv6.ProtocolNumber {
			return "::"
		}
		return "0.0.0.0"
	}
	return net.IP(a).String()
}

// newEndpoint makes a TCP endpoint as a runsc stream socket starts: Nagle on.
func (a *agent) newEndpoint(netProto tcpip.NetworkProtocolNumber) (tcpip.Endpoint, *waiter.Queue, *opError) {
	wq := &waiter.Queue{}
	ep, err := a.s.NewEndpoint(tcp.ProtocolNumber, netProto, wq)
	if err != nil {
		return nil, nil, netErr("socket", err)
	}
	ep.SocketOptions().SetDelayOption(true)
	return ep, wq, nil
}

// wait retries `try` until it stops answering ErrWouldBlock, waiting for
// `mask` on the queue between tries, for at most `d`.
func wait(wq *waiter.Queue, mask waiter.EventMask, d time.Duration, try func() tcpip.Error) tcpip.Error {
	entry, ch := waiter.NewChannelEntry(mask)
	wq.EventRegister(&entry)
	defer wq.EventUnregister(&entry)
	deadline := time.Now().Add(d)
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		err := try()
		if _, block := err.(*tcpip.ErrWouldBlock); !block {
			return err
		}
		if !time.Now().Before(deadline) {
			return err
		}
		select {
		case <-ch:
		case <-timer.C:
		}
	}
}

// --- operations ----------------------------------------------------------------------

func (a *agent) opHello(req *request) (fields, *opError) {
	return fields{"version": protocolVersion, "stack": "gvisor", "ops": opNames(), "options": optionNames(),
		"system": systemName(), "sysctls": sysctlNames()}, nil
}

func (a *agent) opListen(req *request) (fields, *opError) {
	if req.Port == nil {
		return nil, bad("listen: no port")
	}
	addr, netProto, oe := fullAddress(req.Family, req.Address, *req.Port)
	if oe != nil {
		return nil, oe
	}
	backlog := 16
	if req.Backlog != nil {
		backlog = *req.Backlog
	}
	// As runsc's listen(2) (pkg/sentry/syscalls/linux/sys_socket.go): at
	// most maxListenBacklog, plus one "to keep in parity with Linux".
	if backlog > maxListenBacklog {
		backlog = maxListenBacklog
	}
	if backlog < 0 {
		backlog = 0
	}
	backlog++
	ep, wq, oe := a.newEndpoint(netProto)
	if oe != nil {
		return nil, oe
	}
	ep.SocketOptions().SetReuseAddress(true)
	if oe := a.applyAll(ep, req.Options); oe != nil {
		ep.Close()
		return nil, oe
	}
	if err := ep.Bind(addr); err != nil {
		ep.Close()
		return nil, netErr("bind", err)
	}
	if err := ep.Listen(backlog); err != nil {
		ep.Close()
		return nil, netErr("listen", err)
	}
	return fields{"id": a.add(ep, wq)}, nil
}

func (a *agent) applyAll(ep tcpip.Endpoint, options map[string]json.RawMessage) *opError {
	names := make([]string, 0, len(options))
	for n := range options {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if oe := setOption(ep, n, options[n]); oe != nil {
			return oe
		}
	}
	return nil
}

func (a *agent) opAccept(req *request) (fields, *opError) {
	s, oe := a.sock(req)
	if oe != nil {
		return nil, oe
	}
	var peer tcpip.FullAddress
	var nep tcpip.Endpoint
	var nwq *waiter.Queue
	err := wait(s.wq, waiter.ReadableEvents, timeout(req), func() tcpip.Error {
		var err tcpip.Error
		nep, nwq, err = s.ep.Accept(&peer)
		return err
	})
	if _, block := err.(*tcpip.ErrWouldBlock); block {
		return nil, &opError{"EAGAIN", fmt.Sprintf("no connection to accept within %g s", timeout(req).Seconds())}
	}
	if err != nil {
		return nil, netErr("accept", err)
	}
	// A runsc socket made by accept(2) starts with Nagle on, too.
	nep.SocketOptions().SetDelayOption(true)
	netProto := ipv4.ProtocolNumber
	if len(peer.Addr) == 16 {
		netProto = ipv6.ProtocolNumber
	}
	return fields{"id": a.add(nep, nwq), "peer": []interface{}{addrString(peer.Addr, netProto), peer.Port}}, nil
}

func (a *agent) opConnect(req *request) (fields, *opError) {
	if req.Port == nil {
		return nil, bad("connect: no port")
	}
	addr, netProto, oe := fullAddress(req.Family, req.Address, *req.Port)
	if oe != nil {
		return nil, oe
	}
	ep, wq, oe := a.newEndpoint(netProto)
	if oe != nil {
		return nil, oe
	}
	if oe := a.applyAll(ep, req.Options); oe != nil {
		ep.Close()
		return nil, oe
	}
	if len(req.Bind) > 0 {
		var baddr string
		var bport int
		if len(req.Bind) != 2 || json.Unmarshal(req.Bind[0], &baddr) != nil || json.Unmarshal(req.Bind[1], &bport) != nil {
			ep.Close()
			return nil, bad("connect: bind is [address, port]")
		}
		local, _, oe := fullAddress(req.Family, baddr, bport)
		if oe != nil {
			ep.Close()
			return nil, oe
		}
		ep.SocketOptions().SetReuseAddress(true)
		if err := ep.Bind(local); err != nil {
			ep.Close()
			return nil, netErr("bind", err)
		}
	}
	if err := ep.Connect(addr); err != nil {
		if _, started := err.(*tcpip.ErrConnectStarted); !started {
			ep.Close()
			return nil, netErr(fmt.Sprintf("connect to %s port %d", req.Address, *req.Port), err)
		}
	}
	return fields{"id": a.add(ep, wq)}, nil
}

func (a *agent) opSend(req *request) (fields, *opError) {
	s, oe := a.sock(req)
	if oe != nil {
		return nil, oe
	}
	buf, derr := base64.StdEncoding.DecodeString(req.Data)
	if derr != nil {
		return nil, bad("send: data is not base64: %v", derr)
	}
	more, oe := sendFlags(req.Flags)
	if oe != nil {
		return nil, oe
	}
	sent := 0
	err := wait(s.wq, waiter.WritableEvents, timeout(req), func() tcpip.Error {
		for sent < len(buf) {
			n, err := s.ep.Write(bytes.NewReader(buf[sent:]), tcpip.WriteOptions{More: more})
			sent += int(n)
			if err != nil {
				return err
			}
		}
		return nil
	})
	if _, block := err.(*tcpip.ErrWouldBlock); block || err == nil {
		return fields{"sent": sent}, nil
	}
	return nil, netErr("send", err)
}

func (a *agent) opRecv(req *request) (fields, *opError) {
	s, oe := a.sock(req)
	if oe != nil {
		return nil, oe
	}
	max := 65536
	if req.Max != nil {
		max = *req.Max
	}
	peek, oe := recvFlags(req.Flags)
	if oe != nil {
		return nil, oe
	}
	var buf bytes.Buffer
	err := wait(s.wq, waiter.ReadableEvents, timeout(req), func() tcpip.Error {
		_, err := s.ep.Read(&tcpip.LimitedWriter{W: &buf, N: int64(max)}, tcpip.ReadOptions{Peek: peek})
		return err
	})
	switch err.(type) {
	case nil, *tcpip.ErrClosedForReceive:
		return fields{"data": base64.StdEncoding.EncodeToString(buf.Bytes())}, nil
	case *tcpip.ErrWouldBlock:
		return nil, &opError{"EAGAIN", fmt.Sprintf("nothing to read within %g s", timeout(req).Seconds())}
	}
	return nil, netErr("recv", err)
}

func (a *agent) opShutdown(req *request) (fields, *opError) {
	s, oe := a.sock(req)
	if oe != nil {
		return nil, oe
	}
	hows := map[string]tcpip.ShutdownFlags{"rd": tcpip.ShutdownRead, "wr": tcpip.ShutdownWrite,
		"rdwr": tcpip.ShutdownRead | tcpip.ShutdownWrite}
	how := req.How
	if how == "" {
		how = "wr"
	}
	flags, ok := hows[how]
	if !ok {
		return nil, bad("shutdown how must be rd, wr or rdwr, not %q", req.How)
	}
	if err := s.ep.Shutdown(flags); err != nil {
		return nil, netErr("shutdown", err)
	}
	return nil, nil
}

func (a *agent) opClose(req *request) (fields, *opError) {
	s, oe := a.sock(req)
	if oe != nil {
		return nil, oe
	}
	s.ep.Close()
	delete(a.socks, *req.ID)
	return nil, nil
}

func (a *agent) opSetsockopt(req *request) (fields, *opError) {
	s, oe := a.sock(req)
	if oe != nil {
		return nil, oe
	}
	return nil, setOption(s.ep, req.Name, req.Value)
}

func (a *agent) opGetsockopt(req *request) (fields, *opError) {
	s, oe := a.sock(req)
	if oe != nil {
		return nil, oe
	}
	v, oe := getOption(s.ep, req.Name)
	if oe != nil {
		return nil, oe
	}
	return fields{"value": v}, nil
}

// opError is SO_ERROR: the pending error, cleared by reading it.
func (a *agent) opError(req *request) (fields, *opError) {
	s, oe := a.sock(req)
	if oe != nil {
		return nil, oe
	}
	a.settle()
	err := s.ep.LastError()
	if err == nil {
		return fields{"error": nil}, nil
	}
	return fields{"error": errnoName(err)}, nil
}

func (a *agent) opState(req *request) (fields, *opError) {
	port := -1
	if req.Port != nil {
		port = *req.Port
	}
	a.settle()
	return fields{"sockets": tcpStates(a.s, port)}, nil
}

func (a *agent) opSysctl(req *request) (fields, *opError) {
	old, oe := sysctl(a.s, req.Name, req.Value)
	if oe != nil {
		return nil, oe
	}
	return fields{"value": old}, nil
}

func (a *agent) opBye(req *request) (fields, *opError) {
	a.closeAll()
	return nil, nil
}

func (a *agent) closeAll() {
	for id, s := range a.socks {
		s.ep.Close()
		delete(a.socks, id)
	}
}
