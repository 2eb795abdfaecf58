/* The admin HTTP server (see admin.h). */
#include "admin.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/event_struct.h>

#include "common.h"
#include "listener.h"
#include "log.h"

#define ADMIN_MAX_HEAD 4096
#define ADMIN_MAX_CONNS 64
#define ADMIN_DEADLINE_MS 5000

struct aconn {
    struct aconn *prev, *next;
    struct admin *a;
    int fd;
    struct event ev;
    uint64_t deadline_ms;
    size_t in_len;
    struct sbuf out;
    size_t out_off;
    char in[ADMIN_MAX_HEAD];
};

struct admin {
    struct event_base *base;
    int fd;
    struct event *accept_ev;
    admin_handler handler;
    void *arg;
    struct aconn *conns;
    int n_conns;
};

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void conn_free(struct aconn *c)
{
    struct admin *a = c->a;
    event_del(&c->ev);
    close(c->fd);
    if (c->prev)
        c->prev->next = c->next;
    else
        a->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    a->n_conns--;
    sbuf_free(&c->out);
    free(c);
}

static void on_conn(evutil_socket_t fd, short what, void *arg);

static void arm(struct aconn *c, short what)
{
    event_del(&c->ev);
    event_assign(&c->ev, c->a->base, c->fd, what | EV_PERSIST, on_conn, c);
    struct timeval tv = {ADMIN_DEADLINE_MS / 1000, 0};
    event_add(&c->ev, &tv);
}

static const char *reason_phrase(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 400:
        return "Bad Request";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 431:
        return "Request Header Fields Too Large";
    case 503:
        return "Service Unavailable";
    default:
        return "Error";
    }
}

/* Returns 0 when everything is written, 1 when the socket is full, -1 on error. */
static int write_out(struct aconn *c)
{
    while (c->out_off < c->out.len) {
        ssize_t n = send(c->fd, c->out.p + c->out_off, c->out.len - c->out_off, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return errno == EAGAIN || errno == EWOULDBLOCK ? 1 : -1;
        }
        c->out_off += (size_t)n;
    }
    return 0;
}

static void respond(struct aconn *c, int status, const char *ctype, const struct sbuf *body, bool head_only)
{
    size_t blen = body ? body->len : 0;
    sbuf_printf(&c->out,
                "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\nCache-Control: no-store\r\n"
                "Connection: close\r\n\r\n",
                status, reason_phrase(status), ctype, blen);
    if (blen && !head_only)
        sbuf_printf(&c->out, "%.*s", (int)blen, body->p);
    int r = write_out(c);
    if (r == 0) {
        shutdown(c->fd, SHUT_WR);
        conn_free(c);
    } else if (r < 0) {
        conn_free(c);
    } else {
        arm(c, EV_WRITE);
    }
}

static void simple(struct aconn *c, int status)
{
    struct sbuf body = {0};
    sbuf_printf(&body, "%s\n", reason_phrase(status));
    respond(c, status, "text/plain; charset=utf-8", &body, false);
    sbuf_free(&body);
}

/* The request head is complete in c->in[0..len): answer it. */
static void handle(struct aconn *c, size_t len)
{
    char *line = c->in;
    char *eol = memchr(line, '\n', len);
    if (!eol) {
        simple(c, 400);
        return;
    }
    *eol = 0;
    char *sp1 = strchr(line, ' ');
    char *sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;
    if (!sp1 || !sp2 || strncmp(sp2 + 1, "HTTP/1.", 7) != 0) {
        simple(c, 400);
        return;
    }
    *sp1 = 0;
    *sp2 = 0;
    bool head_only = strcmp(line, "HEAD") == 0;
    if (!head_only && strcmp(line, "GET") != 0) {
        simple(c, 405);
        return;
    }
    char *path = sp1 + 1;
    path[strcspn(path, "?#")] = 0;
    struct sbuf body = {0};
    const char *ctype = "text/plain; charset=utf-8";
    int status = c->a->handler(c->a->arg, path, &body, &ctype);
    if (status == 404 && body.len == 0)
        sbuf_printf(&body, "Not Found\n");
    respond(c, status, ctype, &body, head_only);
    sbuf_free(&body);
}

