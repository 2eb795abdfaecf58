/* Tests for gateway/natsc.c against a real nats-server on a loopback port.
 * Usage: natsc-test [name-substring ...]. Every test runs in its own child process (NATS.c starts
 * its threads there, never in the runner) with a timeout; each starts its own nats-server, which
 * dies with the child (PR_SET_PDEATHSIG). Ends with the line "N passed, N failed".
 * NATSC_TEST_LOGS=1 keeps nats-server's output on stderr; NATS_SERVER overrides the binary. */
#include "../lib/test.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <nats/nats.h>

#include "natsc.h"

/* ---- helpers ---- */

static struct event_base *base;
static pthread_t loop_thread;
static bool in_api; /* set around natsc calls: no natsc callback may run inside one */
static pid_t server_pid = -1;
static struct event *tick_ev;

#define ON_LOOP()                                                         \
    do {                                                                  \
        ASSERT(pthread_equal(pthread_self(), loop_thread));               \
        ASSERT(!in_api);                                                  \
    } while (0)

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
}

static void setup(void)
{
    base = event_base_new();
    ASSERT(base);
    loop_thread = pthread_self();
    /* a steady tick so that one EVLOOP_ONCE turn returns within 5 ms */
    tick_ev = event_new(base, -1, EV_PERSIST, on_tick, NULL);
    struct timeval tv = { 0, 5000 };
    event_add(tick_ev, &tv);
}

/* Runs the loop until cond holds; false after ms milliseconds. */
#define RUN_UNTIL(cond, ms)                                               \
    ({                                                                    \
        uint64_t until_ = now_ms() + (ms);                                \
        while (!(cond) && now_ms() < until_)                              \
            event_base_loop(base, EVLOOP_ONCE);                           \
        (bool)(cond);                                                     \
    })

/* Runs the loop for ms milliseconds. */
static void run_for(unsigned ms)
{
    uint64_t until = now_ms() + ms;
    while (now_ms() < until)
        event_base_loop(base, EVLOOP_ONCE);
}

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    ASSERT(bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
    socklen_t sl = sizeof(sa);
    ASSERT(getsockname(fd, (struct sockaddr *)&sa, &sl) == 0);
    close(fd);
    return ntohs(sa.sin_port);
}

static bool port_open(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    bool ok = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
    close(fd);
    return ok;
}

static void server_start(int port)
{
    ASSERT(server_pid < 0);
    pid_t pid = fork();
    ASSERT(pid >= 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (!getenv("NATSC_TEST_LOGS")) {
            FILE *n = freopen("/dev/null", "w", stderr);
            (void)n;
        }
        char p[16];
        snprintf(p, sizeof(p), "%d", port);
        const char *bin = getenv("NATS_SERVER") ? getenv("NATS_SERVER") : "nats-server";
        execlp(bin, bin, "-a", "127.0.0.1", "-p", p, (char *)NULL);
        /* Debian installs it in /usr/sbin, which a user's PATH may lack */
        execl("/usr/sbin/nats-server", "nats-server", "-a", "127.0.0.1", "-p", p, (char *)NULL);
        _exit(127);
    }
    server_pid = pid;
    uint64_t until = now_ms() + 10000;
    while (!port_open(port)) {
        ASSERT(now_ms() < until);
        ASSERT(waitpid(pid, NULL, WNOHANG) == 0); /* still running */
        sleep_ms(10);
    }
}

static void server_kill(void)
{
    if (server_pid < 0)
        return;
    kill(server_pid, SIGKILL);
    waitpid(server_pid, NULL, 0);
    server_pid = -1;
}

static void teardown(void)
{
    server_kill();
    if (tick_ev)
        event_free(tick_ev);
    if (base)
        event_base_free(base);
    /* every natsc was freed: NATS.c's threads must let go of all mailboxes (no callback can
     * come any more), and only then may the library shut down (see natsc_live_mailboxes) */
    uint64_t until = now_ms() + 5000;
    while (natsc_live_mailboxes() != 0) {
        ASSERT(now_ms() < until);
        sleep_ms(2);
    }
    /* wait for NATS.c's threads so that the leak checker sees the final state */
    nats_CloseAndWait(5000);
}

static char urlbuf[2][64];

static const char *url(int port)
{
    static int i;
    i ^= 1;
    snprintf(urlbuf[i], sizeof(urlbuf[i]), "nats://127.0.0.1:%d", port);
    return urlbuf[i];
}

/* Connection state as the callbacks reported it. */
struct conn_log {
    bool states[16];
    int n;
};

static void on_conn(void *arg, bool up)
{
    ON_LOOP();
    struct conn_log *l = arg;
    ASSERT(l->n < (int)ARRAY_SIZE(l->states));
    /* callbacks alternate and start with true */
    ASSERT_EQ(up, l->n % 2 == 0);
    l->states[l->n++] = up;
}

