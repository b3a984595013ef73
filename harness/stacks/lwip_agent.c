/* tcpconf app-control agent for lwIP: Debian's liblwip (the unix port's build) on a TAP device.
 *
 * Rules of this file:
 * - It speaks the app-control protocol of harness/agent.py (PROTOCOL there,
 *   version 1): one JSON request per line on stdin, one JSON reply per line
 *   on stdout, in order. Nothing else reaches stdout: lwIP's own messages
 *   (assertions) are sent to stderr.
 * - It runs lwIP as Debian builds it (tcpip thread, pthread sys_arch) with
 *   one Ethernet interface on the TAP named by PRECONFIGURED_TAPIF, with the
 *   MAC and the one address given on the command line, and keeps the link
 *   quiet otherwise: no duplicate address detection, no router solicitation,
 *   no MLD.
 * - The interface driver is this file's, not Debian's tapif: tapif receives
 *   into PBUF_POOL buffers, which liblwip0 2.1.3+dfsg1-2 allocates at 616
 *   bytes while pbuf_alloc fills them up to 1536 (memp and pbuf disagree on
 *   PBUF_POOL_BUFSIZE), so any frame over ~590 bytes corrupts the heap. This
 *   driver receives into PBUF_RAM buffers of the frame's size.
 * - The application is lwIP's socket API (lwip_*). Every socket is
 *   non-blocking; waits use lwip_poll with the request's timeout. TCP states
 *   come from lwIP's PCB lists, read with the tcpip core lock held (the lock
 *   the tcpip thread holds while it processes segments and timers).
 * - Socket options map to lwIP's where lwIP has them; the others answer
 *   EOPNOTSUPP naming what lwIP has instead. Errors are errno names.
 * - The protocol's plumbing (JSON requests, replies, base64) is agent_proto.h,
 *   and the operations served alike on lwIPv6 (sockets and their ids,
 *   addresses, options by name, listen, accept, recv, the dispatch) are
 *   lwip_ops.h, both shared with lwIPv6's agent; this file holds what is
 *   lwIP's own: its options, connect, send, shutdown, close, error, TCP
 *   states, poll, ioctl and message flags, the TAP and the bring-up.
 *
 * Build (python3 -m harness.setup --stack lwip does it):
 *   gcc -O2 -Wall -Wextra -o build/lwip-agent harness/stacks/lwip_agent.c \
 *       $(pkg-config --cflags --libs lwip) -lpthread -lm
 * Run:  PRECONFIGURED_TAPIF=tap0 build/lwip-agent 02:12:34:56:78:ab 198.18.0.1/24   (or 2001:2::1/64)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <fcntl.h>
#include <linux/if_tun.h>
#include <sys/ioctl.h>

#include "lwip/ethip6.h"
#include "lwip/init.h"
#include "lwip/ip_addr.h"
#include "lwip/netif.h"
#include "lwip/pbuf.h"
#include "lwip/priv/tcp_priv.h"
#include "lwip/sockets.h"
#include "lwip/sys.h"
#include "lwip/tcpip.h"
#include "netif/etharp.h"

#define PROTOCOL_VERSION 1
#define MAX_SOCKETS 1024
#define MAX_RECV (1 << 20)

#include "agent_proto.h"

struct sock {
    int fd;                       /* lwIP's descriptor, 0 = free */
};

#include "lwip_ops.h"

/* --- socket options -------------------------------------------------------------------- */

