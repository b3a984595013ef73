"""The RTO a stack computes from the RTT samples it took, as its profile documents it.

Rules of this file:
- Pure: samples in, seconds out. No clocks, no IO.
- One estimator per documented variant (the profile's behaviour
  "rto.estimator" names it), each written as the stack's source writes it,
  so a case can say which retransmission time the samples it caused must
  give: RFC 6298 §2 itself, Linux's (tcp_rtt_estimator), lwIP's (Jacobson's
  in 500 ms ticks, tcp_receive), 4.4BSD's in 500 ms ticks (tcp_xmit_timer,
  as libslirp keeps it), and none at all ("constant": passt retransmits
  after a fixed timeout, its rto_min, whatever the samples).
- A sample is taken per round of one segment: the case sends one segment,
  holds its ACK for the RTT it wants the stack to measure, and never lets
  a segment be retransmitted before its ACK (Karn's rule would drop it).
- An estimator that counts coarse ticks cannot tell where in a tick a
  sample fell: it returns the lowest and the highest RTO the samples can
  give; the exact ones return the same number twice.
"""
from __future__ import annotations

from itertools import product


def rfc6298(samples: list[float], rto_min: float, rto_max: float) -> float:
    """RFC 6298 §2.2-2.3 (alpha 1/8, beta 1/4, K 4, G 0), raised to rto_min
    and capped at rto_max (gVisor: sender.updateRTO without timestamps)."""
    srtt = rttvar = None
    for r in samples:
        if srtt is None:
            srtt, rttvar = r, r / 2
        else:
            rttvar = 0.75 * rttvar + 0.25 * abs(srtt - r)
            srtt = 0.875 * srtt + 0.125 * r
    return min(max(srtt + 4 * rttvar, rto_min), rto_max)


def linux(samples: list[float], rto_min: float, rto_max: float) -> float:
    """tcp_rtt_estimator and __tcp_set_rto (net/ipv4/tcp_input.c): mdev is
    4 x the mean deviation, with a gain of 1/32 when the RTT falls; rttvar
    follows the largest mdev of a round (mdev_max, at least rto_min) and
    decays by a quarter of its excess at the end of each round; RTO = SRTT
    + rttvar. One segment per round: every sample ends its round."""
    srtt = None
    for m in samples:
        if srtt is None:
            srtt, mdev = m, 2 * m
            rttvar = mdev_max = max(mdev, rto_min)
            continue
        err = m - srtt
        srtt += err / 8
        if err < 0:
            err = -err - mdev / 4
            if err > 0:
                err /= 8
        else:
            err -= mdev / 4
        mdev += err
        if mdev > mdev_max:
            mdev_max = mdev
            rttvar = max(rttvar, mdev_max)
        if mdev_max < rttvar:
            rttvar -= (rttvar - mdev_max) / 4
        mdev_max = rto_min
    return min(srtt + rttvar, rto_max)


LWIP_TICK = 0.5                   # TCP_SLOW_INTERVAL


def lwip_ticks(samples: list[int], initial: float = 3.0) -> float:
    """tcp_receive (src/core/tcp_in.c), samples in whole ticks: sa holds 8 x
    SRTT, sv 4 x the mean deviation, starting from sa = 0 and sv = the
    initial RTO in ticks (tcp_alloc); RTO = (sa >> 3) + sv ticks."""
    sa, sv = 0, round(initial / LWIP_TICK)
    for m in samples:
        m = m - (sa >> 3)
        sa += m
        if m < 0:
            m = -m
        m -= sv >> 2
        sv += m
    return ((sa >> 3) + sv) * LWIP_TICK


BSD_TICK = 0.5                    # PR_SLOWHZ = 2
BSD_RTTMIN, BSD_REXMTMAX = 2, 24  # TCPTV_MIN, TCPTV_REXMTMAX in ticks (libslirp tcp_timer.h)


def bsd_ticks(samples: list[int]) -> float:
    """tcp_xmit_timer (4.4BSD; libslirp src/tcp_input.c), samples as t_rtt
    counts them: 1 when the segment is sent, one more at each slow tick.
    t_srtt holds 8 x SRTT, t_rttvar 4 x the mean deviation; the first
    sample sets srtt = rtt << 3, rttvar = rtt << 1; RTO = TCP_REXMTVAL =
    (srtt >> 3) + rttvar ticks, clamped to t_rttmin .. TCPTV_REXMTMAX."""
    srtt = rttvar = 0
    for rtt in samples:
        if srtt:
            delta = rtt - 1 - (srtt >> 3)
            srtt = max(srtt + delta, 1)
            delta = abs(delta) - (rttvar >> 2)
            rttvar = max(rttvar + delta, 1)
        else:
            srtt, rttvar = rtt << 3, rtt << 1
    return min(max((srtt >> 3) + rttvar, BSD_RTTMIN), BSD_REXMTMAX) * BSD_TICK


def rto_range(estimator: str, samples: list[float], rto_min: float, rto_max: float) -> tuple[float, float]:
    """(lowest, highest) RTO the documented estimator gives for the samples
    (seconds). lwIP counts the 500 ms ticks between a segment and its ACK:
    a sample of s seconds is floor(s / tick) or one more; its first sample
    may be missed (the tick count is still 0 right after the stack starts)."""
    if estimator == "rfc6298":
        rto = rfc6298(samples, rto_min, rto_max)
        return rto, rto
    if estimator == "linux":
        rto = linux(samples, rto_min, rto_max)
        return rto, rto
    if estimator == "constant":
        return rto_min, rto_min
    if estimator == "lwip-ticks":
        data = samples[1:]                         # lwIP takes no sample in the handshake of a fresh stack
        choices = [(int(s // LWIP_TICK), int(s // LWIP_TICK) + 1) for s in data]
        rtos = {lwip_ticks(list(c)) for c in product(*choices)} | {lwip_ticks(list(c)) for c in product(*choices[1:])}
        return min(min(rtos), rto_max), min(max(rtos), rto_max)
    if estimator == "bsd-ticks":
        # t_rtt is 1 + the slow ticks that passed while the segment was out:
        # floor(s / tick) of them, or one more, by where the ticks fell.
        choices = [(1 + int(s // BSD_TICK), 2 + int(s // BSD_TICK)) for s in samples]
        rtos = {bsd_ticks(list(c)) for c in product(*choices)}
        return min(rtos), max(rtos)
    raise ValueError(f"unknown RTO estimator {estimator!r} (rfc6298, linux, lwip-ticks, bsd-ticks, constant)")