static struct natsc *client(const char *urls, const char *prefix, struct conn_log *log)
{
    struct natsc_opts o = { .urls = urls, .name = "natsc-test", .reply_prefix = prefix,
                            .reconnect_min_ms = 50, .reconnect_max_ms = 200 };
    in_api = true;
    struct natsc *c = natsc_new(base, &o);
    in_api = false;
    ASSERT(c);
    natsc_set_conn_cb(c, on_conn, log);
    return c;
}

static struct natsc *connected_client(int port, const char *prefix, struct conn_log *log)
{
    struct natsc *c = client(url(port), prefix, log);
    ASSERT(!natsc_connected(c)); /* the loop has not been told yet */
    ASSERT(RUN_UNTIL(natsc_connected(c), 10000));
    ASSERT_EQ(log->n, 1);
    return c;
}

static int publish(struct natsc *c, const char *subj, const void *p, size_t n, const char *reply)
{
    in_api = true;
    int r = natsc_publish(c, subj, p, n, reply);
    in_api = false;
    return r;
}

static uint64_t request(struct natsc *c, const char *subj, const void *p, size_t n, uint32_t tmo,
                        natsc_reply_cb cb, void *arg)
{
    in_api = true;
    uint64_t id = natsc_request(c, subj, p, n, tmo, cb, arg);
    in_api = false;
    ASSERT(id != 0);
    return id;
}

/* Received messages, copied. */
struct inbox {
    int n;
    char subj[64][64];
    char reply[64][64];
    bool has_reply[64];
    char data[64][256];
    size_t len[64];
    int total;
    uint64_t sum; /* of the first byte of each message: order checks in bulk tests */
    int last_seq;
    bool in_order;
};

static void on_msg(void *arg, const struct natsc_msg *m)
{
    ON_LOOP();
    struct inbox *in = arg;
    if (in->total == 0)
        in->in_order = true;
    int seq = -1;
    if (m->data.len >= 4 && memcmp(m->data.p, "seq ", 4) == 0)
        seq = atoi(m->data.p + 4);
    if (seq >= 0) {
        if (seq != in->last_seq + 1 && in->total > 0)
            in->in_order = false;
        in->last_seq = seq;
    }
    in->total++;
    if (in->n < 64) {
        snprintf(in->subj[in->n], 64, "%s", m->subject);
        in->has_reply[in->n] = m->reply != NULL;
        snprintf(in->reply[in->n], 64, "%s", m->reply ? m->reply : "");
        ASSERT(m->data.len <= 256);
        memcpy(in->data[in->n], m->data.p, m->data.len);
        in->len[in->n] = m->data.len;
        in->n++;
    }
}

static struct natsc_sub *subscribe(struct natsc *c, const char *subj, natsc_msg_cb cb, void *arg)
{
    in_api = true;
    struct natsc_sub *s = natsc_subscribe(c, subj, cb, arg);
    in_api = false;
    ASSERT(s);
    return s;
}

/* A request's outcome. */
struct result {
    int calls;
    enum natsc_result r;
    char data[256];
    size_t len;
    uint64_t at_ms;
};

static void on_reply(void *arg, enum natsc_result r, struct span data)
{
    ON_LOOP();
    struct result *res = arg;
    res->calls++;
    res->r = r;
    res->len = data.len;
    if (data.len <= sizeof(res->data))
        memcpy(res->data, data.p, data.len);
    res->at_ms = now_ms();
}

/* A responder: answers "re:" + the request body on the request's reply subject. */
struct responder {
    struct natsc *c;
    int seen;
    bool silent; /* receive but never answer */
};

static void on_request(void *arg, const struct natsc_msg *m)
{
    ON_LOOP();
    struct responder *r = arg;
    r->seen++;
    if (r->silent || !m->reply)
        return;
    char buf[300];
    ASSERT(m->data.len <= 256);
    memcpy(buf, "re:", 3);
    memcpy(buf + 3, m->data.p, m->data.len);
    ASSERT_EQ(publish(r->c, m->reply, buf, m->data.len + 3, NULL), 0);
}

/* ---- tests ---- */

TEST(pubsub_round_trip)
{
    setup();
    int port = free_port();
    server_start(port);
    struct conn_log log = { 0 };
    struct natsc *c = connected_client(port, "_INBOX.t.gw.0", &log);
    struct inbox in = { 0 };
    subscribe(c, "nh.gw.t.0", on_msg, &in);
    /* NATS.c sends the SUB before the PUB on the same connection, so no flush is needed */
    static const char bin[] = { 'a', 0, 'b', (char)0xff };
    ASSERT_EQ(publish(c, "nh.gw.t.0", bin, sizeof(bin), "reply.here"), 0);
    ASSERT_EQ(publish(c, "nh.gw.t.0", "", 0, NULL), 0);
    ASSERT_EQ(publish(c, "other.subject", "x", 1, NULL), 0);
    ASSERT(RUN_UNTIL(in.n == 2, 5000));
    ASSERT_STR_EQ(in.subj[0], "nh.gw.t.0");
    ASSERT(in.has_reply[0]);
    ASSERT_STR_EQ(in.reply[0], "reply.here");
    ASSERT_MEM_EQ(in.data[0], in.len[0], bin, sizeof(bin));
    ASSERT(!in.has_reply[1]);
    ASSERT_EQ(in.len[1], 0);
    run_for(100);
    ASSERT_EQ(in.total, 2); /* not the other subject */
    ASSERT_EQ(natsc_stats(c)->published, 3);
    natsc_free(c);
}

