/* The app-control protocol's plumbing for the C agents (harness/agent.py, PROTOCOL there).
 *
 * Rules of this file:
 * - Header only, standard C and glibc: included once by each agent
 *   (lwip_agent.c, lwipv6_agent.c), which brings the stack and the operations.
 * - It reads a request (a JSON object on one line), builds a reply's fields
 *   and errors as errno names, and codes data in base64. Nothing here knows
 *   a stack or writes to stdout.
 */
#ifndef TCPCONF_AGENT_PROTO_H
#define TCPCONF_AGENT_PROTO_H

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* --- JSON values: a small reader for the protocol's requests ------------------------- */

enum jtype { J_NULL, J_BOOL, J_NUM, J_STR, J_ARR, J_OBJ };

struct jv {
    enum jtype t;
    double num;          /* J_NUM; J_BOOL as 0 or 1 */
    char *str;           /* J_STR, NUL-terminated (\u0000 is refused) */
    size_t n;            /* J_ARR, J_OBJ: number of items */
    struct jv *items;    /* J_ARR, J_OBJ: the values */
    char **keys;         /* J_OBJ: the keys */
};

struct jparser {
    const char *p, *end;
    const char *err;
};

static void jfree(struct jv *v)
{
    size_t i;
    free(v->str);
    for (i = 0; i < v->n; i++) {
        jfree(&v->items[i]);
        if (v->keys)
            free(v->keys[i]);
    }
    free(v->items);
    free(v->keys);
    memset(v, 0, sizeof(*v));
}

static void jspace(struct jparser *jp)
{
    while (jp->p < jp->end && (*jp->p == ' ' || *jp->p == '\t' || *jp->p == '\r' || *jp->p == '\n'))
        jp->p++;
}

static int jfail(struct jparser *jp, const char *why)
{
    if (!jp->err)
        jp->err = why;
    return -1;
}

static int hex4(const char *s, unsigned *out)
{
    unsigned v = 0;
    int i;
    for (i = 0; i < 4; i++) {
        char c = s[i];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f') v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') v |= (unsigned)(c - 'A' + 10);
        else return -1;
    }
    *out = v;
    return 0;
}

static size_t utf8(unsigned cp, char *out)
{
    if (cp < 0x80) { out[0] = (char)cp; return 1; }
    if (cp < 0x800) { out[0] = (char)(0xC0 | (cp >> 6)); out[1] = (char)(0x80 | (cp & 0x3F)); return 2; }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12)); out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F)); return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18)); out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F)); out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* A string literal at jp->p (on the opening quote) -> malloc'd UTF-8. */
static char *jstring(struct jparser *jp)
{
    const char *s = jp->p + 1;
    char *out, *o;
    /* The decoded text is never longer than the literal. */
    out = o = malloc((size_t)(jp->end - s) + 1);
    if (!out) { jfail(jp, "out of memory"); return NULL; }
    while (s < jp->end && *s != '"') {
        unsigned char c = (unsigned char)*s;
        if (c < 0x20) { jfail(jp, "control character in a string"); goto bad; }
        if (c != '\\') { *o++ = *s++; continue; }
        if (++s >= jp->end) break;
        switch (*s) {
        case '"': *o++ = '"'; break;
        case '\\': *o++ = '\\'; break;
        case '/': *o++ = '/'; break;
        case 'b': *o++ = '\b'; break;
        case 'f': *o++ = '\f'; break;
        case 'n': *o++ = '\n'; break;
        case 'r': *o++ = '\r'; break;
        case 't': *o++ = '\t'; break;
        case 'u': {
            unsigned cp, lo;
            if (jp->end - s < 5 || hex4(s + 1, &cp)) { jfail(jp, "bad \\u escape"); goto bad; }
            s += 4;
            if (cp >= 0xD800 && cp < 0xDC00) {       /* a surrogate pair */
                if (jp->end - s < 7 || s[1] != '\\' || s[2] != 'u' || hex4(s + 3, &lo) || lo < 0xDC00 || lo > 0xDFFF) {
                    jfail(jp, "unpaired surrogate in a \\u escape");
                    goto bad;
                }
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                s += 6;
            } else if (cp >= 0xDC00 && cp < 0xE000) {
                jfail(jp, "unpaired surrogate in a \\u escape");
                goto bad;
            }
            if (cp == 0) { jfail(jp, "\\u0000 in a string"); goto bad; }
            o += utf8(cp, o);
            break;
        }
        default:
            jfail(jp, "bad escape in a string");
            goto bad;
        }
        s++;
    }
    if (s >= jp->end) { jfail(jp, "unterminated string"); goto bad; }
    *o = 0;
    jp->p = s + 1;
    return out;
bad:
    free(out);
    return NULL;
}

