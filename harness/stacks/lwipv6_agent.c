/* tcpconf app-control agent for lwIPv6: Debian's liblwipv6 (the VirtualSquare fork of lwIP) on a TAP device.
 *
 * Rules of this file:
 * - It speaks the app-control protocol of harness/agent.py (PROTOCOL there,
 *   version 1) with the plumbing of agent_proto.h: one JSON request per line
 *   on stdin, one JSON reply per line on stdout, in order. Nothing else
 *   reaches stdout: lwIPv6's own messages (it printf()s some) go to stderr.
 * - It uses lwIPv6's public API only (/usr/include/lwipv6.h): one stack
 *   (lwip_add_stack), one TAP interface through lwIPv6's own driver
 *   (lwip_add_tapif, which fixes the MAC at 02:02:03:04:05:06), the one
 *   address given on the command line (lwip_add_addr), and the lwip_*
 *   socket calls on that stack (lwip_msocket). No IPv6 autoconfiguration
 *   (interface flags 0): the link stays quiet but for what the cases draw.
 * - lwIPv6's API cannot report a connection's TCP state, so there is no
 *   `state` operation: the cases that need it are skipped naming it.
 * - lwip_connect blocks until the handshake ends (netconn_connect waits on
 *   the connection's mailbox); the protocol's connect is non-blocking, so
 *   each connect runs in a thread of its own and the request answers at
 *   once. While it runs, no other call may touch that connection (every
 *   netconn call waits on the same mailbox and could take the connect's
 *   answer): operations on it wait for the handshake to end first, within
 *   their timeout; closing it then is refused (EOPNOTSUPP, with the reason).
 * - Every socket is non-blocking for recv (lwip_fcntl O_NONBLOCK); accept is
 *   made so with lwip_poll first. lwip_send blocks until the send buffer
 *   takes all it is given, so send hands it pieces that fit: POLLOUT says
 *   more than TCP_SNDLOWAT is free, a new connection has TCP_SND_BUF less
 *   its SYN's 2 octets, every piece takes its length rounded up to even
 *   (tcp_enqueue), and only ACKs free space again; the agent keeps that
 *   lower bound per socket and never gives more.
 * - Socket options map to lwIPv6's where it has them; the others answer
 *   EOPNOTSUPP naming what it has instead (lwip_setsockopt in its
 *   src/api/sockets.c). Errors are errno names.
 * - The operations served alike on lwIP (sockets and their ids, addresses,
 *   options by name, listen, accept, recv, the dispatch) are lwip_ops.h,
 *   shared with lwIP's agent; this file holds what is lwIPv6's own: its
 *   options, connect, send, shutdown, close, error, the bring-up and settle.
 *
 * Build (python3 -m harness.setup --stack lwipv6 does it):
 *   gcc -O2 -Wall -Wextra -o build/lwipv6-agent harness/stacks/lwipv6_agent.c -llwipv6 -lpthread -lm
 * Run:  build/lwipv6-agent tap0 198.18.0.1/24   (or 2001:2::1/64)
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <lwipv6.h>

#include "agent_proto.h"

#define PROTOCOL_VERSION 1
#define MAX_SOCKETS 1024
#define MAX_RECV (1 << 20)
#define SNDLOWAT 16384            /* TCP_SNDLOWAT = TCP_SND_BUF / 2 (opt.h, TCP_SND_BUF 32768): POLLOUT means more free */
#define SNDBUF_NEW 32766          /* free in a new connection's send buffer: TCP_SND_BUF less the 2 its SYN took (an
                                     active open gets 1 back with the SYN-ACK, a passive one 2 with the third ACK) */
#define LWIPV6_TCP_KEEPALIVE 0x02 /* lwIPv6's own option (lwip/tcp.h): keep-alive idle time in ms */

static struct stack *stack;
static int tap_fd = -1;           /* lwIPv6's descriptor of the TAP: polled (never read) by settle() */
static pid_t netif_tid;           /* lwIPv6's thread that reads the TAP */
static int sync_fd = -1;          /* a UDP socket whose option calls pass through the tcpip thread */

/* --- sockets ------------------------------------------------------------------------- */