TEST(pubsub_many_in_order_across_loop_turns)
{
    setup();
    int port = free_port();
    server_start(port);
    struct conn_log log = { 0 };
    struct natsc *c = connected_client(port, "_INBOX.t.gw.0", &log);
    struct natsc *p = connected_client(port, "_INBOX.t.gw.1", &(struct conn_log){ 0 });
    struct inbox in = { 0 };
    subscribe(c, "bulk.>", on_msg, &in);
    run_for(100); /* the SUB reaches the server before p publishes */
    const int N = 3000; /* several drain batches */
    for (int i = 0; i < N; i++) {
        char b[32];
        int n = snprintf(b, sizeof(b), "seq %d", i);
        ASSERT_EQ(publish(p, "bulk.x", b, (size_t)n, NULL), 0);
    }
    ASSERT(RUN_UNTIL(in.total == N, 10000));
    ASSERT(in.in_order);
    ASSERT_EQ(in.last_seq, N - 1);
    ASSERT_EQ(natsc_stats(c)->dropped_inbound, 0);
    natsc_free(p);
    natsc_free(c);
}

static int total_calls(const struct result *r, int n)
{
    int t = 0;
    for (int i = 0; i < n; i++)
        t += r[i].calls;
    return t;
}

TEST(request_reply)
{
    setup();
    int port = free_port();
    server_start(port);
    struct natsc *a = connected_client(port, "_INBOX.t.gw.0", &(struct conn_log){ 0 });
    struct responder rs = { 0 };
    rs.c = connected_client(port, "_INBOX.t.plat.0", &(struct conn_log){ 0 });
    subscribe(rs.c, "nh.link.auth", on_request, &rs);
    run_for(100);

    struct result r = { 0 };
    uint64_t id = request(a, "nh.link.auth", "hello", 5, 5000, on_reply, &r);
    ASSERT_EQ(r.calls, 0);
    ASSERT_EQ(natsc_pending(a), 1);
    ASSERT(RUN_UNTIL(r.calls == 1, 5000));
    ASSERT_EQ(r.r, NATSC_OK);
    ASSERT_MEM_EQ(r.data, r.len, "re:hello", 8);
    ASSERT_EQ(natsc_pending(a), 0);
    run_for(50);
    ASSERT_EQ(r.calls, 1); /* exactly once */

    /* many concurrent requests: each reply reaches its own callback */
    enum { N = 500 };
    static struct result rr[N];
    uint64_t ids[N];
    for (int i = 0; i < N; i++) {
        char b[16];
        int n = snprintf(b, sizeof(b), "%d", i);
        ids[i] = request(a, "nh.link.auth", b, (size_t)n, 10000, on_reply, &rr[i]);
        ASSERT(ids[i] != id && (i == 0 || ids[i] != ids[i - 1]));
    }
    ASSERT_EQ(natsc_pending(a), N);
    ASSERT(RUN_UNTIL(total_calls(rr, N) == N, 10000));
    for (int i = 0; i < N; i++) {
        char want[24];
        int n = snprintf(want, sizeof(want), "re:%d", i);
        ASSERT_EQ(rr[i].calls, 1);
        ASSERT_EQ(rr[i].r, NATSC_OK);
        ASSERT_MEM_EQ(rr[i].data, rr[i].len, want, (size_t)n);
    }
    const struct natsc_stats *st = natsc_stats(a);
    ASSERT_EQ(st->requests, N + 1);
    ASSERT_EQ(st->replies, N + 1);
    ASSERT_EQ(st->timeouts + st->no_responders + st->down + st->stale_replies, 0);
    ASSERT_EQ(natsc_pending(a), 0);
    natsc_free(rs.c);
    natsc_free(a);
}

