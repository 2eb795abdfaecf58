/* `nhctl console <device>` and `nhctl local-shell <device>`: interactive terminals on a device,
 * over NATS, against whichever gateway node holds the device. Both share the terminal part (raw
 * mode, window size, exit key, restoring the terminal on every exit path); they differ in how
 * they open, what they subscribe to and which events carry keystrokes.
 *
 * console (remote IEx, proto/LINK.md §9, the gateway's own):
 * 1. `devices.show` (platform API) names the gateway and worker holding the device.
 * 2. Subscribe to <p>.console.<dev>.out and flush, then send console_attach to that worker's
 *    inbox: the reply's scrollback is printed first, then the subscription's messages (the
 *    subscription is older than the snapshot, so nothing is lost or repeated; a gate holds the
 *    subscription's thread until the scrollback is out).
 * 3. The terminal goes raw; keystrokes are published as inbox pushes `dn {data}`, the window size
 *    as `window_size {height, width}` at start and on SIGWINCH; the lease is renewed every
 *    RENEW_MS (console_attach with sb: false).
 * 4. Ctrl-] (like telnet) detaches and exits 0; the device's console closing (`closed`) or the
 *    device leaving the worker exits 1 with "console closed: <reason>".
 *
 * local-shell (the `local_shell` extension, LINK.md §9.1, the platform's):
 * 1. As above, `devices.show`.
 * 2. One subscription to <p>.local_shell.<dev>.> (live output on `.out`, this operator's replay on
 *    `.op.<op>`: one subscription keeps NATS's order between them), flushed; then an inbox
 *    `notify` on `extensions` with {k: "local_shell", op}, which the platform answers with the
 *    effect scrollback_replay to `.op.<op>`. Live output before the replay is already in it and
 *    is skipped; after it, it is new.
 * 3. Keystrokes: inbox pushes `local_shell:shell_input {data}` on `extensions`; the window size:
 *    `local_shell:window_size {rows, cols}`. No lease: the platform keeps no operator state.
 * 4. Ctrl-] exits 0; `closed` (the device detached the extension or disconnected; or it never
 *    attached it) exits 1 with "local shell closed: <reason>". */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "lp.h"
#include "nhctl.h"

#define EXIT_KEY 0x1d  /* Ctrl-] */
#define RENEW_MS 15000 /* a third of the gateway's default lease (LP_LEASE_DEFAULT_MS) */
#define INBOX_TIMEOUT_MS 3000
/* How long local-shell waits for the platform's replay: its notify may queue behind the device's
 * other platform calls, each up to the gateway's --link-timeout (5 s by default). */
#define REPLAY_TIMEOUT_MS 15000

