/* The app-control operations both lwIP agents serve alike, over the lwIP-style socket API (lwip_socket, lwip_bind...).
 *
 * Rules of this file:
 * - Header only, included once by each agent (lwip_agent.c for lwIP 2.1.3,
 *   lwipv6_agent.c for lwIPv6 1.5a) after its stack's headers,
 *   agent_proto.h, PROTOCOL_VERSION, MAX_SOCKETS, MAX_RECV and its
 *   `struct sock` (with `int fd`, the stack's descriptor, 0 = free). It
 *   includes nothing itself: every name it uses (lwip_*, sockaddr_in,
 *   inet_pton, POLLIN, O_NONBLOCK...) is the one that agent sees, so each
 *   stack's own signatures and constants apply (lwIPv6's lwip_recv takes an
 *   int length, lwIP's a size_t).
 * - Here is what both agents do to the byte: socket ids, addresses and
 *   ports, socket options by name, listen, accept, recv, setsockopt,
 *   getsockopt, bye, the dispatch of a request and the reply line. What
 *   differs (bring-up, the TAP, settle, connect, send, shutdown, close,
 *   error, TCP states, packetdrill's extras) is the agent's, which describes
 *   itself in a `struct agent` given to agent_begin().
 * - lwIPv6's connect blocks, so its agent runs it in a thread: where that
 *   matters the agent's `connect_done` says whether a socket's connect has
 *   ended (lwIP's has none: its connect never blocks).
 */
#ifndef TCPCONF_LWIP_OPS_H
#define TCPCONF_LWIP_OPS_H

/* --- what an agent says of itself -------------------------------------------------------- */

struct op {
    const char *name;
    int (*fn)(struct ctx *, const struct jv *);
    const char *missing;     /* fn NULL: the stack has no such operation, and this is why */
};

enum okind { K_INT, K_LINGER, K_SECONDS_AS_MS };

struct option {
    const char *name;
    int level, optname;
    enum okind kind;         /* K_LINGER: [on, seconds]; K_SECONDS_AS_MS: seconds in, milliseconds to the stack */
    const char *missing;     /* not NULL: the stack has no such option, and this is why */
};

struct agent {
    const char *prog;                    /* "lwip-agent": what its messages on stderr start with */
    const char *name;                    /* the stack in messages: "lwIP" */
    const char *needs_op;                /* the message for a request without "op" (%d the protocol, %s the ops) */
    const struct op *ops;                /* in alphabetical order, as hello and the messages list them */
    size_t nops;
    const struct option *options;
    size_t noptions;
    int (*socket)(int af);               /* a new TCP socket of the stack, or -1 (errno) */
    void (*opened)(struct sock *s);      /* a new socket's own fields (NULL: none) */
    int (*connect_done)(int id, double deadline);   /* 1 when socket `id` has no connect running, after waiting
                                                       until `deadline` (NULL: none ever runs) */
    const char *connecting;              /* the EAGAIN message while a connect runs */
    void (*settle)(void);                /* before every operation but hello and bye: the frames written so far are
                                            processed */
};

static const struct agent *agent;       /* the running agent's, from agent_begin() */

/* --- sockets ------------------------------------------------------------------------- */

static struct sock socks[MAX_SOCKETS + 1];   /* protocol id -> socket */
static int next_id = 1;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Keeps a new socket under the next id and puts that id in the reply; closes it if no id is left. */
static int add_socket(struct ctx *c, int fd)
{
    if (next_id > MAX_SOCKETS) {
        lwip_close(fd);
        return fail(c, "EMFILE", "the agent has handed out %d socket ids", MAX_SOCKETS);
    }
    socks[next_id].fd = fd;
    if (agent->opened) agent->opened(&socks[next_id]);
    field(c, "id"); bprintf(&c->out, "%d", next_id++);
    return 0;
}

static int get_socket(struct ctx *c, const struct jv *req)
{
    const struct jv *id = jget(req, "id");
    if (!id || id->t != J_NUM || id->num < 1 || id->num > MAX_SOCKETS || id->num != floor(id->num)
        || !socks[(int)id->num].fd) {
        fail(c, "EBADF", "no socket with that id");
        return -1;
    }
    return (int)id->num;
}

/* 0 once socket `id` has no connect running (waiting until `deadline`), else -1 with EAGAIN. */
static int settled_socket(struct ctx *c, int id, double deadline)
{
    if (agent->connect_done && !agent->connect_done(id, deadline)) return fail(c, "EAGAIN", "%s", agent->connecting);
    return 0;
}