static const struct option OPTIONS[] = {
    { "SO_REUSEADDR", SOL_SOCKET, SO_REUSEADDR, K_INT, NULL },
    { "SO_KEEPALIVE", SOL_SOCKET, SO_KEEPALIVE, K_INT, NULL },
    { "SO_LINGER", SOL_SOCKET, SO_LINGER, K_LINGER, NULL },
    { "TCP_NODELAY", IPPROTO_TCP, TCP_NODELAY, K_INT, NULL },
    { "TCP_KEEPIDLE", IPPROTO_TCP, TCP_KEEPIDLE, K_INT, NULL },
    { "TCP_KEEPINTVL", IPPROTO_TCP, TCP_KEEPINTVL, K_INT, NULL },
    { "TCP_KEEPCNT", IPPROTO_TCP, TCP_KEEPCNT, K_INT, NULL },
    { "SO_RCVBUF", 0, 0, K_INT, "lwIP's SO_RCVBUF limits only UDP and raw receive queues; "
                                "the TCP receive window is TCP_WND = 65535, compiled in" },
    { "SO_SNDBUF", 0, 0, K_INT, "lwIP has no SO_SNDBUF; the send buffer is TCP_SND_BUF = 65535, compiled in" },
    { "TCP_MAXSEG", 0, 0, K_INT, "lwIP has no TCP_MAXSEG; the MSS is TCP_MSS = 1460, compiled in" },
    { "TCP_SYNCNT", 0, 0, K_INT, "lwIP has no TCP_SYNCNT; SYN retransmissions are TCP_SYNMAXRTX = 6, compiled in" },
    { "TCP_LINGER2", 0, 0, K_INT, "lwIP has no TCP_LINGER2; FIN-WAIT-2 after close() ends after "
                                  "TCP_FIN_WAIT_TIMEOUT = 20 s, compiled in" },
    { "TCP_DEFER_ACCEPT", 0, 0, K_INT, "lwIP has no TCP_DEFER_ACCEPT" },
    { "TCP_WINDOW_CLAMP", 0, 0, K_INT, "lwIP has no TCP_WINDOW_CLAMP; the window is TCP_WND = 65535, compiled in" },
    { "TCP_USER_TIMEOUT", 0, 0, K_INT, "lwIP has no TCP_USER_TIMEOUT; a connection is dropped after "
                                       "TCP_MAXRTX = 12 retransmissions, compiled in" },
    { "TCP_QUICKACK", 0, 0, K_INT, "lwIP has no TCP_QUICKACK" },
    { "TCP_FASTOPEN", 0, 0, K_INT, "lwIP has no TCP Fast Open" },
    { "TCP_CONGESTION", 0, 0, K_INT, "lwIP has one built-in congestion control; it cannot be chosen" },
    /* The IP header of the socket's segments: lwIP keeps one TTL and one TOS
       per PCB (struct ip_pcb) and gives them to ip6_output_if as the hop
       limit and traffic class of an IPv6 connection, so the IPv6 names map
       onto the same fields (lwip_setsockopt accepts IPPROTO_IP on any TCP socket). */
    { "IP_TOS", IPPROTO_IP, IP_TOS, K_INT, NULL },
    { "IP_TTL", IPPROTO_IP, IP_TTL, K_INT, NULL },
    { "IPV6_TCLASS", IPPROTO_IP, IP_TOS, K_INT, NULL },
    { "IPV6_UNICAST_HOPS", IPPROTO_IP, IP_TTL, K_INT, NULL },
    { "IP_RECVERR", 0, 0, K_INT, "lwIP reports no ICMP error to a TCP socket (no IP_RECVERR)" },
    { "IPV6_RECVERR", 0, 0, K_INT, "lwIP reports no ICMP error to a TCP socket (no IPV6_RECVERR)" },
    { "SO_OOBINLINE", 0, 0, K_INT, "lwIP has no urgent data: tcp_in.c ignores the URG bit and the urgent pointer" },
};
#define NOPTIONS (sizeof(OPTIONS) / sizeof(OPTIONS[0]))

/* --- operations ---------------------------------------------------------------------- */

static void put_msg_flags(struct ctx *c);
static int msg_flags(struct ctx *c, const struct jv *req, char op);

static int op_hello(struct ctx *c, const struct jv *req)
{
    (void)req;
    field(c, "version"); bprintf(&c->out, "%d", PROTOCOL_VERSION);
    field(c, "stack"); bstr(&c->out, "lwip");
    field(c, "lwip"); bstr(&c->out, LWIP_VERSION_STRING);
    put_ops_and_options(c);
    put_msg_flags(c);
    return 0;
}

static int op_connect(struct ctx *c, const struct jv *req)
{
    int af, fd;
    struct sa to, local;
    if (connect_args(c, req, &af, &to, &local) || (fd = connect_socket(c, req, af, &local)) < 0) return -1;
    if (lwip_connect(fd, &to.u.sa, to.len) < 0 && errno != EINPROGRESS) {
        fail(c, errname(errno), "connect to %s port %d: %s", jget(req, "address")->str,
             (int)jget(req, "port")->num, strerror(errno));
        lwip_close(fd);
        return -1;
    }
    return add_socket(c, fd);
}

