/* tcpconf's slirp pump: Debian's libslirp on a TAP device, the guest side being the tester's.
 *
 * Rules of this file:
 * - It runs one libslirp instance (slirp_new) whose guest network is the
 *   suite's: IPv4 NET/PREFIX with slirp's own address ("vhost") at the given
 *   address, IPv6 likewise; DNS and DHCP answers are off, so slirp speaks only
 *   TCP (and ARP, neighbour discovery, ICMP) to the tester.
 * - Frames: every frame read from the TAP goes to slirp_input(); every frame
 *   slirp sends (the send_packet callback) is written to the TAP, whose other
 *   side the tester reads. One thread, one poll() loop over the TAP, stdin
 *   and slirp's host sockets (slirp_pollfds_fill / slirp_pollfds_poll), with
 *   slirp's own timeout and its one timer (router advertisements). When a
 *   poll reports both, the guest's frames are handed to slirp before the
 *   host sockets' events: the tester sent them first.
 * - slirp's host side is this namespace's loopback: a guest connection to
 *   slirp's address becomes connect() to 127.0.0.1 or ::1 (sotranslate_out),
 *   and a host forwarding rule turns a host connect() into a guest
 *   connection. The sockets of the tester's "application" are made by the
 *   tester itself (harness/stacks/slirp.py), not here.
 * - stdin carries this program's own control lines, stdout one JSON reply
 *   per line; nothing else reaches stdout (slirp's messages go to stderr):
 *     hello                                   -> {"ok":true,"stack":"slirp","libslirp":"4.7.0"}
 *     hostfwd HOSTADDR HOSTPORT GUESTADDR GUESTPORT -> {"ok":true}   (slirp_add_hostxfwd)
 *     unhostfwd HOSTADDR HOSTPORT             -> {"ok":true}         (slirp_remove_hostxfwd)
 *     connections                             -> {"ok":true,"info":TEXT} (slirp_connection_info)
 *     bye                                     -> {"ok":true}, and the program ends
 *   A failure is {"ok":false,"error":ERRNO_NAME,"message":TEXT}.
 *
 * Build (python3 -m harness.setup --stack slirp does it):
 *   gcc -O2 -Wall -Wextra -o build/slirp-agent harness/stacks/slirp_agent.c $(pkg-config --cflags --libs slirp)
 * Run:  build/slirp-agent tap0 198.18.0.1/24 2001:2::1/64
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <sys/ioctl.h>

#include <slirp/libslirp.h>

#define MAX_FDS 4096
#define MAX_FRAME 65536

static Slirp *slirp;
static int tap_fd = -1;
static FILE *out;

/* --- slirp's callbacks -------------------------------------------------------------------- */

static ssize_t send_packet(const void *buf, size_t len, void *opaque)
{
    (void)opaque;
    return write(tap_fd, buf, len);
}

static void guest_error(const char *msg, void *opaque)
{
    (void)opaque;
    fprintf(stderr, "slirp-agent: guest error: %s\n", msg);
}

