package main

// Socket options, the stack's tunables ("sysctl" op), TCP states and errno
// names, each as one table mapping the protocol's names onto netstack.

import (
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/syserr"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
)

// --- errors ----------------------------------------------------------------------------

// errnoName is the Linux errno a runsc socket call would return for err
// (pkg/syserr's translation table); end of stream has none.
func errnoName(err tcpip.Error) string {
	if _, eof := err.(*tcpip.ErrClosedForReceive); eof {
		return "EOF"
	}
	return unix.ErrnoName(syscall.Errno(syserr.TranslateNetstackError(err).ToLinux()))
}

func netErr(what string, err tcpip.Error) *opError {
	return &opError{errnoName(err), fmt.Sprintf("%s: %s", what, err)}
}

// --- socket options --------------------------------------------------------------------

// Linux's limits, which runsc applies (include/net/tcp.h).
const (
	maxTCPKeepIdle  = 32767
	maxTCPKeepIntvl = 32767
	maxTCPKeepCnt   = 127
)

type sockopt struct {
	set func(ep tcpip.Endpoint, v json.RawMessage) *opError
	get func(ep tcpip.Endpoint) (interface{}, *opError)
}

func intValue(name string, v json.RawMessage) (int, *opError) {
	var n float64
	if err := json.Unmarshal(v, &n); err == nil {
		return int(n), nil
	}
	var b bool
	if err := json.Unmarshal(v, &b); err == nil {
		if b {
			return 1, nil
		}
		return 0, nil
	}
	var s string
	if err := json.Unmarshal(v, &s); err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(s)); err == nil {
			return n, nil
		}
	}
	return 0, bad("%s takes an integer, not %s", name, string(v))
}

func boolOpt(set func(*tcpip.SocketOptions, bool), get func(*tcpip.SocketOptions) bool, invert bool) sockopt {
	return sockopt{
		set: func(ep tcpip.Endpoint, v json.RawMessage) *opError {
			n, oe := intValue("option", v)
			if oe != nil {
				return oe
			}
			set(ep.SocketOptions(), (n != 0) != invert)
			return nil
		},
		get: func(ep tcpip.Endpoint) (interface{}, *opError) {
			if get(ep.SocketOptions()) != invert {
				return 1, nil
			}
			return 0, nil
		},
	}
}

// clampBufSize doubles the asked size as Linux does, within the limits
// (runsc: pkg/sentry/socket/netstack clampBufSize).
func clampBufSize(size, min, max int64) int64 {
	if size > max {
		size = max
	}
	if size < math.MaxInt32/2 {
		size *= 2
		if size < min {
			size = min
		}
	} else {
		size = math.MaxInt32
	}
	return size
}

// durationOpt is an option given in `unit`s, held by netstack as a Duration.
func durationOpt(name string, unit time.Duration, lo, hi int, set func(tcpip.Endpoint, time.Duration) tcpip.Error,
	get func(tcpip.Endpoint) (time.Duration, tcpip.Error)) sockopt {
	return sockopt{
		set: func(ep tcpip.Endpoint, v json.RawMessage) *opError {
			n, oe := intValue(name, v)
			if oe != nil {
				return oe
			}
			if n < lo || n > hi {
				return bad("%s must be between %d and %d, not %d", name, lo, hi, n)
			}
			if err := set(ep, time.Duration(n)*unit); err != nil {
				return netErr("setsockopt "+name, err)
			}
			return nil
		},
		get: func(ep tcpip.Endpoint) (interface{}, *opError) {
			d, err := get(ep)
			if err != nil {
				return nil, netErr("getsockopt "+name, err)
			}
			return int(d / unit), nil
		},
	}
}