static int op_send(struct ctx *c, const struct jv *req)
{
    int id = get_socket(c, req), how;
    double deadline = now() + timeout_of(req);
    unsigned char *bytes;
    size_t len, sent = 0;
    if (id < 0 || (how = msg_flags(c, req, 's')) < 0 || !(bytes = send_data(c, req, &len))) return -1;
    while (sent < len) {
        ssize_t n = lwip_send(socks[id].fd, bytes + sent, len - sent, how);
        if (n > 0) { sent += (size_t)n; continue; }
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
            free(bytes);
            return fail_errno(c, "send");
        }
        if (wait_for(socks[id].fd, POLLOUT, deadline) <= 0) break;
    }
    free(bytes);
    field(c, "sent"); bprintf(&c->out, "%zu", sent);
    return 0;
}

static int op_recv(struct ctx *c, const struct jv *req)
{
    int id = get_socket(c, req), how;
    if (id < 0 || (how = msg_flags(c, req, 'r')) < 0) return -1;
    return recv_data(c, req, socks[id].fd, how, now() + timeout_of(req), NULL);
}

static int op_shutdown(struct ctx *c, const struct jv *req)
{
    int id = get_socket(c, req), how;
    if (id < 0 || (how = shutdown_how(c, req)) < 0) return -1;
    if (lwip_shutdown(socks[id].fd, how) < 0) return fail_errno(c, "shutdown");
    return 0;
}

static int op_close(struct ctx *c, const struct jv *req)
{
    int id = get_socket(c, req), fd;
    if (id < 0) return -1;
    fd = socks[id].fd;
    socks[id].fd = 0;
    /* close() as an application calls it: blocking, so that SO_LINGER with a
       timeout waits as lwIP documents (on a non-blocking socket it would not). */
    set_nonblocking(fd, 0);
    if (lwip_close(fd) < 0) return fail_errno(c, "close");
    return 0;
}

static int op_error(struct ctx *c, const struct jv *req)
{
    int id = get_socket(c, req), e = 0;
    socklen_t len = sizeof(e);
    if (id < 0) return -1;
    if (lwip_getsockopt(socks[id].fd, SOL_SOCKET, SO_ERROR, &e, &len) < 0) return fail_errno(c, "getsockopt SO_ERROR");
    field(c, "error");
    if (e) bstr(&c->out, errname(e));
    else bputs(&c->out, "null");
    return 0;
}

/* lwIP's enum tcp_state by RFC 9293 names. */
static const char *const STATES[] = { "CLOSED", "LISTEN", "SYN-SENT", "SYN-RECEIVED", "ESTABLISHED", "FIN-WAIT-1",
                                      "FIN-WAIT-2", "CLOSE-WAIT", "CLOSING", "LAST-ACK", "TIME-WAIT" };

static void put_pcb_addr(struct buf *b, const ip_addr_t *a, u16_t port)
{
    char text[INET6_ADDRSTRLEN] = "?";
    if (IP_IS_V6(a)) inet_ntop(AF_INET6, ip_2_ip6(a)->addr, text, sizeof(text));
    else inet_ntop(AF_INET, &ip_2_ip4(a)->addr, text, sizeof(text));
    bputs(b, "[");
    bstr(b, text);
    bprintf(b, ",%u]", (unsigned)port);
}

/* One socket of the state report; `rcv_wnd` (the PCB's receive window in
   octets, which a scaled window field shows only rounded down) where it has
   one, -1 for a listener. */
static void put_pcb(struct buf *b, int *first, int port, const ip_addr_t *local, u16_t lport,
                    const ip_addr_t *remote, u16_t rport, int state, long rcv_wnd)
{
    if (port >= 0 && port != lport && port != rport) return;
    bputs(b, *first ? "{" : ",{");
    *first = 0;
    bstr(b, "local"); bputs(b, ":"); put_pcb_addr(b, local, lport);
    bputs(b, ","); bstr(b, "remote"); bputs(b, ":"); put_pcb_addr(b, remote, rport);
    bputs(b, ","); bstr(b, "state"); bputs(b, ":");
    if (state >= 0 && state < (int)(sizeof(STATES) / sizeof(STATES[0]))) bstr(b, STATES[state]);
    else bprintf(b, "\"%d\"", state);
    if (rcv_wnd >= 0) bprintf(b, ",\"rcv_wnd\":%ld", rcv_wnd);
    bputs(b, "}");
}