/* A new TCP socket, or -1 after fail(). */
static int new_socket(struct ctx *c, int af, const char *what)
{
    int fd = agent->socket(af);
    if (fd < 0) fail_errno(c, what);
    return fd;
}

/* Wait until `fd` has one of `events` (or an error), at most until `deadline`.
   1: ready, 0: the deadline passed, -1: poll failed (errno). */
static int wait_for(int fd, short events, double deadline)
{
    for (;;) {
        struct pollfd p = { fd, events, 0 };
        double left = deadline - now();
        int r = lwip_poll(&p, 1, left > 0 ? (int)ceil(left * 1000.0) : 0);
        if (r != 0) return r > 0 ? 1 : -1;
        if (left <= 0 || now() >= deadline) return 0;
    }
}

static int set_nonblocking(int fd, int on)
{
    return lwip_fcntl(fd, F_SETFL, on ? O_NONBLOCK : 0);
}

/* Close what can be closed: a socket whose connect still runs goes with the process. */
static void close_all(void)
{
    int i;
    for (i = 1; i < next_id; i++) {
        if (socks[i].fd && (!agent->connect_done || agent->connect_done(i, now()))) {
            lwip_close(socks[i].fd);
            socks[i].fd = 0;
        }
    }
}

/* --- addresses ----------------------------------------------------------------------- */

struct sa {
    union { struct sockaddr sa; struct sockaddr_in in; struct sockaddr_in6 in6; } u;
    socklen_t len;
};

static int family_of(struct ctx *c, const struct jv *req, int *af)
{
    const struct jv *f = jget(req, "family");
    if (f && f->t == J_STR && strcmp(f->str, "ipv4") == 0) *af = AF_INET;
    else if (f && f->t == J_STR && strcmp(f->str, "ipv6") == 0) *af = AF_INET6;
    else return fail(c, "EINVAL", "bad arguments: family must be \"ipv4\" or \"ipv6\"");
    return 0;
}

static int make_sa(struct ctx *c, int af, const struct jv *addr, const struct jv *port, struct sa *out)
{
    memset(out, 0, sizeof(*out));
    if (!addr || addr->t != J_STR || !port || port->t != J_NUM || port->num < 0 || port->num > 65535
        || port->num != floor(port->num))
        return fail(c, "EINVAL", "bad arguments: an address is a string and a port a number 0..65535");
    if (af == AF_INET) {
        out->u.in.sin_family = AF_INET;
        out->u.in.sin_port = htons((uint16_t)port->num);
        out->len = sizeof(out->u.in);
        if (inet_pton(AF_INET, addr->str, &out->u.in.sin_addr) != 1)
            return fail(c, "EINVAL", "bad arguments: %s is not an IPv4 address", addr->str);
    } else {
        out->u.in6.sin6_family = AF_INET6;
        out->u.in6.sin6_port = htons((uint16_t)port->num);
        out->len = sizeof(out->u.in6);
        if (inet_pton(AF_INET6, addr->str, &out->u.in6.sin6_addr) != 1)
            return fail(c, "EINVAL", "bad arguments: %s is not an IPv6 address", addr->str);
    }
    return 0;
}

static void put_endpoint(struct buf *b, const struct sockaddr *sa)
{
    char text[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &in->sin_addr, text, sizeof(text));
        port = ntohs(in->sin_port);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, text, sizeof(text));
        port = ntohs(in6->sin6_port);
    }
    bputs(b, "[");
    bstr(b, text);
    bprintf(b, ",%d]", port);
}

/* --- socket options -------------------------------------------------------------------- */

static const struct option *find_option(struct ctx *c, const struct jv *name)
{
    size_t i;
    if (!name || name->t != J_STR) {
        fail(c, "EINVAL", "bad arguments: an option name is a string");
        return NULL;
    }
    for (i = 0; i < agent->noptions; i++) {
        if (strcmp(agent->options[i].name, name->str) != 0) continue;
        if (agent->options[i].missing) {
            fail(c, "EOPNOTSUPP", "%s", agent->options[i].missing);
            return NULL;
        }
        return &agent->options[i];
    }
    fail(c, "EOPNOTSUPP", "unknown socket option %s", name->str);
    return NULL;
}