/* State shared with the subscription's thread and the signal handlers. */
static struct {
    int wake[2]; /* self-pipe: the main loop's poll wakes on it */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool ready;         /* the scrollback is out: live output may be written */
    atomic_bool closed; /* the device's console closed */
    atomic_bool replayed; /* local-shell: the scrollback replay arrived (live output follows) */
    atomic_bool mute;   /* no more output to the terminal (we are leaving) */
    atomic_bool winch, quit;
    char reason[256]; /* why it closed, under mu */
    char replay_subject[LP_MAX_OP + 512]; /* local-shell: <p>.local_shell.<dev>.op.<op> */
    char live_subject[512];               /* local-shell: <p>.local_shell.<dev>.out */
    struct termios saved;
    bool raw;
} K = {.wake = {-1, -1}, .mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void write_all(int fd, const void *p, size_t n)
{
    const char *s = p;
    while (n) {
        ssize_t w = write(fd, s, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return;
        s += w;
        n -= (size_t)w;
    }
}

static void wake(void)
{
    char b = 1;
    if (K.wake[1] >= 0 && write(K.wake[1], &b, 1) < 0) {
        /* the pipe is full: the main loop is awake already */
    }
}

static void restore_terminal(void)
{
    if (K.raw) {
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &K.saved);
        K.raw = false;
    }
}

static void on_signal(int sig)
{
    if (sig == SIGWINCH)
        atomic_store(&K.winch, true);
    else
        atomic_store(&K.quit, true);
    wake();
}

/* Status line on stderr; in raw mode lines need an explicit carriage return. */
static void notice(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void notice(const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    fputs(K.raw ? "\r\nnhctl: " : "nhctl: ", stderr);
    out_safe(stderr, buf);
    fputs(K.raw ? "\r\n" : "\n", stderr);
    fflush(stderr);
}

/* ---- the output subscription (NATS.c's thread) ---- */

static void str_field(struct lp_span map, const char *key, char *out, size_t cap)
{
    struct lp_span v, s;
    out[0] = 0;
    if (lp_mp_map_get(map, key, &v) == 1 && lp_mp_read_str(v, &s) == 0) {
        size_t n = s.n < cap - 1 ? s.n : cap - 1;
        memcpy(out, s.p, n);
        out[n] = 0;
    }
}

/* `closed {reason, detail?}`: the session ends; the main loop reports why. */
static void on_closed(struct lp_span payload)
{
    char reason[96], detail[96];
    str_field(payload, "reason", reason, sizeof(reason));
    str_field(payload, "detail", detail, sizeof(detail));
    pthread_mutex_lock(&K.mu);
    snprintf(K.reason, sizeof(K.reason), "%s%s%s%s", reason[0] ? reason : "closed", detail[0] ? " (" : "", detail,
             detail[0] ? ")" : "");
    pthread_mutex_unlock(&K.mu);
    atomic_store(&K.closed, true);
    wake();
}

/* Writes the `data` (str or bin) of a payload to the terminal. */
static void write_data(struct lp_span payload)
{
    struct lp_span v, data;
    if (lp_mp_map_get(payload, "data", &v) == 1 && (lp_mp_read_str(v, &data) == 0 || lp_mp_read_bin(v, &data) == 0))
        write_all(STDOUT_FILENO, data.p, data.n);
}

static bool ev_is(struct lp_span ev, const char *lit)
{
    size_t n = strlen(lit);
    return ev.n == n && memcmp(ev.p, lit, n) == 0;
}

static void wait_gate(void)
{
    pthread_mutex_lock(&K.mu);
    while (!K.ready)
        pthread_cond_wait(&K.cv, &K.mu);
    pthread_mutex_unlock(&K.mu);
}

/* local-shell's subscription: <p>.local_shell.<dev>.> */
static void on_shell_output(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    (void)nc, (void)sub, (void)closure;
    wait_gate();
    struct lp_console_out m;
    const char *subj = natsMsg_GetSubject(msg);
    bool mine = strcmp(subj, K.replay_subject) == 0;
    bool live = strcmp(subj, K.live_subject) == 0;
    if (!atomic_load(&K.mute) && (mine || live) &&
        lp_decode_console_out((const uint8_t *)natsMsg_GetData(msg), (size_t)natsMsg_GetDataLength(msg), &m, NULL) ==
            0) {
        if (mine && ev_is(m.event, "scrollback") && !atomic_load(&K.replayed)) {
            write_data(m.payload);
            atomic_store(&K.replayed, true);
            wake();
        } else if (live && ev_is(m.event, "output")) {
            /* before the replay, this output is part of it (LINK.md §9.1) */
            if (atomic_load(&K.replayed))
                write_data(m.payload);
        } else if (ev_is(m.event, "closed")) {
            on_closed(m.payload);
        }
    }
    natsMsg_Destroy(msg);
}

static void on_output(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    (void)nc, (void)sub, (void)closure;
    wait_gate();
    struct lp_console_out m;
    if (!atomic_load(&K.mute) && lp_decode_console_out((const uint8_t *)natsMsg_GetData(msg),
                                                       (size_t)natsMsg_GetDataLength(msg), &m, NULL) == 0) {
        if (m.event.n == 2 && memcmp(m.event.p, "up", 2) == 0) {
            /* the device's terminal stream goes to ours unchanged, as ssh does */
            write_data(m.payload);
        } else if (m.event.n == 6 && memcmp(m.event.p, "closed", 6) == 0) {
            on_closed(m.payload);
        } else if (m.event.n == 15 && memcmp(m.event.p, "file-data/start", 15) == 0) {
            char name[128];
            str_field(m.payload, "filename", name, sizeof(name));
            notice("the device is sending the file \"%s\" (nhctl console does not save files)", name);
        }
    }
    natsMsg_Destroy(msg);
}

/* Lets the subscription's thread go; `mute`: without writing anything (leaving). */
static void open_gate(bool mute)
{
    if (mute)
        atomic_store(&K.mute, true);
    pthread_mutex_lock(&K.mu);
    K.ready = true;
    pthread_cond_broadcast(&K.cv);
    pthread_mutex_unlock(&K.mu);
}

/* ---- requests to the worker's inbox ---- */

struct target {
    const char *dev;
    bool shell; /* local-shell (else console) */
    char inbox[256];
    char op[32];
};

/* Publishes an inbox push on the session's topic (fire and forget: the device's output is the
 * answer). */
static void push(struct ctx *c, const struct target *t, const char *ev, const struct lp_out *payload)
{
    struct lp_out o = {0};
    struct lp_inbox m = {0};
    m.kind = LP_IN_PUSH;
    m.dev = lp_cspan(t->dev);
    m.topic = lp_cspan(t->shell ? "extensions" : "console");
    m.event = lp_cspan(ev);
    m.payload = (struct lp_span){payload->p, payload->n};
    if (lp_encode_inbox(&o, &m) == 0)
        natsConnection_Publish(c->nc, t->inbox, o.p, (int)o.n);
    lp_out_free(&o);
}

static void send_input(struct ctx *c, const struct target *t, const char *p, size_t n)
{
    struct lp_out pl = {0};
    lp_mp_map(&pl, 1);
    lp_mp_cstr(&pl, "data");
    lp_mp_str(&pl, p, n);
    if (!pl.failed)
        push(c, t, t->shell ? "local_shell:shell_input" : "dn", &pl);
    lp_out_free(&pl);
}

static void send_window_size(struct ctx *c, const struct target *t)
{
    struct winsize ws;
    if (ioctl(STDIN_FILENO, TIOCGWINSZ, &ws) != 0 || ws.ws_row == 0 || ws.ws_col == 0)
        return;
    struct lp_out pl = {0};
    lp_mp_map(&pl, 2);
    lp_mp_cstr(&pl, t->shell ? "rows" : "height");
    lp_mp_uint(&pl, ws.ws_row);
    lp_mp_cstr(&pl, t->shell ? "cols" : "width");
    lp_mp_uint(&pl, ws.ws_col);
    push(c, t, t->shell ? "local_shell:window_size" : "window_size", &pl);
    lp_out_free(&pl);
}

/* console_attach; *reply is the worker's answer (its scrollback copied into *sb when asked).
 * Returns NHCTL_OK, or NHCTL_UNREACHABLE when the worker did not answer. */
static int attach(struct ctx *c, const struct target *t, bool want_sb, struct lp_console_reply *reply,
                  char **sb, size_t *sb_n, char *version, size_t vcap)
{
    struct lp_out o = {0};
    struct lp_inbox m = {0};
    m.kind = LP_IN_CONSOLE_ATTACH;
    m.dev = lp_cspan(t->dev);
    m.op = lp_cspan(t->op);
    m.no_scrollback = !want_sb;
    if (lp_encode_inbox(&o, &m) != 0) {
        lp_out_free(&o);
        return NHCTL_ERROR;
    }
    natsMsg *r = NULL;
    natsStatus s = natsConnection_Request(&r, c->nc, t->inbox, o.p, (int)o.n, INBOX_TIMEOUT_MS);
    lp_out_free(&o);
    if (s != NATS_OK)
        return NHCTL_UNREACHABLE;
    int rc = NHCTL_OK;
    if (lp_decode_console_reply((const uint8_t *)natsMsg_GetData(r), (size_t)natsMsg_GetDataLength(r), reply,
                                NULL) != 0) {
        rc = NHCTL_ERROR;
    } else {
        if (sb && reply->has_scrollback) {
            *sb = malloc(reply->scrollback.n + 1);
            if (*sb)
                memcpy(*sb, reply->scrollback.p, reply->scrollback.n);
            *sb_n = *sb ? reply->scrollback.n : 0;
        }
        if (version) {
            size_t n = reply->version.n < vcap - 1 ? reply->version.n : vcap - 1;
            memcpy(version, reply->version.p, n);
            version[n] = 0;
        }
        reply->scrollback = reply->version = (struct lp_span){NULL, 0}; /* they pointed into r */
    }
    natsMsg_Destroy(r);
    return rc;
}

static void detach(struct ctx *c, const struct target *t)
{
    struct lp_out o = {0};
    struct lp_inbox m = {0};
    m.kind = LP_IN_CONSOLE_DETACH;
    m.dev = lp_cspan(t->dev);
    m.op = lp_cspan(t->op);
    if (lp_encode_inbox(&o, &m) == 0) {
        natsConnection_Publish(c->nc, t->inbox, o.p, (int)o.n);
        natsConnection_FlushTimeout(c->nc, 1000);
    }
    lp_out_free(&o);
}

static void random_op(char *out, size_t cap)
{
    unsigned char b[6] = {0};
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd < 0 || read(fd, b, sizeof(b)) != (ssize_t)sizeof(b)) {
        uint64_t x = (uint64_t)mono_ms() ^ (uint64_t)getpid() << 32;
        memcpy(b, &x, sizeof(b));
    }
    if (fd >= 0)
        close(fd);
    snprintf(out, cap, "nhctl-%02x%02x%02x%02x%02x%02x", b[0], b[1], b[2], b[3], b[4], b[5]);
}

/* ---- the command ---- */

/* The device's holder from devices.show; NHCTL_OK with t->inbox set, or an exit code (printed). */
static int locate(struct ctx *c, struct target *t, char *gw_out, size_t gw_cap)
{
    json_t *reply = NULL;
    bool json = c->json;
    c->json = false;
    int rc = rpc_call(c, "devices.show", json_pack("{s:s}", "id", t->dev), &reply);
    c->json = json;
    if (rc)
        return rc;
    const json_t *d = json_object_get(reply, "device");
    const char *gw = json_string_value(json_object_get(d, "gateway"));
    const json_t *w = json_object_get(d, "worker");
    if (!json_is_true(json_object_get(d, "online")) || !gw || !json_is_integer(w)) {
        nhctl_err("device %s is offline (no gateway holds it)", t->dev);
        json_decref(reply);
        return NHCTL_ERROR;
    }
    if (!lp_valid_gateway_id(lp_cspan(gw)) || json_integer_value(w) < 0) {
        nhctl_err("invalid reply to devices.show: bad gateway/worker");
        json_decref(reply);
        return NHCTL_ERROR;
    }
    snprintf(t->inbox, sizeof(t->inbox), "%s.gw.%s.%lld", c->prefix, gw, (long long)json_integer_value(w));
    snprintf(gw_out, gw_cap, "%s/%lld", gw, (long long)json_integer_value(w));
    json_decref(reply);
    return NHCTL_OK;
}

static int attach_error(const struct target *t, int rc, const struct lp_console_reply *r, const char *where)
{
    if (rc == NHCTL_UNREACHABLE) {
        nhctl_err("gateway %s did not answer for device %s (within %d ms)", where, t->dev, INBOX_TIMEOUT_MS);
        return NHCTL_UNREACHABLE;
    }
    if (rc != NHCTL_OK) {
        nhctl_err("invalid console reply from gateway %s", where);
        return NHCTL_ERROR;
    }
    switch (r->st) {
    case LP_CST_GONE:
        nhctl_err("device %s is no longer connected to gateway %s (offline, or it just moved: try again)",
                  t->dev, where);
        break;
    case LP_CST_NOT_JOINED:
        nhctl_err("device %s has not joined its console (is remote IEx enabled on it? nerves_hub_link: "
                  "remote_iex: true)",
                  t->dev);
        break;
    case LP_CST_FULL:
        nhctl_err("device %s's console has too many operators attached", t->dev);
        break;
    default:
        return NHCTL_OK;
    }
    return NHCTL_ERROR;
}

/* Reads stdin and forwards it; returns true when the exit key was typed or stdin ended. */
static bool forward_input(struct ctx *c, const struct target *t, bool *eof)
{
    char buf[4096];
    ssize_t n = read(STDIN_FILENO, buf, sizeof(buf));
    if (n < 0)
        return errno != EINTR && errno != EAGAIN;
    if (n == 0) {
        *eof = true;
        return false;
    }
    char *k = memchr(buf, EXIT_KEY, (size_t)n);
    size_t send = k ? (size_t)(k - buf) : (size_t)n;
    if (send)
        send_input(c, t, buf, send);
    return k != NULL;
}

/* local-shell's opening request: an inbox notify {k: "local_shell", op} on `extensions`, which
 * the platform answers by having the gateway replay the scrollback to K.replay_subject. The
 * worker's answer (ok, gone, not_joined) comes back in *st. */
static int shell_request(struct ctx *c, const struct target *t, enum lp_console_status *st)
{
    struct lp_out msg = {0}, o = {0};
    lp_mp_map(&msg, 2);
    lp_mp_cstr(&msg, "k");
    lp_mp_cstr(&msg, "local_shell");
    lp_mp_cstr(&msg, "op");
    lp_mp_cstr(&msg, t->op);
    struct lp_inbox m = {0};
    m.kind = LP_IN_NOTIFY;
    m.dev = lp_cspan(t->dev);
    m.topic = lp_cspan("extensions");
    m.msg = (struct lp_span){msg.p, msg.n};
    int rc = msg.failed || lp_encode_inbox(&o, &m) != 0 ? NHCTL_ERROR : NHCTL_OK;
    lp_out_free(&msg);
    natsMsg *r = NULL;
    if (rc == NHCTL_OK &&
        natsConnection_Request(&r, c->nc, t->inbox, o.p, (int)o.n, INBOX_TIMEOUT_MS) != NATS_OK)
        rc = NHCTL_UNREACHABLE;
    lp_out_free(&o);
    struct lp_console_reply reply;
    if (rc == NHCTL_OK) {
        /* the inbox's {v, st} is a console reply without its optional keys */
        if (lp_decode_console_reply((const uint8_t *)natsMsg_GetData(r), (size_t)natsMsg_GetDataLength(r), &reply,
                                    NULL) != 0)
            rc = NHCTL_ERROR;
        else
            *st = reply.st;
    }
    natsMsg_Destroy(r);
    return rc;
}

/* The terminal session both commands share, once opened: raw mode, the initial text `sb`, the
 * window size, keystrokes until the exit key, `closed`, a lapsed lease or (local-shell) no
 * replay in time. Returns the exit code; `what` names the session in messages. */
static int run_terminal(struct ctx *c, const struct target *t, natsSubscription *sub, const char *what,
                        const char *banner, char *sb, size_t sb_n)
{
    bool tty = isatty(STDIN_FILENO);
    if (pipe(K.wake) == 0) {
        fcntl(K.wake[0], F_SETFL, O_NONBLOCK);
        fcntl(K.wake[1], F_SETFL, O_NONBLOCK);
    }
    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGWINCH, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    notice("%s", banner);
    if (tty && tcgetattr(STDIN_FILENO, &K.saved) == 0) {
        struct termios raw = K.saved;
        cfmakeraw(&raw);
        if (tcsetattr(STDIN_FILENO, TCSAFLUSH, &raw) == 0) {
            K.raw = true;
            atexit(restore_terminal);
        }
    }
    write_all(STDOUT_FILENO, sb, sb_n);
    free(sb);
    open_gate(false);
    if (tty)
        send_window_size(c, t);

    bool user_exit = false, eof = false;
    int64_t start = mono_ms(), next_renew = t->shell ? INT64_MAX : start + RENEW_MS;
    int64_t replay_by = t->shell ? start + REPLAY_TIMEOUT_MS : INT64_MAX;
    int rc = NHCTL_OK;
    for (;;) {
        if (atomic_load(&K.closed))
            break;
        if (atomic_load(&K.quit)) {
            user_exit = true;
            break;
        }
        if (atomic_exchange(&K.winch, false))
            send_window_size(c, t);
        int64_t now = mono_ms();
        if (now >= replay_by && !atomic_load(&K.replayed)) {
            pthread_mutex_lock(&K.mu);
            snprintf(K.reason, sizeof(K.reason), "the platform did not answer within %d ms (is it running?)",
                     REPLAY_TIMEOUT_MS);
            pthread_mutex_unlock(&K.mu);
            atomic_store(&K.closed, true);
            rc = NHCTL_UNREACHABLE;
            continue;
        }
        if (now >= next_renew) {
            struct lp_console_reply rr;
            int arc = attach(c, t, false, &rr, NULL, NULL, NULL, 0);
            if (arc == NHCTL_OK && rr.st != LP_CST_OK) {
                pthread_mutex_lock(&K.mu);
                snprintf(K.reason, sizeof(K.reason), "%s",
                         rr.st == LP_CST_GONE         ? "the device is no longer connected to this gateway"
                         : rr.st == LP_CST_NOT_JOINED ? "the device left its console"
                                                      : "too many operators");
                pthread_mutex_unlock(&K.mu);
                atomic_store(&K.closed, true);
                continue;
            }
            /* an unanswered renewal is tried again on the next round; the lease outlasts two */
            next_renew = now + RENEW_MS;
            continue;
        }
        int64_t until = next_renew;
        if (!atomic_load(&K.replayed) && replay_by < until)
            until = replay_by;
        int timeout = until == INT64_MAX ? -1 : (int)(until - now);
        struct pollfd p[2] = {{K.wake[0], POLLIN, 0}, {eof ? -1 : STDIN_FILENO, POLLIN, 0}};
        int pr = poll(p, 2, timeout);
        if (pr < 0 && errno != EINTR)
            break;
        if (pr > 0 && (p[0].revents & POLLIN)) {
            char drain[64];
            while (read(K.wake[0], drain, sizeof(drain)) > 0) {
            }
        }
        if (pr > 0 && (p[1].revents & (POLLIN | POLLHUP | POLLERR)) && forward_input(c, t, &eof)) {
            user_exit = true;
            break;
        }
        if (natsConnection_Status(c->nc) == NATS_CONN_STATUS_CLOSED) {
            pthread_mutex_lock(&K.mu);
            snprintf(K.reason, sizeof(K.reason), "lost the connection to NATS at %s", c->nats_url);
            pthread_mutex_unlock(&K.mu);
            atomic_store(&K.closed, true);
            rc = NHCTL_UNREACHABLE;
        }
    }
    /* stop output first, so nothing is written after the terminal is restored */
    atomic_store(&K.mute, true);
    natsSubscription_Unsubscribe(sub);
    natsSubscription_Destroy(sub);
    if (!t->shell && !atomic_load(&K.closed))
        detach(c, t);
    restore_terminal();
    if (user_exit) {
        notice("detached from the %s of %s", what, t->dev);
        return rc;
    }
    pthread_mutex_lock(&K.mu);
    notice("%s closed: %s", what, K.reason[0] ? K.reason : "closed");
    pthread_mutex_unlock(&K.mu);
    return rc ? rc : NHCTL_ERROR;
}

/* The subscription is live at the server (flushed) before the attach is sent, so no output
 * published after the attach is missed. NULL after saying why. */
static natsSubscription *subscribe_output(struct ctx *c, const char *subject, natsMsgHandler cb)
{
    natsSubscription *sub = NULL;
    natsStatus s = natsConnection_Subscribe(&sub, c->nc, subject, cb, NULL);
    if (s == NATS_OK)
        s = natsConnection_FlushTimeout(c->nc, c->timeout_ms);
    if (s != NATS_OK) {
        natsSubscription_Destroy(sub);
        nhctl_err("cannot subscribe to %s at %s: %s", subject, c->nats_url, natsStatus_GetText(s));
        return NULL;
    }
    return sub;
}

/* The device id checked, its gateway located (`where` names it) and an operator id drawn;
 * NHCTL_OK or an exit code (printed). */
static int target_open(struct ctx *c, struct target *t, const char *cmd, char *where, size_t where_cap)
{
    if (!lp_valid_dev(lp_cspan(t->dev)))
        return nhctl_usage(cmd, "\"%s\" is not a device id", t->dev);
    int rc = locate(c, t, where, where_cap);
    if (rc)
        return rc;
    random_op(t->op, sizeof(t->op));
    return NHCTL_OK;
}

/* Gives up before the terminal starts: output gate open, subscription gone; returns rc. */
static int abandon(natsSubscription *sub, int rc)
{
    open_gate(true);
    natsSubscription_Unsubscribe(sub);
    natsSubscription_Destroy(sub);
    return rc;
}

int cmd_console(struct ctx *c, const struct args *a, const char *const *pos)
{
    (void)a;
    struct target t = {.dev = pos[0]};
    char where[128];
    int rc = target_open(c, &t, "console", where, sizeof(where));
    if (rc)
        return rc;

    char subject[300];
    snprintf(subject, sizeof(subject), "%s.console.%s.out", c->prefix, t.dev);
    natsSubscription *sub = subscribe_output(c, subject, on_output);
    if (!sub)
        return NHCTL_UNREACHABLE;
    struct lp_console_reply r;
    char *sb = NULL, version[LP_MAX_CONSOLE_VERSION + 1] = "";
    size_t sb_n = 0;
    rc = attach_error(&t, attach(c, &t, true, &r, &sb, &sb_n, version, sizeof(version)), &r, where);
    if (rc)
        return abandon(sub, rc);
    char banner[512];
    snprintf(banner, sizeof(banner), "console of %s (console_version %s) via gateway %s; type Ctrl-] to exit", t.dev,
             version[0] ? version : "-", where);
    return run_terminal(c, &t, sub, "console", banner, sb, sb_n);
}

int cmd_local_shell(struct ctx *c, const struct args *a, const char *const *pos)
{
    (void)a;
    struct target t = {.dev = pos[0], .shell = true};
    char where[128];
    int rc = target_open(c, &t, "local-shell", where, sizeof(where));
    if (rc)
        return rc;
    snprintf(K.replay_subject, sizeof(K.replay_subject), "%s.local_shell.%s.op.%s", c->prefix, t.dev, t.op);
    snprintf(K.live_subject, sizeof(K.live_subject), "%s.local_shell.%s.out", c->prefix, t.dev);

    char subject[300];
    snprintf(subject, sizeof(subject), "%s.local_shell.%s.>", c->prefix, t.dev);
    natsSubscription *sub = subscribe_output(c, subject, on_shell_output);
    if (!sub)
        return NHCTL_UNREACHABLE;
    enum lp_console_status st = LP_CST_OK;
    rc = shell_request(c, &t, &st);
    if (rc == NHCTL_UNREACHABLE) {
        nhctl_err("gateway %s did not answer for device %s (within %d ms)", where, t.dev, INBOX_TIMEOUT_MS);
    } else if (rc) {
        nhctl_err("invalid inbox reply from gateway %s", where);
    } else if (st == LP_CST_GONE) {
        nhctl_err("device %s is no longer connected to gateway %s (offline, or it just moved: try again)", t.dev,
                  where);
        rc = NHCTL_ERROR;
    } else if (st != LP_CST_OK) {
        nhctl_err("device %s has not joined its extensions channel (no local shell)", t.dev);
        rc = NHCTL_ERROR;
    }
    if (rc)
        return abandon(sub, rc);
    char banner[512];
    snprintf(banner, sizeof(banner), "local shell of %s via gateway %s; type Ctrl-] to exit", t.dev, where);
    return run_terminal(c, &t, sub, "local shell", banner, NULL, 0);
}
