package main

// Operations packetdrill scripts need (harness/packetdrill): poll and
// ioctl, and the message flags send and recv take. Registered here, after
// ops.go's table (Go runs init functions in file-name order), so that
// file's table stays as it was.

import (
	"encoding/json"
	"fmt"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/waiter"
)

// pollEvents are poll(2)'s events by name; netstack's waiter masks have
// Linux's values (pkg/waiter).
var pollEvents = []struct {
	name string
	mask waiter.EventMask
}{
	{"POLLIN", waiter.EventIn}, {"POLLPRI", waiter.EventPri}, {"POLLOUT", waiter.EventOut},
	{"POLLERR", waiter.EventErr}, {"POLLHUP", waiter.EventHUp}, {"POLLRDNORM", waiter.EventRdNorm},
	{"POLLWRNORM", waiter.EventWrNorm},
}

// msgFlags are the message flags of hello's "flags": MSG_PEEK for recv
// (tcpip.ReadOptions.Peek), MSG_MORE for send (tcpip.WriteOptions.More).
var msgFlags = []string{"MSG_MORE", "MSG_PEEK"}

func init() {
	ops["poll"] = (*agent).opPoll
	ops["ioctl"] = (*agent).opIoctl
	hello := ops["hello"]
	ops["hello"] = func(a *agent, req *request) (fields, *opError) {
		out, oe := hello(a, req)
		if out != nil {
			out["flags"] = msgFlags
		}
		return out, oe
	}
}

func sendFlags(names []string) (bool, *opError) {
	more := false
	for _, n := range names {
		if n != "MSG_MORE" {
			return false, &opError{"EOPNOTSUPP", fmt.Sprintf("send takes no flag %s on netstack (it takes MSG_MORE)", n)}
		}
		more = true
	}
	return more, nil
}

func recvFlags(names []string) (bool, *opError) {
	peek := false
	for _, n := range names {
		if n != "MSG_PEEK" {
			return false, &opError{"EOPNOTSUPP", fmt.Sprintf("recv takes no flag %s on netstack (it takes MSG_PEEK)", n)}
		}
		peek = true
	}
	return peek, nil
}

// opPoll: {"fds":[[id,[events]],...],"timeout":T} -> {"revents":[[events],...]}.
// As runsc's poll(2), POLLERR and POLLHUP are always reported.
func (a *agent) opPoll(req *request) (fields, *opError) {
	type target struct {
		s    *sock
		mask waiter.EventMask
	}
	var targets []target
	for _, fd := range req.FDs {
		var id int
		var events []string
		if len(fd) != 2 || json.Unmarshal(fd[0], &id) != nil || json.Unmarshal(fd[1], &events) != nil {
			return nil, bad("poll: each fd is [id, [events]]")
		}
		s, ok := a.socks[id]
		if !ok {
			return nil, &opError{"EBADF", fmt.Sprintf("no socket with id %d", id)}
		}
		mask := waiter.EventErr | waiter.EventHUp
		for _, name := range events {
			found := false
			for _, e := range pollEvents {
				if e.name == name {
					mask |= e.mask
					found = true
				}
			}
			if !found {
				return nil, &opError{"EOPNOTSUPP", fmt.Sprintf("unknown poll event %s", name)}
			}
		}
		targets = append(targets, target{s, mask})
	}
	a.settle()
	ready := func() ([][]string, bool) {
		out := make([][]string, len(targets))
		any := false
		for i, t := range targets {
			got := t.s.ep.Readiness(t.mask) & t.mask
			out[i] = []string{}
			for _, e := range pollEvents {
				if got&e.mask != 0 {
					out[i] = append(out[i], e.name)
					any = true
				}
			}
		}
		return out, any
	}
	out, any := ready()
	if !any && timeout(req) > 0 {
		ch := make(chan struct{}, 1)
		var entries []*waiter.Entry
		for _, t := range targets {
			e := waiter.NewFunctionEntry(t.mask, func(waiter.EventMask) {
				select {
				case ch <- struct{}{}:
				default:
				}
			})
			t.s.wq.EventRegister(&e)
			entries = append(entries, &e)
		}
		deadline := time.NewTimer(timeout(req))
		for !any {
			select {
			case <-ch:
			case <-deadline.C:
				any = true
			}
			var ok bool
			out, ok = ready()
			any = any || ok
		}
		deadline.Stop()
		for i, t := range targets {
			t.s.wq.EventUnregister(entries[i])
		}
	}
	return fields{"revents": out}, nil
}

// opIoctl: {"id":C,"name":"SIOCINQ"|"SIOCOUTQ"} -> {"value":N}, from
// netstack's queue sizes as runsc's ioctl(2) reads them.
func (a *agent) opIoctl(req *request) (fields, *opError) {
	s, oe := a.sock(req)
	if oe != nil {
		return nil, oe
	}
	opts := map[string]tcpip.SockOptInt{"SIOCINQ": tcpip.ReceiveQueueSizeOption, "FIONREAD": tcpip.ReceiveQueueSizeOption,
		"SIOCOUTQ": tcpip.SendQueueSizeOption}
	opt, ok := opts[req.Name]
	if !ok {
		return nil, &opError{"EOPNOTSUPP", fmt.Sprintf("netstack has no ioctl %s (SIOCINQ, SIOCOUTQ)", req.Name)}
	}
	a.settle()
	n, err := s.ep.GetSockOptInt(opt)
	if err != nil {
		return nil, netErr("ioctl "+req.Name, err)
	}
	return fields{"value": n}, nil
}