static int op_state(struct ctx *c, const struct jv *req)
{
    const struct jv *p = jget(req, "port");
    int port = p && p->t == J_NUM ? (int)p->num : -1, first = 1;
    struct tcp_pcb_listen *l;
    struct tcp_pcb *pcb;
    struct buf b = { 0 };
    bputs(&b, "[");
    LOCK_TCPIP_CORE();
    for (l = tcp_listen_pcbs.listen_pcbs; l; l = l->next)
        put_pcb(&b, &first, port, &l->local_ip, l->local_port, IP_IS_V6(&l->local_ip) ? IP6_ADDR_ANY : IP4_ADDR_ANY, 0,
                (int)l->state, -1);
    for (pcb = tcp_active_pcbs; pcb; pcb = pcb->next)
        put_pcb(&b, &first, port, &pcb->local_ip, pcb->local_port, &pcb->remote_ip, pcb->remote_port, (int)pcb->state,
                (long)pcb->rcv_wnd);
    for (pcb = tcp_tw_pcbs; pcb; pcb = pcb->next)
        put_pcb(&b, &first, port, &pcb->local_ip, pcb->local_port, &pcb->remote_ip, pcb->remote_port, (int)pcb->state,
                (long)pcb->rcv_wnd);
    UNLOCK_TCPIP_CORE();
    bputs(&b, "]");
    field(c, "sockets");
    bput(&c->out, b.s, b.len);
    free(b.s);
    return 0;
}

/* --- what packetdrill scripts need: poll, ioctl, message flags ----------------------------- */

/* poll(2) events by name; lwIP reports POLLIN, POLLOUT and POLLERR (lwip_pollscan). */
static const struct { const char *name; short bit; } POLL_EVENTS[] = {
    { "POLLIN", POLLIN }, { "POLLPRI", POLLPRI }, { "POLLOUT", POLLOUT }, { "POLLERR", POLLERR },
    { "POLLHUP", POLLHUP }, { "POLLNVAL", POLLNVAL }, { "POLLRDNORM", POLLRDNORM }, { "POLLRDBAND", POLLRDBAND },
    { "POLLWRNORM", POLLWRNORM }, { "POLLWRBAND", POLLWRBAND },
};
#define NPOLL_EVENTS (sizeof(POLL_EVENTS) / sizeof(POLL_EVENTS[0]))

/* Message flags lwip_send ('s') and lwip_recv ('r') take, by name: the `flags` list of hello. */
static const struct { const char *name; int bit; char op; } MSG_FLAG_NAMES[] = {
    { "MSG_PEEK", MSG_PEEK, 'r' }, { "MSG_MORE", MSG_MORE, 's' },
};
#define NMSG_FLAGS (sizeof(MSG_FLAG_NAMES) / sizeof(MSG_FLAG_NAMES[0]))

static void put_msg_flags(struct ctx *c)
{
    size_t i;
    field(c, "flags"); bputs(&c->out, "[");
    for (i = 0; i < NMSG_FLAGS; i++) {
        if (i) bputs(&c->out, ",");
        bstr(&c->out, MSG_FLAG_NAMES[i].name);
    }
    bputs(&c->out, "]");
}

/* The request's "flags" (names) as lwIP's bits for send ('s') or recv ('r'); -1 after fail(). */
static int msg_flags(struct ctx *c, const struct jv *req, char op)
{
    const struct jv *flags = jget(req, "flags");
    size_t i, k;
    int bits = 0;
    if (!flags || flags->t == J_NULL) return 0;
    if (flags->t != J_ARR) return fail(c, "EINVAL", "bad arguments: flags is a list of names");
    for (i = 0; i < flags->n; i++) {
        const struct jv *f = &flags->items[i];
        for (k = 0; k < NMSG_FLAGS; k++)
            if (f->t == J_STR && strcmp(f->str, MSG_FLAG_NAMES[k].name) == 0 && MSG_FLAG_NAMES[k].op == op) break;
        if (k == NMSG_FLAGS)
            return fail(c, "EOPNOTSUPP", "%s takes no flag %s on lwIP (it takes %s)", op == 's' ? "send" : "recv",
                        f->t == J_STR ? f->str : "?", op == 's' ? "MSG_MORE" : "MSG_PEEK");
        bits |= MSG_FLAG_NAMES[k].bit;
    }
    return bits;
}