func intOpt(name string, opt tcpip.SockOptInt) sockopt {
	return sockopt{
		set: func(ep tcpip.Endpoint, v json.RawMessage) *opError {
			n, oe := intValue(name, v)
			if oe != nil {
				return oe
			}
			if err := ep.SetSockOptInt(opt, n); err != nil {
				return netErr("setsockopt "+name, err)
			}
			return nil
		},
		get: func(ep tcpip.Endpoint) (interface{}, *opError) {
			n, err := ep.GetSockOptInt(opt)
			if err != nil {
				return nil, netErr("getsockopt "+name, err)
			}
			return n, nil
		},
	}
}

var sockopts = map[string]sockopt{
	"SO_REUSEADDR": boolOpt((*tcpip.SocketOptions).SetReuseAddress, (*tcpip.SocketOptions).GetReuseAddress, false),
	"SO_KEEPALIVE": boolOpt((*tcpip.SocketOptions).SetKeepAlive, (*tcpip.SocketOptions).GetKeepAlive, false),
	"TCP_NODELAY":  boolOpt((*tcpip.SocketOptions).SetDelayOption, (*tcpip.SocketOptions).GetDelayOption, true),
	"TCP_QUICKACK": boolOpt((*tcpip.SocketOptions).SetQuickAck, (*tcpip.SocketOptions).GetQuickAck, false),
	"SO_RCVBUF": {
		set: func(ep tcpip.Endpoint, v json.RawMessage) *opError {
			n, oe := intValue("SO_RCVBUF", v)
			if oe != nil {
				return oe
			}
			min, max := ep.SocketOptions().ReceiveBufferLimits()
			ep.SocketOptions().SetReceiveBufferSize(clampBufSize(int64(n), min, max), true)
			return nil
		},
		get: func(ep tcpip.Endpoint) (interface{}, *opError) { return ep.SocketOptions().GetReceiveBufferSize(), nil },
	},
	"SO_SNDBUF": {
		set: func(ep tcpip.Endpoint, v json.RawMessage) *opError {
			n, oe := intValue("SO_SNDBUF", v)
			if oe != nil {
				return oe
			}
			min, max := ep.SocketOptions().SendBufferLimits()
			ep.SocketOptions().SetSendBufferSize(clampBufSize(int64(n), min, max), true)
			return nil
		},
		get: func(ep tcpip.Endpoint) (interface{}, *opError) { return ep.SocketOptions().GetSendBufferSize(), nil },
	},
	"SO_LINGER": {
		set: func(ep tcpip.Endpoint, v json.RawMessage) *opError {
			var pair []int
			if err := json.Unmarshal(v, &pair); err != nil || len(pair) != 2 {
				return bad("SO_LINGER takes [on, seconds], not %s", string(v))
			}
			ep.SocketOptions().SetLinger(tcpip.LingerOption{Enabled: pair[0] != 0,
				Timeout: time.Duration(pair[1]) * time.Second})
			return nil
		},
		get: func(ep tcpip.Endpoint) (interface{}, *opError) {
			l := ep.SocketOptions().GetLinger()
			on := 0
			if l.Enabled {
				on = 1
			}
			return []int{on, int(l.Timeout / time.Second)}, nil
		},
	},
	"TCP_MAXSEG":       intOpt("TCP_MAXSEG", tcpip.MaxSegOption),
	"TCP_KEEPCNT":      intOpt("TCP_KEEPCNT", tcpip.KeepaliveCountOption),
	"TCP_SYNCNT":       intOpt("TCP_SYNCNT", tcpip.TCPSynCountOption),
	"TCP_WINDOW_CLAMP": intOpt("TCP_WINDOW_CLAMP", tcpip.TCPWindowClampOption),
	"TCP_KEEPIDLE": durationOpt("TCP_KEEPIDLE", time.Second, 1, maxTCPKeepIdle,
		func(ep tcpip.Endpoint, d time.Duration) tcpip.Error {
			o := tcpip.KeepaliveIdleOption(d)
			return ep.SetSockOpt(&o)
		},
		func(ep tcpip.Endpoint) (time.Duration, tcpip.Error) {
			var o tcpip.KeepaliveIdleOption
			err := ep.GetSockOpt(&o)
			return time.Duration(o), err
		}),
	"TCP_KEEPINTVL": durationOpt("TCP_KEEPINTVL", time.Second, 1, maxTCPKeepIntvl,
		func(ep tcpip.Endpoint, d time.Duration) tcpip.Error {
			o := tcpip.KeepaliveIntervalOption(d)
			return ep.SetSockOpt(&o)
		},
		func(ep tcpip.Endpoint) (time.Duration, tcpip.Error) {
			var o tcpip.KeepaliveIntervalOption
			err := ep.GetSockOpt(&o)
			return time.Duration(o), err
		}),
	"TCP_USER_TIMEOUT": durationOpt("TCP_USER_TIMEOUT", time.Millisecond, 0, math.MaxInt32,
		func(ep tcpip.Endpoint, d time.Duration) tcpip.Error {
			o := tcpip.TCPUserTimeoutOption(d)
			return ep.SetSockOpt(&o)
		},
		func(ep tcpip.Endpoint) (time.Duration, tcpip.Error) {
			var o tcpip.TCPUserTimeoutOption
			err := ep.GetSockOpt(&o)
			return time.Duration(o), err
		}),
	"TCP_LINGER2": durationOpt("TCP_LINGER2", time.Second, math.MinInt32, math.MaxInt32,
		func(ep tcpip.Endpoint, d time.Duration) tcpip.Error {
			o := tcpip.TCPLingerTimeoutOption(d)
			return ep.SetSockOpt(&o)
		},
		func(ep tcpip.Endpoint) (time.Duration, tcpip.Error) {
			var o tcpip.TCPLingerTimeoutOption
			err := ep.GetSockOpt(&o)
			return time.Duration(o), err
		}),
	"TCP_DEFER_ACCEPT": durationOpt("TCP_DEFER_ACCEPT", time.Second, 0, math.MaxInt32,
		func(ep tcpip.Endpoint, d time.Duration) tcpip.Error {
			o := tcpip.TCPDeferAcceptOption(d)
			return ep.SetSockOpt(&o)
		},
		func(ep tcpip.Endpoint) (time.Duration, tcpip.Error) {
			var o tcpip.TCPDeferAcceptOption
			err := ep.GetSockOpt(&o)
			return time.Duration(o), err
		}),
	"TCP_CONGESTION": {
		set: func(ep tcpip.Endpoint, v json.RawMessage) *opError {
			var s string
			if err := json.Unmarshal(v, &s); err != nil {
				return bad("TCP_CONGESTION takes a name, not %s", string(v))
			}
			o := tcpip.CongestionControlOption(s)
			if err := ep.SetSockOpt(&o); err != nil {
				return netErr("setsockopt TCP_CONGESTION "+s, err)
			}
			return nil
		},
		get: func(ep tcpip.Endpoint) (interface{}, *opError) {
			var o tcpip.CongestionControlOption
			if err := ep.GetSockOpt(&o); err != nil {
				return nil, netErr("getsockopt TCP_CONGESTION", err)
			}
			return string(o), nil
		},
	},
}