static int jvalue(struct jparser *jp, struct jv *v, int depth);

static int jcontainer(struct jparser *jp, struct jv *v, int depth, char close)
{
    size_t cap = 0;
    v->t = close == '}' ? J_OBJ : J_ARR;
    jp->p++;
    jspace(jp);
    if (jp->p < jp->end && *jp->p == close) { jp->p++; return 0; }
    for (;;) {
        char *key = NULL;
        jspace(jp);
        if (close == '}') {
            if (jp->p >= jp->end || *jp->p != '"') return jfail(jp, "object keys are strings");
            if (!(key = jstring(jp))) return -1;
            jspace(jp);
            if (jp->p >= jp->end || *jp->p != ':') { free(key); return jfail(jp, "':' expected after a key"); }
            jp->p++;
        }
        if (v->n == cap) {
            size_t ncap = cap ? 2 * cap : 4;
            struct jv *items = realloc(v->items, ncap * sizeof(*items));
            char **keys = close == '}' ? realloc(v->keys, ncap * sizeof(*keys)) : NULL;
            if (items) v->items = items;
            if (keys) v->keys = keys;
            if (!items || (close == '}' && !keys)) { free(key); return jfail(jp, "out of memory"); }
            cap = ncap;
        }
        memset(&v->items[v->n], 0, sizeof(v->items[0]));
        if (v->keys) v->keys[v->n] = key;
        v->n++;
        if (jvalue(jp, &v->items[v->n - 1], depth + 1)) return -1;
        jspace(jp);
        if (jp->p < jp->end && *jp->p == ',') { jp->p++; continue; }
        if (jp->p < jp->end && *jp->p == close) { jp->p++; return 0; }
        return jfail(jp, close == '}' ? "',' or '}' expected" : "',' or ']' expected");
    }
}

static int jnumber(struct jparser *jp, struct jv *v)
{
    const char *s = jp->p;
    char tmp[64];
    size_t len;
    if (s < jp->end && *s == '-') s++;
    if (s >= jp->end || *s < '0' || *s > '9') return jfail(jp, "bad number");
    if (*s == '0') s++;
    else while (s < jp->end && *s >= '0' && *s <= '9') s++;
    if (s < jp->end && *s == '.') {
        s++;
        if (s >= jp->end || *s < '0' || *s > '9') return jfail(jp, "bad number");
        while (s < jp->end && *s >= '0' && *s <= '9') s++;
    }
    if (s < jp->end && (*s == 'e' || *s == 'E')) {
        s++;
        if (s < jp->end && (*s == '+' || *s == '-')) s++;
        if (s >= jp->end || *s < '0' || *s > '9') return jfail(jp, "bad number");
        while (s < jp->end && *s >= '0' && *s <= '9') s++;
    }
    len = (size_t)(s - jp->p);
    if (len >= sizeof(tmp)) return jfail(jp, "number too long");
    memcpy(tmp, jp->p, len);
    tmp[len] = 0;
    v->t = J_NUM;
    v->num = strtod(tmp, NULL);
    jp->p = s;
    return 0;
}

static int jword(struct jparser *jp, const char *word)
{
    size_t n = strlen(word);
    if ((size_t)(jp->end - jp->p) < n || memcmp(jp->p, word, n) != 0) return 0;
    jp->p += n;
    return 1;
}

static int jvalue(struct jparser *jp, struct jv *v, int depth)
{
    if (depth > 8) return jfail(jp, "nested too deeply");
    jspace(jp);
    if (jp->p >= jp->end) return jfail(jp, "value expected");
    switch (*jp->p) {
    case '{': return jcontainer(jp, v, depth, '}');
    case '[': return jcontainer(jp, v, depth, ']');
    case '"':
        v->t = J_STR;
        return (v->str = jstring(jp)) ? 0 : -1;
    case 't': if (jword(jp, "true")) { v->t = J_BOOL; v->num = 1; return 0; } break;
    case 'f': if (jword(jp, "false")) { v->t = J_BOOL; v->num = 0; return 0; } break;
    case 'n': if (jword(jp, "null")) { v->t = J_NULL; return 0; } break;
    default: return jnumber(jp, v);
    }
    return jfail(jp, "unknown literal");
}

static int jparse(const char *text, size_t len, struct jv *v, const char **err)
{
    struct jparser jp = { text, text + len, NULL };
    memset(v, 0, sizeof(*v));
    if (jvalue(&jp, v, 0) == 0) {
        jspace(&jp);
        if (jp.p == jp.end) return 0;
        jfail(&jp, "extra data after the value");
    }
    *err = jp.err;
    jfree(v);
    return -1;
}