TEST(request_payload_limits)
{
    setup();
    int port = free_port();
    server_start(port);
    struct natsc *a = connected_client(port, "_INBOX.t.gw.0", &(struct conn_log){ 0 });
    struct natsc *b = connected_client(port, "_INBOX.t.gw.1", &(struct conn_log){ 0 });
    struct inbox in = { 0 };
    subscribe(b, "big", on_msg, &in);
    run_for(100);
    size_t max = 1 << 20; /* nats-server's default max_payload */
    char *p = calloc(1, max + 1);
    ASSERT_EQ(publish(a, "big", p, max + 1, NULL), -1);
    ASSERT_EQ(natsc_stats(a)->published, 0);
    struct result r = { 0 };
    request(a, "big", p, max + 1, 5000, on_reply, &r);
    ASSERT(RUN_UNTIL(r.calls == 1, 5000));
    ASSERT_EQ(r.r, NATSC_DOWN); /* refused by the client, so never sent */
    /* the largest allowed payload is delivered whole (the inbox keeps only its first 256
     * bytes: check the count and the stats instead) */
    in.n = 64; /* stop copying */
    ASSERT_EQ(publish(a, "big", p, max, NULL), 0);
    ASSERT(RUN_UNTIL(in.total == 1, 5000));
    free(p);
    natsc_free(b);
    natsc_free(a);
}

TEST(timeout_and_mixed_timeouts)
{
    setup();
    int port = free_port();
    server_start(port);
    struct natsc *a = connected_client(port, "_INBOX.t.gw.0", &(struct conn_log){ 0 });
    /* a subscriber that never answers: the server then has a responder, so no 503 */
    struct responder rs = { .silent = true };
    rs.c = connected_client(port, "_INBOX.t.plat.0", &(struct conn_log){ 0 });
    subscribe(rs.c, "slow", on_request, &rs);
    run_for(100);

    /* issued longest first: the single timer must be re-armed for each shorter deadline */
    struct result r1200 = { 0 }, r100 = { 0 }, r400 = { 0 }, r400b = { 0 };
    uint64_t t0 = now_ms();
    request(a, "slow", "x", 1, 1200, on_reply, &r1200);
    request(a, "slow", "x", 1, 100, on_reply, &r100);
    request(a, "slow", "x", 1, 400, on_reply, &r400);
    request(a, "slow", "x", 1, 400, on_reply, &r400b);
    ASSERT(RUN_UNTIL(r1200.calls == 1, 5000));
    run_for(50);
    ASSERT_EQ(rs.seen, 4);
    struct result *all[] = { &r100, &r400, &r400b, &r1200 };
    uint32_t want[] = { 100, 400, 400, 1200 };
    for (size_t i = 0; i < ARRAY_SIZE(all); i++) {
        ASSERT_EQ(all[i]->calls, 1);
        ASSERT_EQ(all[i]->r, NATSC_TIMEOUT);
        ASSERT(all[i]->at_ms - t0 >= want[i]);
        ASSERT(all[i]->at_ms - t0 < want[i] + 700); /* noisy machine: generous, but each
                                                      * fires before the next one is due */
        if (i)
            ASSERT(all[i]->at_ms >= all[i - 1]->at_ms); /* expired in deadline order */
    }
    ASSERT_EQ(natsc_stats(a)->timeouts, 4);
    ASSERT_EQ(natsc_pending(a), 0);
    natsc_free(rs.c);
    natsc_free(a);
}

TEST(no_responders_is_fast)
{
    setup();
    int port = free_port();
    server_start(port);
    struct natsc *a = connected_client(port, "_INBOX.t.gw.0", &(struct conn_log){ 0 });
    struct result r = { 0 };
    uint64_t t0 = now_ms();
    request(a, "nobody.listens", "x", 1, 5000, on_reply, &r);
    ASSERT(RUN_UNTIL(r.calls == 1, 6000));
    ASSERT_EQ(r.r, NATSC_NO_RESPONDERS);
    ASSERT_EQ(r.len, 0);
    ASSERT(r.at_ms - t0 < 1000); /* far below the 5 s timeout */
    ASSERT_EQ(natsc_stats(a)->no_responders, 1);
    ASSERT_EQ(natsc_stats(a)->timeouts, 0);
    /* and a responder arriving later makes the same subject work */
    struct responder rs = { 0 };
    rs.c = connected_client(port, "_INBOX.t.plat.0", &(struct conn_log){ 0 });
    subscribe(rs.c, "nobody.listens", on_request, &rs);
    run_for(100);
    struct result r2 = { 0 };
    request(a, "nobody.listens", "y", 1, 5000, on_reply, &r2);
    ASSERT(RUN_UNTIL(r2.calls == 1, 5000));
    ASSERT_EQ(r2.r, NATSC_OK);
    natsc_free(rs.c);
    natsc_free(a);
}