/* {"op":"poll","fds":[[id,[event names]],...],"timeout":T} -> {"revents":[[names],...]} */
static int op_poll(struct ctx *c, const struct jv *req)
{
    const struct jv *fds = jget(req, "fds");
    double timeout = timeout_of(req);
    struct pollfd p[64];
    size_t i, k, n;
    int r;
    if (!fds || fds->t != J_ARR || fds->n > 64) return fail(c, "EINVAL", "bad arguments: fds is [[id, [events]], ...]");
    n = fds->n;
    for (i = 0; i < n; i++) {
        const struct jv *e = &fds->items[i], *id, *events;
        if (e->t != J_ARR || e->n != 2 || e->items[1].t != J_ARR)
            return fail(c, "EINVAL", "bad arguments: each fd is [id, [events]]");
        id = &e->items[0];
        events = &e->items[1];
        if (id->t != J_NUM || id->num < 1 || id->num > MAX_SOCKETS || !socks[(int)id->num].fd)
            return fail(c, "EBADF", "no socket with that id");
        p[i].fd = socks[(int)id->num].fd;
        p[i].events = 0;
        p[i].revents = 0;
        for (k = 0; k < events->n; k++) {
            size_t j;
            for (j = 0; j < NPOLL_EVENTS; j++)
                if (events->items[k].t == J_STR && strcmp(events->items[k].str, POLL_EVENTS[j].name) == 0) break;
            if (j == NPOLL_EVENTS) return fail(c, "EOPNOTSUPP", "unknown poll event");
            p[i].events |= POLL_EVENTS[j].bit;
        }
    }
    r = lwip_poll(p, (nfds_t)n, (int)ceil(timeout * 1000.0));
    if (r < 0) return fail_errno(c, "poll");
    field(c, "revents"); bputs(&c->out, "[");
    for (i = 0; i < n; i++) {
        int first = 1;
        bputs(&c->out, i ? ",[" : "[");
        for (k = 0; k < NPOLL_EVENTS; k++) {
            if (!(p[i].revents & POLL_EVENTS[k].bit)) continue;
            if (!first) bputs(&c->out, ",");
            bstr(&c->out, POLL_EVENTS[k].name);
            first = 0;
        }
        bputs(&c->out, "]");
    }
    bputs(&c->out, "]");
    return 0;
}

/* {"op":"ioctl","id":C,"name":"SIOCINQ"} -> {"value":N}: lwIP has FIONREAD (= SIOCINQ) only. */
static int op_ioctl(struct ctx *c, const struct jv *req)
{
    int id = get_socket(c, req);
    const struct jv *name = jget(req, "name");
    int n = 0;
    if (id < 0) return -1;
    if (!name || name->t != J_STR) return fail(c, "EINVAL", "bad arguments: name is an ioctl name");
    if (strcmp(name->str, "SIOCINQ") != 0 && strcmp(name->str, "FIONREAD") != 0)
        return fail(c, "EOPNOTSUPP", "lwIP has no ioctl %s (lwip_ioctl: FIONREAD and FIONBIO)", name->str);
    if (lwip_ioctl(socks[id].fd, FIONREAD, &n) < 0) return fail_errno(c, "ioctl FIONREAD");
    field(c, "value"); bprintf(&c->out, "%d", n);
    return 0;
}

/* --- the TAP interface ------------------------------------------------------------------ */

static struct netif tap;
static int tap_fd = -1;
static u8_t tap_mac[6];

/* lwIP hands over an Ethernet frame: write it to the TAP. */
static err_t tap_linkoutput(struct netif *netif, struct pbuf *p)
{
    unsigned char frame[1522];
    (void)netif;
    if (p->tot_len > sizeof(frame)) return ERR_IF;
    pbuf_copy_partial(p, frame, p->tot_len, 0);
    if (write(tap_fd, frame, p->tot_len) != (ssize_t)p->tot_len) {
        perror("lwip-agent: write to the TAP");
        return ERR_IF;
    }
    return ERR_OK;
}

static int reader_busy;            /* the reader holds a frame not yet handed to lwIP */