static const struct jv *jget(const struct jv *obj, const char *key)
{
    size_t i;
    if (!obj || obj->t != J_OBJ) return NULL;
    for (i = 0; i < obj->n; i++)
        if (strcmp(obj->keys[i], key) == 0) return &obj->items[i];
    return NULL;
}

/* --- replies ----------------------------------------------------------------------- */

struct buf {
    char *s;
    size_t len, cap;
};

static void bput(struct buf *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (b->len + n + 1 > cap) cap *= 2;
        char *p = realloc(b->s, cap);
        if (!p) { fprintf(stderr, "agent: out of memory\n"); exit(1); }
        b->s = p;
        b->cap = cap;
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = 0;
}

static void bputs(struct buf *b, const char *s) { bput(b, s, strlen(s)); }

static void bprintf(struct buf *b, const char *fmt, ...)
{
    char tmp[512];
    va_list ap;
    int n;
    va_start(ap, fmt);
    n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n > 0) bput(b, tmp, (size_t)n < sizeof(tmp) ? (size_t)n : sizeof(tmp) - 1);
}

/* A JSON string literal. */
static void bstr(struct buf *b, const char *s)
{
    bputs(b, "\"");
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') { char e[2] = { '\\', (char)c }; bput(b, e, 2); }
        else if (c < 0x20) bprintf(b, "\\u%04x", c);
        else bput(b, s, 1);
    }
    bputs(b, "\"");
}

/* The outcome of one request: the reply's fields, or an error. */
struct ctx {
    struct buf out;          /* "key":value,... without braces */
    const char *error;       /* errno name, NULL on success */
    char message[300];
};

static void field(struct ctx *c, const char *key)
{
    if (c->out.len) bputs(&c->out, ",");
    bstr(&c->out, key);
    bputs(&c->out, ":");
}

static int fail(struct ctx *c, const char *error, const char *fmt, ...)
{
    va_list ap;
    c->error = error;
    va_start(ap, fmt);
    vsnprintf(c->message, sizeof(c->message), fmt, ap);
    va_end(ap);
    return -1;
}

static const char *errname(int e)
{
    const char *n = strerrorname_np(e);
    return n ? n : "EIO";
}

static int fail_errno(struct ctx *c, const char *what)
{
    int e = errno;
    return fail(c, errname(e), "%s: %s", what, strerror(e));
}

/* --- base64 ------------------------------------------------------------------------ */

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static void b64encode(struct buf *b, const unsigned char *p, size_t n)
{
    size_t i;
    char q[4];
    for (i = 0; i + 2 < n; i += 3) {
        q[0] = B64[p[i] >> 2]; q[1] = B64[((p[i] & 3) << 4) | (p[i + 1] >> 4)];
        q[2] = B64[((p[i + 1] & 15) << 2) | (p[i + 2] >> 6)]; q[3] = B64[p[i + 2] & 63];
        bput(b, q, 4);
    }
    if (n - i == 1) {
        q[0] = B64[p[i] >> 2]; q[1] = B64[(p[i] & 3) << 4]; q[2] = '='; q[3] = '=';
        bput(b, q, 4);
    } else if (n - i == 2) {
        q[0] = B64[p[i] >> 2]; q[1] = B64[((p[i] & 3) << 4) | (p[i + 1] >> 4)];
        q[2] = B64[(p[i + 1] & 15) << 2]; q[3] = '=';
        bput(b, q, 4);
    }
}

/* -> malloc'd bytes and their count, or NULL if `s` is not base64. */
static unsigned char *b64decode(const char *s, size_t *n)
{
    size_t len = strlen(s), i, o = 0;
    unsigned char *out;
    if (len % 4) return NULL;
    out = malloc(len / 4 * 3 + 1);
    if (!out) return NULL;
    for (i = 0; i < len; i += 4) {
        int v[4], k;
        for (k = 0; k < 4; k++) {
            const char *at = strchr(B64, s[i + k]);
            if (s[i + k] == '=' && i + 4 == len && k >= 2) v[k] = -1;
            else if (s[i + k] && at) v[k] = (int)(at - B64);
            else { free(out); return NULL; }
        }
        if (v[2] < 0 && v[3] >= 0) { free(out); return NULL; }
        out[o++] = (unsigned char)((v[0] << 2) | (v[1] >> 4));
        if (v[2] >= 0) out[o++] = (unsigned char)(((v[1] & 15) << 4) | (v[2] >> 2));
        if (v[3] >= 0) out[o++] = (unsigned char)(((v[2] & 3) << 6) | v[3]);
    }
    *n = o;
    return out;
}

#endif