TEST(down_without_server_then_first_connect)
{
    setup();
    int port = free_port(); /* nothing listens there yet */
    struct conn_log log = { 0 };
    uint64_t t0 = now_ms();
    struct natsc *a = client(url(port), "_INBOX.t.gw.0", &log);
    ASSERT(now_ms() - t0 < 1000); /* a refused first attempt does not block */
    ASSERT(!natsc_connected(a));
    ASSERT_EQ(publish(a, "x", "y", 1, NULL), -1);
    struct result r = { 0 };
    request(a, "nh.link.auth", "x", 1, 5000, on_reply, &r);
    ASSERT_EQ(r.calls, 0); /* never from inside natsc_request */
    event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
    ASSERT_EQ(r.calls, 1); /* on the next loop turn */
    ASSERT_EQ(r.r, NATSC_DOWN);
    ASSERT_EQ(natsc_stats(a)->down, 1);
    ASSERT_EQ(natsc_pending(a), 0);

    /* subscribed before any connection: sent once the server appears */
    struct inbox in = { 0 };
    subscribe(a, "early", on_msg, &in);
    run_for(300);
    ASSERT_EQ(log.n, 0);
    server_start(port);
    ASSERT(RUN_UNTIL(natsc_connected(a), 10000));
    ASSERT_EQ(log.n, 1);
    ASSERT(log.states[0]);
    struct natsc *b = connected_client(port, "_INBOX.t.gw.1", &(struct conn_log){ 0 });
    ASSERT_EQ(publish(b, "early", "hi", 2, NULL), 0);
    ASSERT(RUN_UNTIL(in.total == 1, 5000));
    ASSERT_MEM_EQ(in.data[0], in.len[0], "hi", 2);
    natsc_free(b);
    natsc_free(a);
}

TEST(multiple_urls)
{
    setup();
    int port = free_port(), dead = free_port();
    server_start(port);
    char urls[160];
    snprintf(urls, sizeof(urls), "nats://127.0.0.1:%d, nats://127.0.0.1:%d", dead, port);
    struct conn_log log = { 0 };
    struct natsc *a = client(urls, "_INBOX.t.gw.0", &log);
    ASSERT(RUN_UNTIL(natsc_connected(a), 10000));
    natsc_free(a);
}

TEST(bad_options)
{
    setup();
    struct natsc_opts o = { .urls = "nats://127.0.0.1:1", .reply_prefix = "_INBOX.*.x" };
    ASSERT(natsc_new(base, &o) == NULL);
    o.reply_prefix = "_INBOX.x.";
    ASSERT(natsc_new(base, &o) == NULL);
    o.reply_prefix = "a..b";
    ASSERT(natsc_new(base, &o) == NULL);
    o.reply_prefix = "a b";
    ASSERT(natsc_new(base, &o) == NULL);
    char longp[NATSC_MAX_PREFIX + 2];
    memset(longp, 'p', sizeof(longp) - 1);
    longp[NATSC_MAX_PREFIX + 1] = '\0';
    o.reply_prefix = longp; /* max + 1 */
    ASSERT(natsc_new(base, &o) == NULL);
    longp[NATSC_MAX_PREFIX] = '\0'; /* max */
    struct natsc *c = natsc_new(base, &o);
    ASSERT(c);
    natsc_free(c);
    o.reply_prefix = "_INBOX.ok";
    o.urls = "";
    ASSERT(natsc_new(base, &o) == NULL);
}

TEST(reconnect_after_server_restart)
{
    setup();
    int port = free_port();
    server_start(port);
    struct conn_log la = { 0 }, lb = { 0 };
    struct natsc *a = connected_client(port, "_INBOX.t.gw.0", &la);
    struct natsc *b = connected_client(port, "_INBOX.t.gw.1", &lb);
    struct inbox in = { 0 };
    subscribe(a, "inbox.a", on_msg, &in);
    struct responder rs = { .c = a };
    subscribe(a, "svc", on_request, &rs);
    run_for(100);
    ASSERT_EQ(publish(b, "inbox.a", "1", 1, NULL), 0);
    ASSERT(RUN_UNTIL(in.total == 1, 5000));

    server_kill();
    ASSERT(RUN_UNTIL(la.n == 2 && lb.n == 2, 10000));
    ASSERT(!la.states[1] && !natsc_connected(a));
    ASSERT_EQ(publish(a, "inbox.a", "x", 1, NULL), -1);
    struct result rd = { 0 };
    request(b, "svc", "x", 1, 5000, on_reply, &rd);
    ASSERT(RUN_UNTIL(rd.calls == 1, 5000));
    ASSERT_EQ(rd.r, NATSC_DOWN);

    server_start(port);
    ASSERT(RUN_UNTIL(la.n == 3 && lb.n == 3, 10000));
    ASSERT(la.states[2] && natsc_connected(a) && natsc_connected(b));
    ASSERT(natsc_stats(a)->reconnects >= 1);
    /* subscriptions were re-established by the client (wait for them to reach the server) */
    struct result r = { 0 };
    ASSERT(RUN_UNTIL(({
                         if (r.calls == 1 && r.r != NATSC_OK) /* resubscribe not there yet */
                             r.calls = 0;
                         if (r.calls == 0 && !natsc_pending(b))
                             request(b, "svc", "again", 5, 2000, on_reply, &r);
                         r.calls == 1;
                     }),
                     10000));
    ASSERT_EQ(r.r, NATSC_OK);
    ASSERT_MEM_EQ(r.data, r.len, "re:again", 8);
    ASSERT_EQ(publish(b, "inbox.a", "2", 1, NULL), 0);
    ASSERT(RUN_UNTIL(in.total == 2, 5000));
    ASSERT_MEM_EQ(in.data[1], in.len[1], "2", 1);
    ASSERT_EQ(la.n, 3);
    natsc_free(b);
    natsc_free(a);
}