struct sock {
    int fd;                       /* lwIPv6 descriptor, 0 = free */
    int connecting;               /* its connect thread runs */
    int connect_errno;            /* how the connect ended: 0 connected, else errno */
    pthread_t thread;
    long sndbuf;                  /* the least free send buffer there can be (see op_send) */
};

#include "lwip_ops.h"

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t connected = PTHREAD_COND_INITIALIZER;

/* Wait until socket `id` has no connect running, at most until `deadline`: 1 done, 0 still connecting. */
static int connect_done(int id, double deadline)
{
    int done;
    pthread_mutex_lock(&lock);
    while (socks[id].connecting) {
        struct timespec ts;
        double left = deadline - now();
        if (left <= 0) break;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += (time_t)left;
        ts.tv_nsec += (long)((left - floor(left)) * 1e9);
        if (ts.tv_nsec >= 1000000000L) { ts.tv_sec++; ts.tv_nsec -= 1000000000L; }
        pthread_cond_timedwait(&connected, &lock, &ts);
    }
    done = !socks[id].connecting;
    pthread_mutex_unlock(&lock);
    return done;
}

/* Socket `id` ready to carry data: its handshake has ended (within `deadline`), and its connect did not fail;
   -1 after fail() if not. */
static int usable(struct ctx *c, int id, double deadline, const char *what)
{
    if (settled_socket(c, id, deadline)) return -1;
    if (socks[id].connect_errno) {
        errno = socks[id].connect_errno;
        return fail_errno(c, what);
    }
    return 0;
}

/* The error lwIPv6 holds for a connection (conn->err), without side effects: a send of zero octets
   returns it (netconn_write checks conn->err before anything else) and sends nothing. 0 if none. */
static int pending_error(int fd)
{
    char none = 0;
    return lwip_send(fd, &none, 0, 0) < 0 ? errno : 0;
}

/* --- socket options -------------------------------------------------------------------- */

static const struct option OPTIONS[] = {
    { "SO_REUSEADDR", SOL_SOCKET, SO_REUSEADDR, K_INT, NULL },
    { "SO_KEEPALIVE", SOL_SOCKET, SO_KEEPALIVE, K_INT, NULL },
    { "TCP_KEEPIDLE", IPPROTO_TCP, LWIPV6_TCP_KEEPALIVE, K_SECONDS_AS_MS, NULL },
    { "TCP_KEEPINTVL", 0, 0, K_INT, "lwIPv6 has no TCP_KEEPINTVL; probes are TCP_KEEPINTVL = 75000 ms apart, "
                                    "compiled in (lwip/tcp.h)" },
    { "TCP_KEEPCNT", 0, 0, K_INT, "lwIPv6 has no TCP_KEEPCNT; it gives up after TCP_KEEPCNT = 9 probes, "
                                  "compiled in (lwip/tcp.h)" },
    { "TCP_NODELAY", 0, 0, K_INT, "lwIPv6's TCP_NODELAY does not reach Nagle: lwip_setsockopt sets bit 0x40 of "
                                  "the PCB's so_options, not TF_NODELAY in its flags (sockets.c, sync_pcb_access)" },
    { "SO_LINGER", 0, 0, K_INT, "lwIPv6 has no SO_LINGER (lwip_setsockopt answers ENOPROTOOPT): close() always "
                                "closes gracefully" },
    { "SO_RCVBUF", 0, 0, K_INT, "lwIPv6 accepts SO_RCVBUF and ignores it (sockets.c: 'FAKE SO_RCVBUF'); "
                                "the receive window is TCP_WND = 32768, compiled in" },
    { "SO_SNDBUF", 0, 0, K_INT, "lwIPv6 accepts SO_SNDBUF and ignores it (sockets.c: 'FAKE SO_SNDBUF'); "
                                "the send buffer is TCP_SND_BUF = 32768, compiled in" },
    { "TCP_MAXSEG", 0, 0, K_INT, "lwIPv6 has no TCP_MAXSEG; the MSS is TCP_MSS = 1488, compiled in" },
    { "TCP_SYNCNT", 0, 0, K_INT, "lwIPv6 has no TCP_SYNCNT; SYN retransmissions are TCP_SYNMAXRTX = 4, compiled in" },
    { "TCP_LINGER2", 0, 0, K_INT, "lwIPv6 has no TCP_LINGER2; FIN-WAIT-2 ends after TCP_FIN_WAIT_TIMEOUT = 20 s, "
                                  "compiled in" },
    { "TCP_DEFER_ACCEPT", 0, 0, K_INT, "lwIPv6 has no TCP_DEFER_ACCEPT" },
    { "TCP_WINDOW_CLAMP", 0, 0, K_INT, "lwIPv6 has no TCP_WINDOW_CLAMP; the window is TCP_WND = 32768, compiled in" },
    { "TCP_USER_TIMEOUT", 0, 0, K_INT, "lwIPv6 has no TCP_USER_TIMEOUT; a connection is dropped after "
                                       "TCP_MAXRTX = 12 retransmissions, compiled in" },
    { "TCP_QUICKACK", 0, 0, K_INT, "lwIPv6 has no TCP_QUICKACK" },
    { "TCP_FASTOPEN", 0, 0, K_INT, "lwIPv6 has no TCP Fast Open" },
    { "TCP_CONGESTION", 0, 0, K_INT, "lwIPv6 has one built-in congestion control; it cannot be chosen" },
    { "TCP_INFO", 0, 0, K_INT, "lwIPv6 has no TCP_INFO: its RTO and RTT cannot be read" },
};
#define NOPTIONS (sizeof(OPTIONS) / sizeof(OPTIONS[0]))