/* The receive thread: every frame the TAP gives goes to lwIP's tcpip thread. */
static void tap_reader(void *arg)
{
    static unsigned char frame[65536];
    struct netif *netif = arg;
    for (;;) {
        struct pollfd w = { tap_fd, POLLIN, 0 };
        struct pbuf *p;
        ssize_t n;
        if (poll(&w, 1, -1) < 0 && errno != EINTR) {
            perror("lwip-agent: poll the TAP");
            exit(1);
        }
        /* Busy before the frame leaves the TAP's queue: see settle(). */
        __atomic_store_n(&reader_busy, 1, __ATOMIC_SEQ_CST);
        n = read(tap_fd, frame, sizeof(frame));
        if (n < 0 && errno != EINTR && errno != EAGAIN) {
            perror("lwip-agent: read from the TAP");
            exit(1);
        }
        if (n > 0 && n <= 0xFFFF && (p = pbuf_alloc(PBUF_RAW, (u16_t)n, PBUF_RAM))) {
            pbuf_take(p, frame, (u16_t)n);
            if (netif->input(p, netif) != ERR_OK) pbuf_free(p);
        }
        __atomic_store_n(&reader_busy, 0, __ATOMIC_SEQ_CST);
    }
}

static void signal_sem(void *arg)
{
    sys_sem_signal((sys_sem_t *)arg);
}

/* Let lwIP process every frame the tester has written before this request,
   as a kernel does within the write: wait (at most 200 ms) until the TAP's
   queue is empty and the reader idle, then for the tcpip thread to reach a
   callback queued behind the frames the reader handed over. Every operation
   runs after it, so a case's segments and calls take effect in its order. */
static void settle(void)
{
    double deadline = now() + 0.2;
    sys_sem_t done;
    for (;;) {
        struct pollfd w = { tap_fd, POLLIN, 0 };
        int queued = poll(&w, 1, 0) > 0 && (w.revents & POLLIN);
        if ((!queued && !__atomic_load_n(&reader_busy, __ATOMIC_SEQ_CST)) || now() > deadline) break;
        usleep(50);
    }
    if (sys_sem_new(&done, 0) != ERR_OK) return;
    if (tcpip_callback(signal_sem, &done) == ERR_OK) sys_sem_wait(&done);
    sys_sem_free(&done);
}

/* netif_add's init: open the TAP and describe the interface. */
static err_t tap_init(struct netif *netif)
{
    struct ifreq ifr;
    memset(&ifr, 0, sizeof(ifr));
    strncpy(ifr.ifr_name, getenv("PRECONFIGURED_TAPIF"), sizeof(ifr.ifr_name) - 1);
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
    if ((tap_fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC)) < 0 || ioctl(tap_fd, TUNSETIFF, &ifr) < 0) {
        fprintf(stderr, "lwip-agent: cannot open the TAP %s: %s\n", ifr.ifr_name, strerror(errno));
        return ERR_IF;
    }
    netif->name[0] = 't';
    netif->name[1] = 'p';
    netif->output = etharp_output;
    netif->output_ip6 = ethip6_output;
    netif->linkoutput = tap_linkoutput;
    netif->mtu = 1500;
    netif->hwaddr_len = 6;
    memcpy(netif->hwaddr, tap_mac, 6);
    netif->flags = NETIF_FLAG_BROADCAST | NETIF_FLAG_ETHARP | NETIF_FLAG_ETHERNET;
    sys_thread_new("tap", tap_reader, netif, DEFAULT_THREAD_STACKSIZE, DEFAULT_THREAD_PRIO);
    return ERR_OK;
}

/* --- start-up -------------------------------------------------------------------------- */

static void tcpip_started(void *arg)
{
    sys_sem_signal((sys_sem_t *)arg);
}