static int set_option(struct ctx *c, int fd, const struct jv *name, const struct jv *value)
{
    const struct option *o = find_option(c, name);
    int v;
    if (!o) return -1;
    if (o->kind == K_LINGER) {
        struct linger l;
        if (!value || value->t != J_ARR || value->n != 2 || value->items[0].t == J_STR || value->items[1].t != J_NUM)
            return fail(c, "EINVAL", "bad arguments: SO_LINGER takes [on, seconds]");
        l.l_onoff = (int)value->items[0].num;
        l.l_linger = (int)value->items[1].num;
        if (lwip_setsockopt(fd, o->level, o->optname, &l, sizeof(l)) < 0) return fail_errno(c, "setsockopt");
        return 0;
    }
    if (!value || (value->t != J_NUM && value->t != J_BOOL))
        return fail(c, "EINVAL", "bad arguments: %s takes a number", o->name);
    v = (int)value->num;
    if (o->kind == K_SECONDS_AS_MS) {
        if (value->num < 0 || value->num > 2147483) return fail(c, "EINVAL", "bad arguments: %s out of range", o->name);
        v *= 1000;
    }
    if (lwip_setsockopt(fd, o->level, o->optname, &v, sizeof(v)) < 0) return fail_errno(c, "setsockopt");
    return 0;
}

static int apply_options(struct ctx *c, int fd, const struct jv *options)
{
    size_t i;
    if (!options || options->t == J_NULL) return 0;
    if (options->t != J_OBJ) return fail(c, "EINVAL", "bad arguments: options is an object");
    for (i = 0; i < options->n; i++) {
        struct jv name = { J_STR, 0, options->keys[i], 0, NULL, NULL };
        if (set_option(c, fd, &name, &options->items[i])) return -1;
    }
    return 0;
}

/* --- operations ---------------------------------------------------------------------- */

static double timeout_of(const struct jv *req)
{
    const struct jv *t = jget(req, "timeout");
    return t && t->t == J_NUM && t->num > 0 ? t->num : (t && t->t == J_NUM ? 0.0 : 1.0);
}

/* hello's "ops" and "options": what the agent serves. */
static void put_ops_and_options(struct ctx *c)
{
    size_t i;
    field(c, "ops"); bputs(&c->out, "[");
    for (i = 0; i < agent->nops; i++) {
        if (!agent->ops[i].fn) continue;
        if (c->out.s[c->out.len - 1] != '[') bputs(&c->out, ",");
        bstr(&c->out, agent->ops[i].name);
    }
    bputs(&c->out, "]");
    field(c, "options"); bputs(&c->out, "[");
    for (i = 0; i < agent->noptions; i++) {
        if (agent->options[i].missing) continue;
        if (c->out.s[c->out.len - 1] != '[') bputs(&c->out, ",");
        bstr(&c->out, agent->options[i].name);
    }
    bputs(&c->out, "]");
}

static int op_listen(struct ctx *c, const struct jv *req)
{
    int af, fd, one = 1;
    const struct jv *backlog = jget(req, "backlog");
    struct sa a;
    if (family_of(c, req, &af) || make_sa(c, af, jget(req, "address"), jget(req, "port"), &a)) return -1;
    if ((fd = new_socket(c, af, "listen: socket")) < 0) return -1;
    if (lwip_setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0) { fail_errno(c, "listen: SO_REUSEADDR"); goto bad; }
    if (apply_options(c, fd, jget(req, "options"))) goto bad;
    if (lwip_bind(fd, &a.u.sa, a.len) < 0) { fail_errno(c, "listen: bind"); goto bad; }
    if (lwip_listen(fd, backlog && backlog->t == J_NUM ? (int)backlog->num : 16) < 0) { fail_errno(c, "listen"); goto bad; }
    if (set_nonblocking(fd, 1) < 0) { fail_errno(c, "listen: O_NONBLOCK"); goto bad; }
    return add_socket(c, fd);
bad:
    lwip_close(fd);
    return -1;
}

static int op_accept(struct ctx *c, const struct jv *req)
{
    int id = get_socket(c, req), fd, r;
    double timeout = timeout_of(req);
    struct sa peer;
    if (id < 0) return -1;
    /* Poll first: lwIPv6's lwip_accept blocks (netconn_accept) whatever O_NONBLOCK says. */
    r = wait_for(socks[id].fd, POLLIN, now() + timeout);
    if (r < 0) return fail_errno(c, "accept: poll");
    if (r == 0) return fail(c, "EAGAIN", "no connection to accept within %g s", timeout);
    peer.len = sizeof(peer.u);
    if ((fd = lwip_accept(socks[id].fd, &peer.u.sa, &peer.len)) < 0) return fail_errno(c, "accept");
    if (set_nonblocking(fd, 1) < 0) { fail_errno(c, "accept: O_NONBLOCK"); lwip_close(fd); return -1; }
    if (add_socket(c, fd) < 0) return -1;
    field(c, "peer"); put_endpoint(&c->out, &peer.u.sa);
    return 0;
}

/* connect's arguments: the remote endpoint into `to`, and the local one into `local` (its len 0 if the request
   binds none). -1 after fail(). */