/* --- operations ---------------------------------------------------------------------- */

static int op_hello(struct ctx *c, const struct jv *req)
{
    (void)req;
    field(c, "version"); bprintf(&c->out, "%d", PROTOCOL_VERSION);
    field(c, "stack"); bstr(&c->out, "lwipv6");
    put_ops_and_options(c);
    return 0;
}

struct connect_job {
    int id;
    struct sa to;
};

/* A connect's own thread: lwip_connect returns when the handshake has ended, one way or the other. */
static void *connector(void *arg)
{
    struct connect_job *job = arg;
    int fd, r, e;
    pthread_mutex_lock(&lock);
    fd = socks[job->id].fd;
    pthread_mutex_unlock(&lock);
    r = lwip_connect(fd, &job->to.u.sa, job->to.len);
    e = r < 0 ? errno : 0;
    pthread_mutex_lock(&lock);
    socks[job->id].connect_errno = e;
    socks[job->id].connecting = 0;
    pthread_cond_broadcast(&connected);
    pthread_mutex_unlock(&lock);
    free(job);
    return NULL;
}

static int op_connect(struct ctx *c, const struct jv *req)
{
    int af, fd, id;
    struct sa local;
    struct connect_job *job;
    pthread_attr_t attr;
    if (!(job = calloc(1, sizeof(*job)))) return fail(c, "ENOMEM", "connect: out of memory");
    if (connect_args(c, req, &af, &job->to, &local)) goto bad_job;
    if (next_id > MAX_SOCKETS) { fail(c, "EMFILE", "the agent has handed out %d socket ids", MAX_SOCKETS); goto bad_job; }
    if ((fd = connect_socket(c, req, af, &local)) < 0) goto bad_job;
    id = job->id = next_id;
    pthread_mutex_lock(&lock);
    socks[id].fd = fd;
    socks[id].sndbuf = SNDBUF_NEW;
    socks[id].connecting = 1;
    socks[id].connect_errno = 0;
    pthread_mutex_unlock(&lock);
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&socks[id].thread, &attr, connector, job) != 0) {
        pthread_attr_destroy(&attr);
        socks[id].fd = 0;
        socks[id].connecting = 0;
        fail(c, "EAGAIN", "connect: cannot start a thread for the blocking lwip_connect");
        goto bad;
    }
    pthread_attr_destroy(&attr);
    next_id++;
    field(c, "id"); bprintf(&c->out, "%d", id);
    return 0;
bad:
    lwip_close(fd);
bad_job:
    free(job);
    return -1;
}

/* The agent passes no message flag: lwip_send ignores its flags (sockets.c, and tcp_enqueue never sets
   URG), so a request with any is refused rather than served without it. */