static int64_t clock_ns(void *opaque)
{
    struct timespec ts;
    (void)opaque;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* slirp has one timer (router advertisements): its id, argument and expiry. */
struct timer {
    SlirpTimerId id;
    void *cb_opaque;
    int64_t expire_ms;          /* -1: not armed */
};
static struct timer timers[4];

static void *timer_new_opaque(SlirpTimerId id, void *cb_opaque, void *opaque)
{
    (void)opaque;
    for (size_t i = 0; i < sizeof(timers) / sizeof(timers[0]); i++) {
        if (timers[i].cb_opaque == NULL && timers[i].expire_ms == 0) {
            timers[i] = (struct timer){ id, cb_opaque, -1 };
            return &timers[i];
        }
    }
    fprintf(stderr, "slirp-agent: out of timers\n");
    abort();
}

static void timer_free(void *timer, void *opaque)
{
    (void)opaque;
    *(struct timer *)timer = (struct timer){ 0 };
}

static void timer_mod(void *timer, int64_t expire_ms, void *opaque)
{
    (void)opaque;
    ((struct timer *)timer)->expire_ms = expire_ms;
}

static void no_fd(int fd, void *opaque) { (void)fd; (void)opaque; }
static void notify(void *opaque) { (void)opaque; }

static const SlirpCb callbacks = {
    .send_packet = send_packet,
    .guest_error = guest_error,
    .clock_get_ns = clock_ns,
    .timer_free = timer_free,
    .timer_mod = timer_mod,
    .register_poll_fd = no_fd,
    .unregister_poll_fd = no_fd,
    .notify = notify,
    .timer_new_opaque = timer_new_opaque,
};

/* --- poll set ----------------------------------------------------------------------------- */

static struct pollfd fds[MAX_FDS];
static nfds_t nfds;

static int add_poll(int fd, int events, void *opaque)
{
    short e = 0;
    (void)opaque;
    if (nfds >= MAX_FDS) {
        fprintf(stderr, "slirp-agent: more than %d descriptors to poll\n", MAX_FDS);
        abort();
    }
    if (events & SLIRP_POLL_IN) e |= POLLIN;
    if (events & SLIRP_POLL_OUT) e |= POLLOUT;
    if (events & SLIRP_POLL_PRI) e |= POLLPRI;
    if (events & SLIRP_POLL_ERR) e |= POLLERR;
    if (events & SLIRP_POLL_HUP) e |= POLLHUP;
    fds[nfds] = (struct pollfd){ .fd = fd, .events = e };
    return (int)nfds++;
}

static int get_revents(int idx, void *opaque)
{
    short r = fds[idx].revents;
    int e = 0;
    (void)opaque;
    if (r & POLLIN) e |= SLIRP_POLL_IN;
    if (r & POLLOUT) e |= SLIRP_POLL_OUT;
    if (r & POLLPRI) e |= SLIRP_POLL_PRI;
    if (r & POLLERR) e |= SLIRP_POLL_ERR;
    if (r & POLLHUP) e |= SLIRP_POLL_HUP;
    return e;
}

/* --- control lines ------------------------------------------------------------------------ */

static void reply_json_string(const char *s)
{
    fputc('"', out);
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') fprintf(out, "\\%c", ch);
        else if (ch == '\n') fputs("\\n", out);
        else if (ch < 0x20) fprintf(out, "\\u%04x", ch);
        else fputc(ch, out);
    }
    fputc('"', out);
}

static void reply_error(const char *error, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    fprintf(out, "{\"ok\":false,\"error\":\"%s\",\"message\":", error);
    reply_json_string(msg);
    fputs("}\n", out);
}

/* ADDR PORT -> a sockaddr of either family; 0 on success. */
static int endpoint(const char *addr, const char *port, struct sockaddr_storage *ss, socklen_t *len)
{
    char *end;
    long p = strtol(port, &end, 10);
    if (*end || p < 0 || p > 65535) return -1;
    memset(ss, 0, sizeof(*ss));
    if (strchr(addr, ':')) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((uint16_t)p);
        *len = sizeof(*s6);
        return inet_pton(AF_INET6, addr, &s6->sin6_addr) == 1 ? 0 : -1;
    }
    struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
    s4->sin_family = AF_INET;
    s4->sin_port = htons((uint16_t)p);
    *len = sizeof(*s4);
    return inet_pton(AF_INET, addr, &s4->sin_addr) == 1 ? 0 : -1;
}