/* Bring lwIP up on the TAP with `mac` and `spec` = ADDRESS/PREFIX. Returns 0, or -1 with a message on stderr. */
static int start_lwip(const char *mac, const char *spec)
{
    char addr[INET6_ADDRSTRLEN + 1];
    const char *slash = strchr(spec, '/');
    int prefix;
    unsigned m[6];
    sys_sem_t started;
    struct netif *added;
    if (sscanf(mac, "%2x:%2x:%2x:%2x:%2x:%2x", &m[0], &m[1], &m[2], &m[3], &m[4], &m[5]) != 6) {
        fprintf(stderr, "lwip-agent: the MAC is six hex octets, e.g. 02:12:34:56:78:ab, not %s\n", mac);
        return -1;
    }
    for (prefix = 0; prefix < 6; prefix++) tap_mac[prefix] = (u8_t)m[prefix];
    if (!slash || (size_t)(slash - spec) >= sizeof(addr) || sscanf(slash + 1, "%d", &prefix) != 1) {
        fprintf(stderr, "lwip-agent: the address is ADDRESS/PREFIX, e.g. 198.18.0.1/24 or 2001:2::1/64, not %s\n", spec);
        return -1;
    }
    memcpy(addr, spec, (size_t)(slash - spec));
    addr[slash - spec] = 0;
    if (sys_sem_new(&started, 0) != ERR_OK) {
        fprintf(stderr, "lwip-agent: cannot create a semaphore\n");
        return -1;
    }
    tcpip_init(tcpip_started, &started);
    sys_sem_wait(&started);
    sys_sem_free(&started);

    if (strchr(addr, ':') == NULL) {
        ip4_addr_t ip, mask, gw;
        if (!ip4addr_aton(addr, &ip) || prefix < 1 || prefix > 32) {
            fprintf(stderr, "lwip-agent: bad IPv4 address or prefix: %s\n", spec);
            return -1;
        }
        ip4_addr_set_u32(&mask, htonl(0xFFFFFFFFu << (32 - prefix)));
        ip4_addr_set_zero(&gw);
        LOCK_TCPIP_CORE();
        added = netif_add(&tap, &ip, &mask, &gw, NULL, tap_init, tcpip_input);
    } else {
        ip6_addr_t ip6;
        if (!ip6addr_aton(addr, &ip6) || prefix != 64) {
            fprintf(stderr, "lwip-agent: bad IPv6 address or prefix (lwIP's static addresses are /64): %s\n", spec);
            return -1;
        }
        LOCK_TCPIP_CORE();
        added = netif_add_noaddr(&tap, NULL, tap_init, tcpip_input);
        if (added) {
            netif_ip6_addr_set(&tap, 0, &ip6);
            /* Static and preferred at once: no duplicate address detection. */
            netif_ip6_addr_set_state(&tap, 0, IP6_ADDR_PREFERRED);
        }
    }
    if (added) {
        netif_set_default(&tap);
        netif_set_link_up(&tap);
        netif_set_up(&tap);
#if LWIP_IPV6 && LWIP_IPV6_SEND_ROUTER_SOLICIT
        tap.rs_count = 0;          /* no router solicitations: there is no router */
#endif
    }
    UNLOCK_TCPIP_CORE();
    return added ? 0 : -1;
}

static const struct op OPS[] = {
    { "accept", op_accept, NULL }, { "bye", op_bye, NULL }, { "close", op_close, NULL },
    { "connect", op_connect, NULL }, { "error", op_error, NULL }, { "getsockopt", op_getsockopt, NULL },
    { "hello", op_hello, NULL }, { "ioctl", op_ioctl, NULL }, { "listen", op_listen, NULL }, { "poll", op_poll, NULL },
    { "recv", op_recv, NULL }, { "send", op_send, NULL }, { "setsockopt", op_setsockopt, NULL },
    { "shutdown", op_shutdown, NULL }, { "state", op_state, NULL },
};

static int stream_socket(int af)
{
    return lwip_socket(af, SOCK_STREAM, 0);
}

static const struct agent LWIP = {
    .prog = "lwip-agent", .name = "lwIP", .needs_op = "a request needs \"op\"; protocol %d knows %s",
    .ops = OPS, .nops = sizeof(OPS) / sizeof(OPS[0]), .options = OPTIONS, .noptions = NOPTIONS,
    .socket = stream_socket, .settle = settle,
};

int main(int argc, char **argv)
{
    FILE *out;
    if (argc != 3) {
        fprintf(stderr, "usage: PRECONFIGURED_TAPIF=tap0 %s MAC ADDRESS/PREFIX\n"
                        "tcpconf app-control agent (protocol %d) for lwIP %s on a TAP device\n",
                argv[0], PROTOCOL_VERSION, LWIP_VERSION_STRING);
        return 2;
    }
    if (!getenv("PRECONFIGURED_TAPIF")) {
        fprintf(stderr, "lwip-agent: set PRECONFIGURED_TAPIF to the TAP device, as for lwIP's unix port\n");
        return 2;
    }
    if (!(out = agent_begin(&LWIP)) || start_lwip(argv[1], argv[2])) return 1;
    agent_serve(out);
    return 0;
}