static int no_flags(struct ctx *c, const struct jv *req, const char *op)
{
    const struct jv *flags = jget(req, "flags");
    if (!flags || flags->t == J_NULL || (flags->t == J_ARR && flags->n == 0)) return 0;
    return fail(c, "EOPNOTSUPP", "%s takes no flag on lwIPv6: lwip_send ignores its flags and TCP sends no urgent "
                "data (no URG in tcp_out.c)", op);
}

static int op_send(struct ctx *c, const struct jv *req)
{
    int id = get_socket(c, req), fd;
    double deadline = now() + timeout_of(req);
    unsigned char *bytes;
    size_t len, sent = 0;
    if (id < 0 || no_flags(c, req, "send") || !(bytes = send_data(c, req, &len))) return -1;
    if (usable(c, id, deadline, "send")) { free(bytes); return -1; }
    fd = socks[id].fd;
    while (sent < len) {
        long piece = len - sent > 0xFFFF ? 0xFFFF : (long)(len - sent);
        ssize_t n;
        if (wait_for(fd, POLLOUT, now()) > 0 && socks[id].sndbuf <= SNDLOWAT)
            socks[id].sndbuf = SNDLOWAT + 1;
        if (piece > socks[id].sndbuf - 1) piece = socks[id].sndbuf - 1;
        if (piece <= 0) {                     /* full as far as we know: wait for ACKs to free some */
            if (wait_for(fd, POLLOUT, deadline) <= 0) break;
            continue;
        }
        n = lwip_send(fd, bytes + sent, (int)piece, 0);
        if (n < 0) {
            free(bytes);
            return fail_errno(c, "send");
        }
        socks[id].sndbuf -= (n + 1) & ~1L;
        sent += (size_t)n;
    }
    free(bytes);
    field(c, "sent"); bprintf(&c->out, "%zu", sent);
    return 0;
}
static int op_recv(struct ctx *c, const struct jv *req)
{
    int id = get_socket(c, req);
    double deadline = now() + timeout_of(req);
    if (id < 0 || usable(c, id, deadline, "recv")) return -1;
    /* lwIPv6 ends a reset connection's stream like a closed one (netconn_recv gives NULL, lwip_recv 0):
       the connection's own error tells them apart. */
    return recv_data(c, req, socks[id].fd, 0, deadline, pending_error);
}

static int op_shutdown(struct ctx *c, const struct jv *req)
{
    int id = get_socket(c, req);
    if (id < 0 || shutdown_how(c, req) < 0) return -1;
    return fail(c, "EOPNOTSUPP", "lwIPv6's lwip_shutdown only narrows the descriptor's access mode: it sends no "
                                 "FIN and leaves the connection as it is (sockets.c), so there is no half-close");
}

static int op_close(struct ctx *c, const struct jv *req)
{
    int id = get_socket(c, req), fd;
    if (id < 0) return -1;
    if (!connect_done(id, now()))
        return fail(c, "EOPNOTSUPP", "lwIPv6 cannot close a connection whose connect is in progress: lwip_connect "
                                     "blocks on the connection's mailbox, and lwip_close would wait on the same one");
    fd = socks[id].fd;
    socks[id].fd = 0;
    if (lwip_close(fd) < 0) return fail_errno(c, "close");
    return 0;
}

static int op_error(struct ctx *c, const struct jv *req)
{
    int id = get_socket(c, req), e = 0;
    if (id < 0) return -1;
    field(c, "error");
    if (!connect_done(id, now())) {          /* still connecting: no error yet, as for SO_ERROR */
        bputs(&c->out, "null");
        return 0;
    }
    e = socks[id].connect_errno ? socks[id].connect_errno : pending_error(socks[id].fd);
    if (e) bstr(&c->out, errname(e));
    else bputs(&c->out, "null");
    return 0;
}

/* --- keeping the tester's order ---------------------------------------------------------- */

/* Is lwIPv6's TAP reader blocked in poll(2) (syscall 7), i.e. between two frames? */
static int reader_idle(void)
{
    char path[64], text[64];
    FILE *f;
    int nr = -1;
    snprintf(path, sizeof(path), "/proc/self/task/%d/syscall", (int)netif_tid);
    if (!netif_tid || !(f = fopen(path, "r"))) return 1;
    if (!fgets(text, sizeof(text), f)) text[0] = 0;
    fclose(f);
    if (sscanf(text, "%d", &nr) != 1) return 0;    /* "running" */
    return nr == 7;
}