/* One control line; 1 when the program should end. */
static int handle(char *line)
{
    char *argv[6];
    int argc = 0;
    for (char *tok = strtok(line, " \t"); tok && argc < 6; tok = strtok(NULL, " \t")) argv[argc++] = tok;
    if (argc == 0) return 0;
    if (!strcmp(argv[0], "hello") && argc == 1) {
        fprintf(out, "{\"ok\":true,\"stack\":\"slirp\",\"libslirp\":\"%s\"}\n", slirp_version_string());
    } else if (!strcmp(argv[0], "connections") && argc == 1) {
        char *info = slirp_connection_info(slirp);
        fputs("{\"ok\":true,\"info\":", out);
        reply_json_string(info);
        fputs("}\n", out);
        free(info);
    } else if ((!strcmp(argv[0], "hostfwd") && argc == 5) || (!strcmp(argv[0], "unhostfwd") && argc == 3)) {
        struct sockaddr_storage host, guest;
        socklen_t hlen, glen;
        int r;
        if (endpoint(argv[1], argv[2], &host, &hlen) || (argc == 5 && endpoint(argv[3], argv[4], &guest, &glen))) {
            reply_error("EINVAL", "%s: addresses and ports, e.g. 127.0.0.1 40000 198.18.0.2 5000", argv[0]);
        } else {
            errno = 0;
            r = argc == 5 ? slirp_add_hostxfwd(slirp, (struct sockaddr *)&host, hlen, (struct sockaddr *)&guest, glen, 0)
                          : slirp_remove_hostxfwd(slirp, (struct sockaddr *)&host, hlen, 0);
            if (r < 0) reply_error(errno == EADDRINUSE ? "EADDRINUSE" : "EINVAL", "%s %s %s: %s", argv[0], argv[1],
                                   argv[2], errno ? strerror(errno) : "refused by libslirp");
            else fputs("{\"ok\":true}\n", out);
        }
    } else if (!strcmp(argv[0], "bye")) {
        fputs("{\"ok\":true}\n", out);
        return 1;
    } else {
        reply_error("EOPNOTSUPP", "unknown control line %s (hello, hostfwd, unhostfwd, connections, bye)", argv[0]);
    }
    return 0;
}

/* --- set-up -------------------------------------------------------------------------------- */

static int open_tap(const char *name)
{
    struct ifreq ifr = { 0 };
    int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
    if (fd < 0) return -1;
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
    snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
    if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
        close(fd);
        return -1;
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    return fd;
}

/* "ADDRESS/PREFIX" -> address and prefix length; 0 on success. */
static int prefixed(const char *spec, int af, void *addr, int *prefix)
{
    char text[INET6_ADDRSTRLEN + 1];
    const char *slash = strchr(spec, '/');
    if (!slash || (size_t)(slash - spec) >= sizeof(text) || sscanf(slash + 1, "%d", prefix) != 1) return -1;
    memcpy(text, spec, (size_t)(slash - spec));
    text[slash - spec] = 0;
    return inet_pton(af, text, addr) == 1 ? 0 : -1;
}

