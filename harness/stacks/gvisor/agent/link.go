package main

// The agent's view of its link: a counting wrapper around netstack's
// fdbased endpoint, and `settle`, which lets a state read see every frame
// the tester sent before it.

import (
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/link/nested"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// countingLink counts the frames netstack has taken in: each is counted
// once DeliverNetworkPacket has returned, when a TCP segment is queued to
// its endpoint's processor.
type countingLink struct {
	nested.Endpoint
	delivered atomic.Uint64
}

func newCountingLink(child stack.LinkEndpoint) *countingLink {
	c := &countingLink{}
	c.Init(child, c)
	return c
}

func (c *countingLink) DeliverNetworkPacket(protocol tcpip.NetworkProtocolNumber, pkt stack.PacketBufferPtr) {
	c.Endpoint.DeliverNetworkPacket(protocol, pkt)
	c.delivered.Add(1)
}

// iflaStats64 is IFLA_STATS64 of include/uapi/linux/if_link.h.
const iflaStats64 = 23

// tapRead is how many frames the link's reader has read from the TAP: the
// kernel counts a TAP's tx_packets when its reader takes the frame
// (tun_put_user), measured on this kernel.
func tapRead(ifindex int) (uint64, bool) {
	rib, err := syscall.NetlinkRIB(syscall.RTM_GETLINK, syscall.AF_UNSPEC)
	if err != nil {
		return 0, false
	}
	msgs, err := syscall.ParseNetlinkMessage(rib)
	if err != nil {
		return 0, false
	}
	for i := range msgs {
		m := &msgs[i]
		if m.Header.Type != syscall.RTM_NEWLINK || len(m.Data) < syscall.SizeofIfInfomsg {
			continue
		}
		if info := (*syscall.IfInfomsg)(unsafe.Pointer(&m.Data[0])); int(info.Index) != ifindex {
			continue
		}
		attrs, err := syscall.ParseNetlinkRouteAttr(m)
		if err != nil {
			return 0, false
		}
		for _, a := range attrs {
			if a.Attr.Type == iflaStats64 && len(a.Value) >= 16 {
				// struct rtnl_link_stats64 { rx_packets, tx_packets, ... }, host byte order
				return *(*uint64)(unsafe.Pointer(&a.Value[8])), true
			}
		}
	}
	return 0, false
}

// settle returns once netstack has processed every frame the tester wrote
// before this request. A kernel handles a segment before the tester's write
// returns; netstack handles it on other goroutines (the link's reader, then
// a TCP processor), so a state read right after a segment could otherwise
// see the state before it. In turn: the TAP holds no unread frame; the
// reader has handed netstack every frame it read; every TCP processor has
// drained its queue (stack.Pause returns only when they are idle). Bounded:
// after 100 ms it answers with what it has.
func (a *agent) settle() {
	deadline := time.Now().Add(100 * time.Millisecond)
	fds := []unix.PollFd{{Fd: int32(a.tapFD), Events: unix.POLLIN}}
	for time.Now().Before(deadline) {
		if n, err := unix.Poll(fds, 0); n <= 0 && err != unix.EINTR {
			break
		}
		time.Sleep(50 * time.Microsecond)
	}
	if read, ok := tapRead(a.tapIndex); ok {
		for a.link.delivered.Load() < read && time.Now().Before(deadline) {
			time.Sleep(50 * time.Microsecond)
		}
	}
	a.s.Pause()
	a.s.Resume()
}