/* Let lwIPv6 process every frame the tester has written before this request, as a kernel does within
   the write: wait (at most 200 ms) until the TAP's queue is empty and lwIPv6's reader is back in poll,
   so that it has handed every frame to the tcpip thread (tcpip_input posts it to the stack's queue),
   then make a call that passes through that queue behind them (an option read on a UDP socket). */
static void settle(void)
{
    double deadline = now() + 0.2;
    int v;
    socklen_t len = sizeof(v);
    for (;;) {
        struct pollfd w = { tap_fd, POLLIN, 0 };
        int queued = poll(&w, 1, 0) > 0 && (w.revents & POLLIN);
        if ((!queued && reader_idle()) || now() > deadline) break;
        usleep(50);
    }
    lwip_getsockopt(sync_fd, SOL_SOCKET, SO_BROADCAST, &v, &len);
}

/* --- start-up -------------------------------------------------------------------------- */

/* The descriptor lwIPv6 opened on /dev/net/tun, found among this process's. */
static int find_tap_fd(void)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    int fd = -1;
    if (!d) return -1;
    while ((e = readdir(d))) {
        char path[300], target[64];
        ssize_t n;
        snprintf(path, sizeof(path), "/proc/self/fd/%s", e->d_name);
        if ((n = readlink(path, target, sizeof(target) - 1)) <= 0) continue;
        target[n] = 0;
        if (strcmp(target, "/dev/net/tun") == 0) fd = atoi(e->d_name);
    }
    closedir(d);
    return fd;
}

/* The thread lwIPv6 reads the TAP with: the one that waits in poll(2), not on a futex. */
static pid_t find_reader(pid_t self)
{
    double deadline = now() + 2.0;
    while (now() < deadline) {
        DIR *d = opendir("/proc/self/task");
        struct dirent *e;
        pid_t found = 0;
        if (!d) return 0;
        while ((e = readdir(d))) {
            pid_t tid = (pid_t)atoi(e->d_name);
            char path[64], text[64];
            FILE *f;
            if (tid <= 0 || tid == self) continue;
            snprintf(path, sizeof(path), "/proc/self/task/%d/syscall", (int)tid);
            if (!(f = fopen(path, "r"))) continue;
            if (fgets(text, sizeof(text), f) && strncmp(text, "7 ", 2) == 0) found = tid;
            fclose(f);
        }
        closedir(d);
        if (found) return found;
        usleep(1000);
    }
    return 0;
}