static int start_slirp(const char *spec4, const char *spec6)
{
    SlirpConfig cfg = { 0 };
    struct in_addr host4;
    struct in6_addr host6;
    int p4, p6;
    uint32_t mask;
    if (prefixed(spec4, AF_INET, &host4, &p4) || p4 < 8 || p4 > 30) {
        fprintf(stderr, "slirp-agent: the IPv4 address is ADDRESS/PREFIX, e.g. 198.18.0.1/24, not %s\n", spec4);
        return -1;
    }
    if (prefixed(spec6, AF_INET6, &host6, &p6) || p6 < 8 || p6 > 126) {
        fprintf(stderr, "slirp-agent: the IPv6 address is ADDRESS/PREFIX, e.g. 2001:2::1/64, not %s\n", spec6);
        return -1;
    }
    mask = htonl(0xFFFFFFFFu << (32 - p4));
    cfg.version = 4;
    cfg.in_enabled = true;
    cfg.vhost = host4;
    cfg.vnetmask.s_addr = mask;
    cfg.vnetwork.s_addr = host4.s_addr & mask;
    /* The name server and DHCP pool must lie in the network; both are off. */
    cfg.vnameserver.s_addr = htonl(ntohl(cfg.vnetwork.s_addr) + 3);
    cfg.vdhcp_start.s_addr = htonl(ntohl(cfg.vnetwork.s_addr) + 16);
    cfg.in6_enabled = true;
    cfg.vhost6 = host6;
    cfg.vprefix_len = (uint8_t)p6;
    for (int i = 0; i < 16; i++) {
        int bits = p6 - 8 * i;
        uint8_t m = bits >= 8 ? 0xff : bits <= 0 ? 0 : (uint8_t)(0xff << (8 - bits));
        cfg.vprefix_addr6.s6_addr[i] = host6.s6_addr[i] & m;
    }
    cfg.vnameserver6 = cfg.vprefix_addr6;
    cfg.vnameserver6.s6_addr[15] = 3;
    cfg.disable_dns = true;
    cfg.disable_dhcp = true;
    slirp = slirp_new(&cfg, &callbacks, NULL);
    if (!slirp) {
        fprintf(stderr, "slirp-agent: libslirp refused the configuration\n");
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    static unsigned char frame[MAX_FRAME];
    char *line = NULL;
    size_t cap = 0, have = 0;
    int fd;
    if (argc != 4) {
        fprintf(stderr, "usage: %s TAP IPV4/PREFIX IPV6/PREFIX\n"
                        "libslirp %s on a TAP device; control lines on stdin (see the source)\n",
                argv[0], slirp_version_string());
        return 2;
    }
    /* Replies go to the original stdout; anything else printed goes to stderr. */
    fd = dup(STDOUT_FILENO);
    if (fd < 0 || dup2(STDERR_FILENO, STDOUT_FILENO) < 0 || !(out = fdopen(fd, "w"))) {
        perror("slirp-agent: stdout");
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    tap_fd = open_tap(argv[1]);
    if (tap_fd < 0) {
        fprintf(stderr, "slirp-agent: cannot open TAP %s: %s\n", argv[1], strerror(errno));
        return 1;
    }
    if (start_slirp(argv[2], argv[3])) return 1;
    fcntl(STDIN_FILENO, F_SETFL, fcntl(STDIN_FILENO, F_GETFL) | O_NONBLOCK);
    for (;;) {
        uint32_t timeout = 1000;      /* ms; slirp lowers it to its timers' needs */
        int64_t now_ms = clock_ns(NULL) / 1000000;
        int r;
        nfds = 0;
        add_poll(tap_fd, SLIRP_POLL_IN, NULL);
        add_poll(STDIN_FILENO, SLIRP_POLL_IN, NULL);
        slirp_pollfds_fill(slirp, &timeout, add_poll, NULL);
        for (size_t i = 0; i < sizeof(timers) / sizeof(timers[0]); i++)
            if (timers[i].expire_ms > 0 && timers[i].expire_ms - now_ms < (int64_t)timeout)
                timeout = timers[i].expire_ms > now_ms ? (uint32_t)(timers[i].expire_ms - now_ms) : 0;
        r = poll(fds, nfds, (int)timeout);
        if (r < 0 && errno != EINTR) {
            perror("slirp-agent: poll");
            return 1;
        }
        /* The guest's frames first: the tester wrote them before what it did
         * next on the host sockets, so they are older than the host events
         * this poll reports. */
        if (r > 0 && fds[0].revents & POLLIN) {
            ssize_t n;
            while ((n = read(tap_fd, frame, sizeof(frame))) > 0) slirp_input(slirp, frame, (int)n);
        }
        slirp_pollfds_poll(slirp, r < 0, get_revents, NULL);
        now_ms = clock_ns(NULL) / 1000000;
        for (size_t i = 0; i < sizeof(timers) / sizeof(timers[0]); i++) {
            if (timers[i].expire_ms > 0 && timers[i].expire_ms <= now_ms) {
                timers[i].expire_ms = -1;
                slirp_handle_timer(slirp, timers[i].id, timers[i].cb_opaque);
            }
        }
        if (r > 0 && fds[1].revents & (POLLIN | POLLHUP)) {
            ssize_t n;
            if (cap - have < 4096) line = realloc(line, cap = cap * 2 + 4096);
            n = read(STDIN_FILENO, line + have, cap - have - 1);
            if (n == 0) break;                  /* the tester is gone */
            if (n > 0) have += (size_t)n;
            for (char *nl; (nl = memchr(line, '\n', have)) != NULL;) {
                size_t used = (size_t)(nl - line) + 1;
                int bye;
                *nl = 0;
                bye = handle(line);
                fflush(out);
                memmove(line, line + used, have - used);
                have -= used;
                if (bye) goto done;
            }
        }
    }
done:
    slirp_cleanup(slirp);
    free(line);
    return 0;
}