TEST(flap_between_loop_turns_reported_as_down_then_up)
{
    setup();
    int port = free_port();
    server_start(port);
    struct conn_log la = { 0 };
    struct natsc *a = connected_client(port, "_INBOX.t.gw.0", &la);
    struct inbox in = { 0 };
    subscribe(a, "inbox.a", on_msg, &in);
    run_for(100);
    /* the loop does not run while the server goes away and comes back */
    server_kill();
    server_start(port);
    sleep_ms(1500); /* reconnect backoff is at most 200 ms ± 25 % in these tests */
    event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
    ASSERT_EQ(la.n, 3); /* true (first connect), false, true: on_conn checks the alternation */
    ASSERT(natsc_connected(a));
    ASSERT_EQ(natsc_stats(a)->reconnects, 1);
    /* and the subscription is back */
    struct natsc *b = connected_client(port, "_INBOX.t.gw.1", &(struct conn_log){ 0 });
    ASSERT_EQ(publish(b, "inbox.a", "x", 1, NULL), 0);
    ASSERT(RUN_UNTIL(in.total == 1, 5000));
    natsc_free(b);
    natsc_free(a);
}

/* Waits, without running the loop, until c's mailbox holds n messages. */
static void wait_queued(struct natsc *c, uint32_t n)
{
    uint64_t until = now_ms() + 5000;
    while (natsc_inbound_queued(c) < n) {
        ASSERT(now_ms() < until);
        sleep_ms(5);
    }
    ASSERT_EQ(natsc_inbound_queued(c), n);
}

TEST(unsubscribe_drops_queued_messages)
{
    setup();
    int port = free_port();
    server_start(port);
    struct natsc *a = connected_client(port, "_INBOX.t.gw.0", &(struct conn_log){ 0 });
    struct natsc *b = connected_client(port, "_INBOX.t.gw.1", &(struct conn_log){ 0 });
    struct inbox gone = { 0 }, kept = { 0 };
    struct natsc_sub *s1 = subscribe(a, "q", on_msg, &gone);
    subscribe(a, "q", on_msg, &kept);
    run_for(100);
    for (int i = 0; i < 10; i++)
        ASSERT_EQ(publish(b, "q", "m", 1, NULL), 0);
    wait_queued(a, 20); /* both subscriptions' copies wait in the mailbox */
    in_api = true;
    natsc_unsubscribe(s1);
    in_api = false;
    ASSERT(RUN_UNTIL(kept.total == 10, 5000));
    run_for(50);
    ASSERT_EQ(gone.total, 0);
    ASSERT_EQ(natsc_inbound_queued(a), 0);
    natsc_free(b);
    natsc_free(a);
}

struct self_unsub {
    struct natsc_sub *s;
    int calls;
};

static void on_msg_unsub_self(void *arg, const struct natsc_msg *m)
{
    ON_LOOP();
    (void)m;
    struct self_unsub *u = arg;
    u->calls++;
    natsc_unsubscribe(u->s);
}

TEST(unsubscribe_from_own_callback)
{
    setup();
    int port = free_port();
    server_start(port);
    struct natsc *a = connected_client(port, "_INBOX.t.gw.0", &(struct conn_log){ 0 });
    struct self_unsub u = { 0 };
    struct inbox other = { 0 };
    u.s = subscribe(a, "q", on_msg_unsub_self, &u);
    subscribe(a, "q", on_msg, &other);
    run_for(100);
    for (int i = 0; i < 5; i++)
        ASSERT_EQ(publish(a, "q", "m", 1, NULL), 0);
    wait_queued(a, 10);
    ASSERT(RUN_UNTIL(other.total == 5, 5000));
    ASSERT_EQ(u.calls, 1);
    natsc_free(a);
}