static const char *find_head_end(const char *p, size_t n, size_t *len)
{
    for (size_t i = 0; i + 1 < n; i++) {
        if (p[i] == '\n' && p[i + 1] == '\n') {
            *len = i + 2;
            return p + i;
        }
        if (i + 3 < n && p[i] == '\r' && p[i + 1] == '\n' && p[i + 2] == '\r' && p[i + 3] == '\n') {
            *len = i + 4;
            return p + i;
        }
    }
    return NULL;
}

static void on_conn(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    struct aconn *c = arg;
    if ((what & EV_TIMEOUT) || mono_ms() >= c->deadline_ms) {
        conn_free(c);
        return;
    }
    if (c->out.len) { /* responding */
        if (what & EV_WRITE) {
            int r = write_out(c);
            if (r <= 0) {
                if (r == 0)
                    shutdown(c->fd, SHUT_WR);
                conn_free(c);
            }
        }
        return;
    }
    if (!(what & EV_READ))
        return;
    for (;;) {
        if (c->in_len == sizeof(c->in)) {
            simple(c, 431);
            return;
        }
        ssize_t n = recv(c->fd, c->in + c->in_len, sizeof(c->in) - c->in_len, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                conn_free(c);
            return;
        }
        if (n == 0) {
            conn_free(c);
            return;
        }
        size_t scan_from = c->in_len > 3 ? c->in_len - 3 : 0;
        c->in_len += (size_t)n;
        size_t len;
        if (find_head_end(c->in + scan_from, c->in_len - scan_from, &len)) {
            handle(c, scan_from + len);
            return;
        }
    }
}

static void on_accept(evutil_socket_t lfd, short what, void *arg)
{
    (void)what;
    struct admin *a = arg;
    for (int i = 0; i < 16; i++) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return;
        if (a->n_conns >= ADMIN_MAX_CONNS) {
            close(fd);
            continue;
        }
        struct aconn *c = calloc(1, sizeof(*c));
        if (!c) {
            close(fd);
            continue;
        }
        c->a = a;
        c->fd = fd;
        c->deadline_ms = mono_ms() + ADMIN_DEADLINE_MS;
        c->next = a->conns;
        if (a->conns)
            a->conns->prev = c;
        a->conns = c;
        a->n_conns++;
        event_assign(&c->ev, a->base, fd, 0, on_conn, c);
        arm(c, EV_READ);
    }
}

struct admin *admin_new(struct event_base *base, const char *listen_addr, admin_handler h, void *arg,
                        char *err, size_t errlen)
{
    struct sockaddr_storage addr;
    socklen_t alen;
    if (lsn_parse_addr(listen_addr, &addr, &alen) != 0) {
        snprintf(err, errlen, "bad --admin-listen address %s", listen_addr);
        return NULL;
    }
    int fd = socket(addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        bind(fd, (const struct sockaddr *)&addr, alen) != 0 || listen(fd, 64) != 0) {
        snprintf(err, errlen, "admin port %s: %s", listen_addr, strerror(errno));
        if (fd >= 0)
            close(fd);
        return NULL;
    }
    struct admin *a = xcalloc(1, sizeof(*a));
    a->base = base;
    a->fd = fd;
    a->handler = h;
    a->arg = arg;
    a->accept_ev = event_new(base, fd, EV_READ | EV_PERSIST, on_accept, a);
    event_add(a->accept_ev, NULL);
    return a;
}

void admin_address(const struct admin *a, char *out, size_t cap)
{
    struct sockaddr_storage addr;
    socklen_t len = sizeof(addr);
    if (getsockname(a->fd, (struct sockaddr *)&addr, &len) != 0) {
        snprintf(out, cap, "?");
        return;
    }
    lsn_format(&addr, out, cap);
}

void admin_close_in_child(struct admin *a)
{
    if (!a)
        return;
    close(a->fd);
    for (struct aconn *c = a->conns; c; c = c->next)
        close(c->fd);
}

void admin_free(struct admin *a)
{
    if (!a)
        return;
    while (a->conns)
        conn_free(a->conns);
    event_free(a->accept_ev);
    close(a->fd);
    free(a);
}