static int connect_args(struct ctx *c, const struct jv *req, int *af, struct sa *to, struct sa *local)
{
    const struct jv *bind = jget(req, "bind");
    if (family_of(c, req, af) || make_sa(c, *af, jget(req, "address"), jget(req, "port"), to)) return -1;
    memset(local, 0, sizeof(*local));
    if (bind && bind->t != J_NULL) {
        if (bind->t != J_ARR || bind->n != 2) return fail(c, "EINVAL", "bad arguments: bind is [address, port] or null");
        if (make_sa(c, *af, &bind->items[0], &bind->items[1], local)) return -1;
    }
    return 0;
}

/* The socket a connect starts from: non-blocking, with the request's options, bound to `local` if it has a len.
   -1 after fail(). */
static int connect_socket(struct ctx *c, const struct jv *req, int af, const struct sa *local)
{
    int fd, one = 1;
    if ((fd = new_socket(c, af, "connect: socket")) < 0) return -1;
    if (apply_options(c, fd, jget(req, "options"))) goto bad;
    if (local->len) {
        if (lwip_setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0) { fail_errno(c, "connect: SO_REUSEADDR"); goto bad; }
        if (lwip_bind(fd, &local->u.sa, local->len) < 0) { fail_errno(c, "connect: bind"); goto bad; }
    }
    if (set_nonblocking(fd, 1) < 0) { fail_errno(c, "connect: O_NONBLOCK"); goto bad; }
    return fd;
bad:
    lwip_close(fd);
    return -1;
}

/* send's "data", decoded: malloc'd octets and their count in `len`, or NULL after fail(). */
static unsigned char *send_data(struct ctx *c, const struct jv *req, size_t *len)
{
    const struct jv *data = jget(req, "data");
    unsigned char *bytes = data && data->t == J_STR ? b64decode(data->str, len) : NULL;
    if (!bytes) fail(c, "EINVAL", "bad arguments: data is base64");
    return bytes;
}

/* recv on `fd` with message flags `how`: what arrives by `deadline`, at most the request's "max" octets, into the
   reply's "data". A read of none ends the stream, unless `eof_error` (if not NULL) finds the error behind it. */
static int recv_data(struct ctx *c, const struct jv *req, int fd, int how, double deadline, int (*eof_error)(int fd))
{
    const struct jv *max = jget(req, "max");
    size_t want = max && max->t == J_NUM && max->num >= 1 ? (size_t)max->num : 65536;
    unsigned char *bytes;
    ssize_t n;
    int r;
    if (want > MAX_RECV) want = MAX_RECV;
    r = wait_for(fd, POLLIN, deadline);
    if (r < 0) return fail_errno(c, "recv: poll");
    if (r == 0) return fail(c, "EAGAIN", "nothing to read within %g s", timeout_of(req));
    if (!(bytes = malloc(want))) return fail(c, "ENOMEM", "recv: out of memory");
    n = lwip_recv(fd, bytes, (int)want, how);
    if (n == 0 && eof_error && (r = eof_error(fd)) != 0) {
        errno = r;
        n = -1;
    }
    if (n < 0) {
        free(bytes);
        return fail_errno(c, "recv");
    }
    field(c, "data"); bputs(&c->out, "\"");
    b64encode(&c->out, bytes, (size_t)n);
    bputs(&c->out, "\"");
    free(bytes);
    return 0;
}

/* shutdown's "how" (SHUT_WR if none), or -1 after fail(). */
static int shutdown_how(struct ctx *c, const struct jv *req)
{
    const struct jv *h = jget(req, "how");
    if (!h) return SHUT_WR;
    if (h->t == J_STR && strcmp(h->str, "rd") == 0) return SHUT_RD;
    if (h->t == J_STR && strcmp(h->str, "wr") == 0) return SHUT_WR;
    if (h->t == J_STR && strcmp(h->str, "rdwr") == 0) return SHUT_RDWR;
    return fail(c, "EINVAL", "shutdown how must be rd, wr or rdwr");
}

static int op_setsockopt(struct ctx *c, const struct jv *req)
{
    int id = get_socket(c, req);
    if (id < 0 || settled_socket(c, id, now() + 1.0)) return -1;
    return set_option(c, socks[id].fd, jget(req, "name"), jget(req, "value"));
}