TEST(cancel)
{
    setup();
    int port = free_port();
    server_start(port);
    struct natsc *a = connected_client(port, "_INBOX.t.gw.0", &(struct conn_log){ 0 });
    struct responder rs = { 0 };
    rs.c = connected_client(port, "_INBOX.t.plat.0", &(struct conn_log){ 0 });
    subscribe(rs.c, "svc", on_request, &rs);
    run_for(100);

    /* cancelled with its reply on the way: the reply is stale */
    struct result r = { 0 }, keep = { 0 };
    uint64_t id = request(a, "svc", "x", 1, 300, on_reply, &r);
    request(a, "svc", "y", 1, 5000, on_reply, &keep);
    natsc_cancel(a, id);
    natsc_cancel(a, id); /* twice: ignored */
    natsc_cancel(a, 0);
    natsc_cancel(a, 987654321);
    ASSERT_EQ(natsc_pending(a), 1);
    ASSERT(RUN_UNTIL(keep.calls == 1 && natsc_stats(a)->stale_replies == 1, 5000));
    ASSERT_EQ(keep.r, NATSC_OK);
    run_for(400); /* past r's timeout */
    ASSERT_EQ(r.calls, 0);
    ASSERT_EQ(rs.seen, 2);

    /* cancelled before its timeout, nobody answering: no timeout callback */
    rs.silent = true;
    struct result t = { 0 };
    id = request(a, "svc", "x", 1, 50, on_reply, &t);
    natsc_cancel(a, id);
    run_for(200);
    ASSERT_EQ(t.calls, 0);
    ASSERT_EQ(natsc_stats(a)->timeouts, 0);

    /* cancelled while its NATSC_DOWN report is queued */
    natsc_free(rs.c);
    server_kill();
    ASSERT(RUN_UNTIL(!natsc_connected(a), 10000));
    struct result d = { 0 }, d2 = { 0 };
    id = request(a, "svc", "x", 1, 5000, on_reply, &d);
    request(a, "svc", "x", 1, 5000, on_reply, &d2);
    natsc_cancel(a, id);
    ASSERT(RUN_UNTIL(d2.calls == 1, 1000));
    ASSERT_EQ(d2.r, NATSC_DOWN);
    run_for(50);
    ASSERT_EQ(d.calls, 0);
    ASSERT_EQ(natsc_pending(a), 0);
    natsc_free(a);
}

TEST(max_pending_overflow_counted)
{
    setup();
    int port = free_port();
    server_start(port);
    struct natsc_opts o = { .urls = url(port), .reply_prefix = "_INBOX.t.gw.0", .max_pending = 10 };
    struct natsc *a = natsc_new(base, &o);
    ASSERT(a);
    struct natsc *b = connected_client(port, "_INBOX.t.gw.1", &(struct conn_log){ 0 });
    ASSERT(RUN_UNTIL(natsc_connected(a), 10000));
    struct inbox in = { 0 };
    subscribe(a, "q", on_msg, &in);
    run_for(100);
    for (int i = 0; i < 50; i++) {
        char m[16];
        int n = snprintf(m, sizeof(m), "seq %d", i);
        ASSERT_EQ(publish(b, "q", m, (size_t)n, NULL), 0);
    }
    wait_queued(a, 10); /* the limit: exactly 10 wait, the rest are dropped */
    ASSERT(RUN_UNTIL(natsc_stats(a)->dropped_inbound == 40, 5000));
    ASSERT_EQ(in.total, 10);
    ASSERT_EQ(in.last_seq, 9); /* the first ones were kept */
    /* room again once drained */
    ASSERT_EQ(publish(b, "q", "seq 10", 6, NULL), 0);
    ASSERT(RUN_UNTIL(in.total == 11, 5000));
    natsc_free(b);
    natsc_free(a);
}

TEST(max_pending_bytes_overflow_counted)
{
    setup();
    int port = free_port();
    server_start(port);
    /* each message costs its subject (1) + payload (99) = 100 bytes: 3 fit in 350 */
    struct natsc_opts o = { .urls = url(port), .reply_prefix = "_INBOX.t.gw.0",
                            .max_pending_bytes = 350 };
    struct natsc *a = natsc_new(base, &o);
    ASSERT(a);
    struct natsc *b = connected_client(port, "_INBOX.t.gw.1", &(struct conn_log){ 0 });
    ASSERT(RUN_UNTIL(natsc_connected(a), 10000));
    struct inbox in = { 0 };
    subscribe(a, "q", on_msg, &in);
    run_for(100);
    char m[99];
    memset(m, 'm', sizeof(m));
    for (int i = 0; i < 5; i++)
        ASSERT_EQ(publish(b, "q", m, sizeof(m), NULL), 0);
    wait_queued(a, 3);
    ASSERT(RUN_UNTIL(natsc_stats(a)->dropped_inbound == 2, 5000));
    ASSERT_EQ(in.total, 3);
    natsc_free(b);
    natsc_free(a);
}

struct free_in_cb {
    struct natsc *c;
    int calls;
};

static void on_msg_free(void *arg, const struct natsc_msg *m)
{
    ON_LOOP();
    (void)m;
    struct free_in_cb *f = arg;
    f->calls++;
    natsc_free(f->c);
}