// Options of the protocol that netstack (2022-12) does not have at all.
var unsupported = map[string]string{
	"TCP_FASTOPEN": "netstack has no TCP Fast Open",
}

func optionNames() []string {
	var names []string
	for n := range sockopts {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func setOption(ep tcpip.Endpoint, name string, v json.RawMessage) *opError {
	o, ok := sockopts[name]
	if !ok {
		return unknownOption(name)
	}
	return o.set(ep, v)
}

func getOption(ep tcpip.Endpoint, name string) (interface{}, *opError) {
	o, ok := sockopts[name]
	if !ok {
		return nil, unknownOption(name)
	}
	return o.get(ep)
}

func unknownOption(name string) *opError {
	if why, ok := unsupported[name]; ok {
		return &opError{"EOPNOTSUPP", fmt.Sprintf("%s: %s", name, why)}
	}
	return &opError{"EOPNOTSUPP", fmt.Sprintf("unknown socket option %q; the gVisor agent knows %s",
		name, strings.Join(optionNames(), ", "))}
}

// --- the stack's tunables --------------------------------------------------------------

// A tunable is a netstack stack or TCP protocol option, named for the suite
// (cases/profiles/gvisor.toml documents them). Values travel as strings, as
// sysctls do; durations in milliseconds, switches as 0 or 1.
type tunable struct {
	doc string
	get func(s *stack.Stack) (string, tcpip.Error)
	set func(s *stack.Stack, v string) (tcpip.Error, error)
}

func protoBool(doc string, opt func(bool) tcpip.SettableTransportProtocolOption,
	read func(s *stack.Stack) (bool, tcpip.Error)) tunable {
	return tunable{
		doc: doc,
		get: func(s *stack.Stack) (string, tcpip.Error) {
			b, err := read(s)
			if b {
				return "1", err
			}
			return "0", err
		},
		set: func(s *stack.Stack, v string) (tcpip.Error, error) {
			n, err := strconv.Atoi(v)
			if err != nil || (n != 0 && n != 1) {
				return nil, fmt.Errorf("takes 0 or 1, not %q", v)
			}
			return s.SetTransportProtocolOption(tcp.ProtocolNumber, opt(n == 1)), nil
		},
	}
}

func protoMillis(doc string, opt func(time.Duration) tcpip.SettableTransportProtocolOption,
	read func(s *stack.Stack) (time.Duration, tcpip.Error)) tunable {
	return tunable{
		doc: doc,
		get: func(s *stack.Stack) (string, tcpip.Error) {
			d, err := read(s)
			return strconv.FormatInt(d.Milliseconds(), 10), err
		},
		set: func(s *stack.Stack, v string) (tcpip.Error, error) {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 0 {
				return nil, fmt.Errorf("takes milliseconds >= 0, not %q", v)
			}
			return s.SetTransportProtocolOption(tcp.ProtocolNumber, opt(time.Duration(n)*time.Millisecond)), nil
		},
	}
}

var tunables = map[string]tunable{
	"tcp.sack": protoBool("negotiate SACK (tcpip.TCPSACKEnabled)",
		func(b bool) tcpip.SettableTransportProtocolOption { o := tcpip.TCPSACKEnabled(b); return &o },
		func(s *stack.Stack) (bool, tcpip.Error) {
			var o tcpip.TCPSACKEnabled
			err := s.TransportProtocolOption(tcp.ProtocolNumber, &o)
			return bool(o), err
		}),
	"tcp.syncookies": {
		doc: "1: SYN cookies when a listener's SYN queue is full (netstack's fixed behaviour), 2: for every SYN (tcpip.TCPAlwaysUseSynCookies); as Linux's tcp_syncookies, which netstack cannot set to 0",
		get: func(s *stack.Stack) (string, tcpip.Error) {
			var o tcpip.TCPAlwaysUseSynCookies
			err := s.TransportProtocolOption(tcp.ProtocolNumber, &o)
			if o {
				return "2", err
			}
			return "1", err
		},
		set: func(s *stack.Stack, v string) (tcpip.Error, error) {
			if v != "1" && v != "2" {
				return nil, fmt.Errorf("takes 1 (cookies when the SYN queue is full) or 2 (always), not %q: netstack cannot turn them off", v)
			}
			o := tcpip.TCPAlwaysUseSynCookies(v == "2")
			return s.SetTransportProtocolOption(tcp.ProtocolNumber, &o), nil
		},
	},
	"tcp.time_wait_timeout_ms": protoMillis("TIME-WAIT length (tcpip.TCPTimeWaitTimeoutOption)",
		func(d time.Duration) tcpip.SettableTransportProtocolOption {
			o := tcpip.TCPTimeWaitTimeoutOption(d)
			return &o
		},
		func(s *stack.Stack) (time.Duration, tcpip.Error) {
			var o tcpip.TCPTimeWaitTimeoutOption
			err := s.TransportProtocolOption(tcp.ProtocolNumber, &o)
			return time.Duration(o), err
		}),
	"tcp.linger_timeout_ms": protoMillis("FIN-WAIT-2 timeout of orphaned sockets (tcpip.TCPLingerTimeoutOption)",
		func(d time.Duration) tcpip.SettableTransportProtocolOption {
			o := tcpip.TCPLingerTimeoutOption(d)
			return &o
		},
		func(s *stack.Stack) (time.Duration, tcpip.Error) {
			var o tcpip.TCPLingerTimeoutOption
			err := s.TransportProtocolOption(tcp.ProtocolNumber, &o)
			return time.Duration(o), err
		}),
	"tcp.min_rto_ms": protoMillis("lower bound of the data RTO (tcpip.TCPMinRTOOption; not the handshake's)",
		func(d time.Duration) tcpip.SettableTransportProtocolOption { o := tcpip.TCPMinRTOOption(d); return &o },
		func(s *stack.Stack) (time.Duration, tcpip.Error) {
			var o tcpip.TCPMinRTOOption
			err := s.TransportProtocolOption(tcp.ProtocolNumber, &o)
			return time.Duration(o), err
		}),
	"tcp.max_rto_ms": protoMillis("upper bound of the data RTO (tcpip.TCPMaxRTOOption; not the handshake's)",
		func(d time.Duration) tcpip.SettableTransportProtocolOption { o := tcpip.TCPMaxRTOOption(d); return &o },
		func(s *stack.Stack) (time.Duration, tcpip.Error) {
			var o tcpip.TCPMaxRTOOption
			err := s.TransportProtocolOption(tcp.ProtocolNumber, &o)
			return time.Duration(o), err
		}),
	"tcp.max_retries": {
		doc: "data retransmissions before the connection is dropped (tcpip.TCPMaxRetriesOption)",
		get: func(s *stack.Stack) (string, tcpip.Error) {
			var o tcpip.TCPMaxRetriesOption
			err := s.TransportProtocolOption(tcp.ProtocolNumber, &o)
			return strconv.FormatUint(uint64(o), 10), err
		},
		set: func(s *stack.Stack, v string) (tcpip.Error, error) {
			n, err := strconv.ParseUint(v, 10, 32)
			if err != nil {
				return nil, fmt.Errorf("takes a count, not %q", v)
			}
			o := tcpip.TCPMaxRetriesOption(n)
			return s.SetTransportProtocolOption(tcp.ProtocolNumber, &o), nil
		},
	},
	"tcp.recovery": {
		doc: "loss detection, a bitmask as Linux's net.ipv4.tcp_recovery (tcpip.TCPRecovery): 1 RACK with its tail loss probe (the default), 2 static reordering window, 4 no duplicate-ACK threshold; 0 classic duplicate ACKs, no probe",
		get: func(s *stack.Stack) (string, tcpip.Error) {
			var o tcpip.TCPRecovery
			err := s.TransportProtocolOption(tcp.ProtocolNumber, &o)
			return strconv.Itoa(int(o)), err
		},
		set: func(s *stack.Stack, v string) (tcpip.Error, error) {
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 || n > 7 {
				return nil, fmt.Errorf("takes a bitmask 0 to 7 (1 RACK-TLP, 2 static reordering window, 4 no dupthresh), not %q", v)
			}
			o := tcpip.TCPRecovery(n)
			return s.SetTransportProtocolOption(tcp.ProtocolNumber, &o), nil
		},
	},
	"tcp.invalid_ratelimit_ms": {
		doc: "minimum spacing of ACKs for out-of-window segments (stack.TCPInvalidRateLimitOption)",
		get: func(s *stack.Stack) (string, tcpip.Error) {
			var o stack.TCPInvalidRateLimitOption
			err := s.Option(&o)
			return strconv.FormatInt(time.Duration(o).Milliseconds(), 10), err
		},
		set: func(s *stack.Stack, v string) (tcpip.Error, error) {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 0 {
				return nil, fmt.Errorf("takes milliseconds >= 0, not %q", v)
			}
			return s.SetOption(stack.TCPInvalidRateLimitOption(time.Duration(n) * time.Millisecond)), nil
		},
	},
}

func sysctlNames() []string {
	var names []string
	for n := range tunables {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// sysctl reads the tunable `name` and, when `value` is not null, sets it;
// the answer is the value before.
func sysctl(s *stack.Stack, name string, value json.RawMessage) (string, *opError) {
	t, ok := tunables[name]
	if !ok {
		return "", &opError{"ENOENT", fmt.Sprintf("no tunable %s in netstack; the gVisor agent has %s",
			name, strings.Join(sysctlNames(), ", "))}
	}
	old, err := t.get(s)
	if err != nil {
		return "", netErr("read "+name, err)
	}
	if len(value) == 0 || string(value) == "null" {
		return old, nil
	}
	var v string
	if json.Unmarshal(value, &v) != nil {
		v = string(value)
	}
	nerr, verr := t.set(s, strings.TrimSpace(v))
	if verr != nil {
		return "", bad("%s %v", name, verr)
	}
	if nerr != nil {
		return "", netErr("set "+name, nerr)
	}
	return old, nil
}

// --- TCP states ------------------------------------------------------------------------

// RFC 9293 names of netstack's TCP states (tcp.EndpointState; the first
// eleven follow Linux's numbering). Connect() before its SYN is out counts
// as SYN-SENT; netstack's other internal states (initial, bound) have no
// connection and are not listed, as Linux's sock_diag lists none.
var stateNames = map[tcp.EndpointState]string{
	tcp.StateEstablished: "ESTABLISHED", tcp.StateSynSent: "SYN-SENT", tcp.StateSynRecv: "SYN-RECEIVED",
	tcp.StateFinWait1: "FIN-WAIT-1", tcp.StateFinWait2: "FIN-WAIT-2", tcp.StateTimeWait: "TIME-WAIT",
	tcp.StateClose: "CLOSED", tcp.StateCloseWait: "CLOSE-WAIT", tcp.StateLastAck: "LAST-ACK",
	tcp.StateListen: "LISTEN", tcp.StateClosing: "CLOSING", tcp.StateConnecting: "SYN-SENT",
	tcp.StateError: "CLOSED",
}

// tcpStates lists every TCP endpoint registered with the stack's demuxer,
// whether the agent holds it or not: listeners, half-open connections not
// yet accepted (SYN-RECEIVED), accepted and connecting ones, and closed
// ones still in FIN-WAIT-2 or TIME-WAIT. Port -1 lists all.
func tcpStates(s *stack.Stack, port int) []fields {
	out := []fields{}
	seen := map[stack.TransportEndpoint]bool{}
	for _, te := range s.RegisteredEndpoints() {
		if seen[te] {
			continue
		}
		seen[te] = true
		ep, ok := te.(tcpip.Endpoint)
		if !ok {
			continue
		}
		info, ok := ep.Info().(*stack.TransportEndpointInfo)
		if !ok || info.TransProto != tcp.ProtocolNumber {
			continue
		}
		name, ok := stateNames[tcp.EndpointState(ep.State())]
		if !ok {
			continue
		}
		id := info.ID
		if port >= 0 && int(id.LocalPort) != port && int(id.RemotePort) != port {
			continue
		}
		out = append(out, fields{
			"local":  []interface{}{addrString(id.LocalAddress, info.NetProto), id.LocalPort},
			"remote": []interface{}{addrString(id.RemoteAddress, info.NetProto), id.RemotePort},
			"state":  name,
		})
	}
	return out
}