static int op_getsockopt(struct ctx *c, const struct jv *req)
{
    int id = get_socket(c, req), v;
    socklen_t len = sizeof(v);
    const struct option *o;
    if (id < 0 || !(o = find_option(c, jget(req, "name"))) || settled_socket(c, id, now() + 1.0)) return -1;
    if (o->kind == K_LINGER) {
        struct linger l;
        len = sizeof(l);
        if (lwip_getsockopt(socks[id].fd, o->level, o->optname, &l, &len) < 0) return fail_errno(c, "getsockopt");
        field(c, "value"); bprintf(&c->out, "[%d,%d]", l.l_onoff, l.l_linger);
        return 0;
    }
    if (lwip_getsockopt(socks[id].fd, o->level, o->optname, &v, &len) < 0) return fail_errno(c, "getsockopt");
    if (o->kind == K_SECONDS_AS_MS) v /= 1000;
    field(c, "value"); bprintf(&c->out, "%d", v);
    return 0;
}

static int op_bye(struct ctx *c, const struct jv *req)
{
    (void)c;
    (void)req;
    close_all();
    return 0;
}

/* --- requests and replies -------------------------------------------------------------- */

/* The operation named `name`, or NULL. */
static const struct op *find_op(const char *name)
{
    size_t i;
    for (i = 0; i < agent->nops; i++)
        if (strcmp(agent->ops[i].name, name) == 0) return &agent->ops[i];
    return NULL;
}

/* The operations the agent serves, as the messages list them: "accept, bye, ...". */
static void put_known_ops(struct buf *b)
{
    size_t i;
    for (i = 0; i < agent->nops; i++) {
        if (!agent->ops[i].fn) continue;
        if (b->len) bputs(b, ", ");
        bputs(b, agent->ops[i].name);
    }
}

/* One request line -> one reply line (without the newline). Returns 1 after "bye". */
static int handle(const char *line, size_t len, struct buf *reply)
{
    struct ctx c = { { 0 }, NULL, "" };
    struct buf known = { 0 };
    struct jv req;
    const char *err = NULL;
    const struct jv *op;
    const struct op *o;
    int bye = 0;
    if (jparse(line, len, &req, &err)) {
        fail(&c, "EINVAL", "not JSON: %s", err ? err : "?");
    } else if (req.t != J_OBJ) {
        fail(&c, "EINVAL", "a request is a JSON object");
    } else if (!(op = jget(&req, "op")) || op->t != J_STR) {
        put_known_ops(&known);
        fail(&c, "EOPNOTSUPP", agent->needs_op, PROTOCOL_VERSION, known.s);
    } else if (!(o = find_op(op->str)) || !o->fn) {
        char why[200] = "";
        if (o) snprintf(why, sizeof(why), " (%s)", o->missing);
        put_known_ops(&known);
        fail(&c, "EOPNOTSUPP", "unknown operation '%s'; protocol %d on %s knows %s%s", op->str, PROTOCOL_VERSION,
             agent->name, known.s, why);
    } else {
        if (strcmp(o->name, "hello") != 0 && strcmp(o->name, "bye") != 0) agent->settle();
        if (o->fn(&c, &req) == 0) bye = strcmp(o->name, "bye") == 0;
    }
    if (c.error) {
        bputs(reply, "{\"ok\":false,\"error\":");
        bstr(reply, c.error);
        bputs(reply, ",\"message\":");
        bstr(reply, c.message);
        bputs(reply, "}");
    } else {
        bputs(reply, "{\"ok\":true");
        if (c.out.len) {
            bputs(reply, ",");
            bput(reply, c.out.s, c.out.len);
        }
        bputs(reply, "}");
    }
    free(known.s);
    free(c.out.s);
    jfree(&req);
    return bye;
}

/* The agent `a` starts: replies go to the original stdout, and anything the stack prints to stderr. The replies'
   stream, or NULL after a message. */
static FILE *agent_begin(const struct agent *a)
{
    FILE *out;
    int fd = dup(STDOUT_FILENO);
    agent = a;
    if (fd < 0 || dup2(STDERR_FILENO, STDOUT_FILENO) < 0 || !(out = fdopen(fd, "w"))) {
        fprintf(stderr, "%s: stdout: %s\n", a->prog, strerror(errno));
        return NULL;
    }
    fcntl(fd, F_SETFD, FD_CLOEXEC);
    signal(SIGPIPE, SIG_IGN);
    return out;
}

/* Serve requests from stdin until "bye" or its end, then close the sockets. */
static void agent_serve(FILE *out)
{
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    while ((n = getline(&line, &cap, stdin)) >= 0) {
        struct buf reply = { 0 };
        int bye;
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) n--;
        if (n == 0) continue;
        bye = handle(line, (size_t)n, &reply);
        bputs(&reply, "\n");
        if (fwrite(reply.s, 1, reply.len, out) != reply.len || fflush(out) != 0) bye = 1;
        free(reply.s);
        if (bye) break;
    }
    free(line);
    close_all();
}

#endif