TEST(free_inside_callback_and_with_pending)
{
    setup();
    int port = free_port();
    server_start(port);
    struct natsc *a = connected_client(port, "_INBOX.t.gw.0", &(struct conn_log){ 0 });
    struct natsc *b = connected_client(port, "_INBOX.t.gw.1", &(struct conn_log){ 0 });
    struct free_in_cb f = { .c = a };
    subscribe(a, "q", on_msg_free, &f);
    /* requests pending at free time never report */
    struct result r1 = { 0 }, r2 = { 0 };
    request(a, "nobody", "x", 1, 100, on_reply, &r1);
    struct responder rs = { .c = b, .silent = true };
    subscribe(b, "silent", on_request, &rs);
    run_for(100);
    request(a, "silent", "x", 1, 100, on_reply, &r2);
    for (int i = 0; i < 5; i++)
        ASSERT_EQ(publish(b, "q", "m", 1, NULL), 0);
    ASSERT(RUN_UNTIL(f.calls == 1, 5000));
    run_for(300);
    ASSERT_EQ(f.calls, 1);
    /* r1 may have had its 503 delivered before the messages; r2 never answers */
    ASSERT(r1.calls <= 1);
    ASSERT_EQ(r2.calls, 0);

    /* free with a NATSC_DOWN report queued */
    struct natsc *c = client(url(free_port()), "_INBOX.t.gw.2", &(struct conn_log){ 0 });
    struct result d = { 0 };
    request(c, "x", "y", 1, 1000, on_reply, &d);
    natsc_free(c);
    run_for(50);
    ASSERT_EQ(d.calls, 0);
    natsc_free(b);
}

struct free_in_reply {
    struct natsc *c;
    int calls;
};

static void on_reply_free(void *arg, enum natsc_result r, struct span data)
{
    ON_LOOP();
    (void)data;
    struct free_in_reply *f = arg;
    ASSERT_EQ(r, NATSC_TIMEOUT);
    f->calls++;
    natsc_free(f->c);
}

TEST(free_inside_timeout_callback)
{
    setup();
    int port = free_port();
    server_start(port);
    struct natsc *a = connected_client(port, "_INBOX.t.gw.0", &(struct conn_log){ 0 });
    struct responder rs = { .silent = true };
    rs.c = connected_client(port, "_INBOX.t.plat.0", &(struct conn_log){ 0 });
    subscribe(rs.c, "silent", on_request, &rs);
    run_for(100);
    struct free_in_reply f = { .c = a };
    for (int i = 0; i < 3; i++) /* same deadline: all due in one timer run */
        request(a, "silent", "x", 1, 50, on_reply_free, &f);
    ASSERT(RUN_UNTIL(f.calls == 1, 5000));
    run_for(200);
    ASSERT_EQ(f.calls, 1);
    natsc_free(rs.c);
}

static struct natsc *retry_client;

static void on_reply_request_again(void *arg, enum natsc_result r, struct span data)
{
    ON_LOOP();
    (void)data;
    struct result *res = arg;
    res->calls++;
    res->r = r;
    /* retry once from inside the callback (LINK.md §5): answered on a later turn */
    if (res->calls == 1) {
        uint64_t id = natsc_request(retry_client, "x", "y", 1, 1000, on_reply_request_again, res);
        ASSERT(id != 0);
        ASSERT_EQ(res->calls, 1);
    }
}

TEST(down_retry_from_callback)
{
    setup();
    retry_client = client(url(free_port()), "_INBOX.t.gw.0", &(struct conn_log){ 0 });
    struct result r = { 0 };
    request(retry_client, "x", "y", 1, 1000, on_reply_request_again, &r);
    event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
    ASSERT_EQ(r.calls, 1);
    ASSERT(RUN_UNTIL(r.calls == 2, 1000));
    ASSERT_EQ(r.r, NATSC_DOWN);
    ASSERT_EQ(natsc_stats(retry_client)->down, 2);
    natsc_free(retry_client);
}

/* The wire check behind NATSC_NO_RESPONDERS: a plain PUB with our own reply subject (not
 * NATS.c's request API) gets the server's 503 status message on that subject. */
TEST(nats_c_sends_no_responders_status_to_own_inbox)
{
    setup();
    int port = free_port();
    server_start(port);
    natsConnection *nc = NULL;
    ASSERT_EQ(natsConnection_ConnectTo(&nc, url(port)), NATS_OK);
    natsSubscription *sub = NULL;
    ASSERT_EQ(natsConnection_SubscribeSync(&sub, nc, "_INBOX.raw.*"), NATS_OK);
    ASSERT_EQ(natsConnection_PublishRequestString(nc, "nobody", "_INBOX.raw.7", "x"), NATS_OK);
    natsMsg *m = NULL;
    natsStatus s = natsSubscription_NextMsg(&m, sub, 2000);
    /* NATS.c's sync subscriptions turn the status message into NATS_NO_RESPONDERS */
    ASSERT_EQ(s, NATS_NO_RESPONDERS);
    natsMsg_Destroy(m);
    natsSubscription_Destroy(sub);
    natsConnection_Destroy(nc);
}

int main(int argc, char **argv)
{
    const struct test_hooks hooks = { .after_each = teardown, .leak_check = true };
    return test_run_all(argc, argv, &hooks);
}