/* Bring lwIPv6 up on TAP `ifname` with `spec` = ADDRESS/PREFIX. Returns 0, or -1 with a message on stderr. */
static int start_lwipv6(const char *ifname, const char *spec)
{
    char addr[INET6_ADDRSTRLEN + 1];
    const char *slash = strchr(spec, '/');
    int prefix, i;
    struct ip_addr ip, mask;
    struct netif *nif;
    if (!slash || (size_t)(slash - spec) >= sizeof(addr) || sscanf(slash + 1, "%d", &prefix) != 1) {
        fprintf(stderr, "lwipv6-agent: the address is ADDRESS/PREFIX, e.g. 198.18.0.1/24 or 2001:2::1/64, not %s\n", spec);
        return -1;
    }
    memcpy(addr, spec, (size_t)(slash - spec));
    addr[slash - spec] = 0;
    memset(&ip, 0, sizeof(ip));
    memset(&mask, 0, sizeof(mask));
    if (strchr(addr, ':') == NULL) {
        struct in_addr in;
        if (inet_pton(AF_INET, addr, &in) != 1 || prefix < 1 || prefix > 32) {
            fprintf(stderr, "lwipv6-agent: bad IPv4 address or prefix: %s\n", spec);
            return -1;
        }
        /* lwIPv6 keeps IPv4 addresses as IPv4-mapped IPv6 ones (IP64_ADDR, IP64_MASKADDR of lwipv6.h). */
        ip.addr[2] = IP64_PREFIX;
        ip.addr[3] = in.s_addr;
        mask.addr[0] = mask.addr[1] = mask.addr[2] = 0xffffffffu;
        mask.addr[3] = htonl(0xffffffffu << (32 - prefix));
    } else {
        if (inet_pton(AF_INET6, addr, ip.addr) != 1 || prefix < 1 || prefix > 128) {
            fprintf(stderr, "lwipv6-agent: bad IPv6 address or prefix: %s\n", spec);
            return -1;
        }
        for (i = 0; i < 4; i++) {
            int bits = prefix - 32 * i;
            mask.addr[i] = bits >= 32 ? 0xffffffffu : bits <= 0 ? 0 : htonl(0xffffffffu << (32 - bits));
        }
    }
    if (!(stack = lwip_add_stack(0))) {
        fprintf(stderr, "lwipv6-agent: lwip_add_stack failed: %s\n", strerror(errno));
        return -1;
    }
    if (!(nif = lwip_add_tapif(stack, (void *)ifname, 0))) {        /* flags 0: no IPv6 autoconfiguration */
        fprintf(stderr, "lwipv6-agent: lwip_add_tapif(%s) failed: %s\n", ifname, strerror(errno));
        return -1;
    }
    if (lwip_add_addr(nif, &ip, &mask) < 0) {
        fprintf(stderr, "lwipv6-agent: lwip_add_addr(%s) failed: %s\n", spec, strerror(errno));
        return -1;
    }
    if (lwip_ifup(nif) < 0) {
        fprintf(stderr, "lwipv6-agent: lwip_ifup failed: %s\n", strerror(errno));
        return -1;
    }
    if ((tap_fd = find_tap_fd()) < 0) {
        fprintf(stderr, "lwipv6-agent: lwIPv6 opened no /dev/net/tun\n");
        return -1;
    }
    if (!(netif_tid = find_reader(gettid())))       /* settle() then waits for the queue alone */
        fprintf(stderr, "lwipv6-agent: found no lwIPv6 thread polling the TAP (no /proc/self/task/*/syscall?)\n");
    if ((sync_fd = lwip_msocket(stack, AF_INET, SOCK_DGRAM, 0)) < 0) {
        fprintf(stderr, "lwipv6-agent: cannot open a UDP socket on lwIPv6: %s\n", strerror(errno));
        return -1;
    }
    return 0;
}

static const struct op OPS[] = {
    { "accept", op_accept, NULL }, { "bye", op_bye, NULL }, { "close", op_close, NULL },
    { "connect", op_connect, NULL }, { "error", op_error, NULL }, { "getsockopt", op_getsockopt, NULL },
    { "hello", op_hello, NULL }, { "listen", op_listen, NULL }, { "recv", op_recv, NULL }, { "send", op_send, NULL },
    { "setsockopt", op_setsockopt, NULL }, { "shutdown", op_shutdown, NULL },
    { "state", NULL, "lwIPv6's API reports no TCP state" },
};

static int stream_socket(int af)
{
    return lwip_msocket(stack, af, SOCK_STREAM, 0);
}

static void sock_opened(struct sock *s)
{
    s->sndbuf = SNDBUF_NEW;
}

static const struct agent LWIPV6 = {
    .prog = "lwipv6-agent", .name = "lwIPv6", .needs_op = "a request needs \"op\"; protocol %d on lwIPv6 knows %s",
    .ops = OPS, .nops = sizeof(OPS) / sizeof(OPS[0]), .options = OPTIONS, .noptions = NOPTIONS,
    .socket = stream_socket, .opened = sock_opened, .connect_done = connect_done,
    .connecting = "the connect is still in progress (lwIPv6's connect blocks until the handshake ends; nothing else "
                  "may use the connection before)",
    .settle = settle,
};

int main(int argc, char **argv)
{
    FILE *out;
    if (argc != 3) {
        fprintf(stderr, "usage: %s TAP ADDRESS/PREFIX\n"
                        "tcpconf app-control agent (protocol %d) for lwIPv6 on a TAP device\n",
                argv[0], PROTOCOL_VERSION);
        return 2;
    }
    if (!(out = agent_begin(&LWIPV6)) || start_lwipv6(argv[1], argv[2])) return 1;
    agent_serve(out);
    _exit(0);      /* a connect still blocked in lwIPv6 ends with the process */
}
