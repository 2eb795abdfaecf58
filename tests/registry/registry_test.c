/* The session registry against a real redis-server on loopback: the Lua scripts of
 * proto/lp_registry.h through a plain synchronous hiredis connection, and the worker's client
 * (gateway/registry.c) on libevent loops — claims, kicks, compare-and-delete, TTL refresh,
 * outages, restarts with data loss, resync conflicts, reaping and the alive key.
 * Usage: registry-test [name-substring ...]. Each test runs in its own child process with a
 * timeout; ends with the line "N passed, N failed". */
#include "../lib/test.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <hiredis/hiredis.h>

#include "log.h"
#include "lp_registry.h"
#include "registry.h"

/* ---- redis-server ---- */

struct server {
    pid_t pid;
    int port;
};

static int shared_port; /* started by the runner for tests that need no server of their own */

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t n = sizeof(a);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &n) != 0)
        TEST_FAIL("no free port");
    close(fd);
    return ntohs(a.sin_port);
}

static redisContext *sync_connect(int port)
{
    struct timeval tv = { 2, 0 };
    redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);
    if (!c || c->err) {
        if (c)
            redisFree(c);
        return NULL;
    }
    redisSetTimeout(c, tv);
    return c;
}

/* Starts redis-server on `port` and waits until it answers PING. It dies with the process
 * that started it (PR_SET_PDEATHSIG), so a failed test leaves nothing behind. */
static void server_start(struct server *s, int port)
{
    char p[16];
    snprintf(p, sizeof(p), "%d", port);
    s->port = port;
    s->pid = fork();
    if (s->pid < 0)
        TEST_FAIL("fork");
    if (s->pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int nul = open("/dev/null", O_RDWR);
        dup2(nul, 0);
        dup2(nul, 1);
        if (!getenv("REG_TEST_VERBOSE"))
            dup2(nul, 2);
        execlp("redis-server", "redis-server", "--port", p, "--bind", "127.0.0.1", "--save", "",
               "--appendonly", "no", "--dir", "/tmp", (char *)NULL);
        _exit(127);
    }
    uint64_t t0 = now_ms();
    for (;;) {
        redisContext *c = sync_connect(port);
        if (c) {
            redisReply *r = redisCommand(c, "PING");
            bool ok = r && r->type == REDIS_REPLY_STATUS;
            freeReplyObject(r);
            redisFree(c);
            if (ok)
                return;
        }
        if (now_ms() - t0 > 10000)
            TEST_FAIL("redis-server on port %d did not start", port);
        int st;
        if (waitpid(s->pid, &st, WNOHANG) == s->pid)
            TEST_FAIL("redis-server exited (is it installed?)");
        sleep_ms(20);
    }
}

static void server_kill(struct server *s)
{
    if (s->pid > 0) {
        kill(s->pid, SIGKILL);
        waitpid(s->pid, NULL, 0);
        s->pid = 0;
    }
}

/* ---- synchronous Redis helpers (for checking what the registry wrote) ---- */

static redisReply *cmd(redisContext *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(c, fmt, ap);
    va_end(ap);
    if (!r)
        TEST_FAIL("redis command failed: %s", c->errstr);
    return r;
}

static long long cmd_int(redisContext *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(c, fmt, ap);
    va_end(ap);
    if (!r || r->type != REDIS_REPLY_INTEGER)
        TEST_FAIL("expected an integer reply to \"%s\" (type %d: %s)", fmt, r ? r->type : -1,
                  r && r->type == REDIS_REPLY_ERROR ? r->str : "");
    long long v = r->integer;
    freeReplyObject(r);
    return v;
}

/* HGET as a static string; "" when the field or hash is missing. */
static const char *hget(redisContext *c, const char *key, const char *field)
{
    static char buf[8][256];
    static int slot;
    char *out = buf[slot++ % 8];
    redisReply *r = cmd(c, "HGET %s %s", key, field);
    snprintf(out, 256, "%s", r->type == REDIS_REPLY_STRING ? r->str : "");
    freeReplyObject(r);
    return out;
}

static bool exists(redisContext *c, const char *key)
{
    return cmd_int(c, "EXISTS %s", key) == 1;
}

static char *key_dev(const char *prefix, const char *dev)
{
    static char buf[8][LPR_KEY_MAX];
    static int slot;
    char *out = buf[slot++ % 8];
    ASSERT(lpr_key_dev(out, LPR_KEY_MAX, prefix, strlen(prefix), dev, strlen(dev)) > 0);
    return out;
}

static char *key_devs(const char *prefix, const char *gw)
{
    static char buf[8][LPR_KEY_MAX];
    static int slot;
    char *out = buf[slot++ % 8];
    ASSERT(lpr_key_gw_devs(out, LPR_KEY_MAX, prefix, strlen(prefix), gw, strlen(gw)) > 0);
    return out;
}

/* EVAL of a registry script with 2 keys (claim, release, resync). */
static redisReply *eval2(redisContext *c, const char *script, const char *prefix, const char *dev,
                         const char *gw, const char *args)
{
    char cmdline[512];
    snprintf(cmdline, sizeof(cmdline), "EVAL %%s 2 %%s %%s %s", args);
    return cmd(c, cmdline, script, key_dev(prefix, dev), key_devs(prefix, gw));
}

static redisReply *lua_claim(redisContext *c, const char *prefix, const char *dev, const char *gw,
                             const char *w, const char *cref, const char *ttl)
{
    return cmd(c, "EVAL %s 2 %s %s %s %s %s %s %s %s", LPR_SCRIPT_CLAIM, key_dev(prefix, dev),
               key_devs(prefix, gw), gw, w, cref, "1700000000000", "10.0.0.1:5000", ttl);
}

static long long lua_release(redisContext *c, const char *prefix, const char *dev, const char *gw,
                             const char *cref)
{
    redisReply *r = cmd(c, "EVAL %s 2 %s %s %s %s", LPR_SCRIPT_RELEASE, key_dev(prefix, dev),
                        key_devs(prefix, gw), gw, cref);
    ASSERT_EQ(r->type, REDIS_REPLY_INTEGER);
    long long v = r->integer;
    freeReplyObject(r);
    return v;
}

static void assert_holder(const redisReply *r, const char *gw, const char *w, const char *cref)
{
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 3)
        TEST_FAIL("expected {gw, w, cref}, got type %d", r->type);
    ASSERT_STR_EQ(r->element[0]->str, gw);
    ASSERT_STR_EQ(r->element[1]->str, w);
    ASSERT_STR_EQ(r->element[2]->str, cref);
}

/* ---- loops and sessions ---- */

#define RUN_UNTIL(base, cond, ms)                                               \
    do {                                                                        \
        uint64_t t0_ = now_ms();                                                \
        while (!(cond) && now_ms() - t0_ < (uint64_t)(ms))                      \
            event_base_loop((base), EVLOOP_ONCE);                               \
    } while (0)

static void run_for(struct event_base *base, unsigned ms)
{
    uint64_t t0 = now_ms();
    while (now_ms() - t0 < ms)
        event_base_loop(base, EVLOOP_ONCE);
}

struct sess {
    struct reg_entry e;
    char dev[LPR_MAX_DEV + 1];
    char peer[32];
    char fw[40];
    int calls;               /* claim callbacks */
    enum reg_result result;
    bool has_prev;
    char prev_gw[LPR_MAX_GW + 1];
    unsigned prev_worker;
    uint64_t prev_cref;
    int conflicts;
};

static void on_claim(void *arg, enum reg_result r, const struct reg_prev *p)
{
    struct sess *s = arg;
    s->calls++;
    s->result = r;
    s->has_prev = p != NULL;
    if (p) {
        snprintf(s->prev_gw, sizeof(s->prev_gw), "%.*s", (int)p->gw.len, p->gw.p);
        s->prev_worker = p->worker;
        s->prev_cref = p->cref;
    }
}

static int conflicts_seen;
static void on_conflict(void *arg, struct reg_entry *e)
{
    (void)arg;
    struct sess *s = (struct sess *)e;
    s->conflicts++;
    conflicts_seen++;
}

static void sess_init(struct sess *s, const char *dev, uint64_t cref)
{
    memset(s, 0, sizeof(*s));
    snprintf(s->dev, sizeof(s->dev), "%s", dev);
    snprintf(s->peer, sizeof(s->peer), "127.0.0.1:%u", (unsigned)(40000 + cref % 20000));
    s->e.dev = (struct span){ s->dev, strlen(s->dev) };
    s->e.peer = (struct span){ s->peer, strlen(s->peer) };
    s->e.cref = cref;
    s->e.at_ms = 1700000000000ull + cref;
}

static struct reg *new_reg(struct event_base *base, int port, const char *prefix, const char *gw,
                           unsigned worker, uint32_t ttl_ms)
{
    struct reg_opts o = {
        .host = "127.0.0.1",
        .port = port,
        .prefix = prefix,
        .gateway_id = gw,
        .worker = worker,
        .ttl_ms = ttl_ms,
        .timeout_ms = 1000,
    };
    struct reg *r = reg_new(base, &o);
    ASSERT(r != NULL);
    reg_set_conflict_cb(r, on_conflict, NULL);
    return r;
}

/* ---- lp_registry: names and keys ---- */

TEST(keys_and_names)
{
    char out[LPR_KEY_MAX];
    ASSERT_EQ(lpr_key_dev(out, sizeof(out), "nh", 2, "dev-1", 5), 12);
    ASSERT_STR_EQ(out, "nh:dev:dev-1");
    ASSERT_EQ(lpr_key_gw_devs(out, sizeof(out), "nh", 2, "gw-a", 4), 15);
    ASSERT_STR_EQ(out, "nh:gw:gw-a:devs");
    ASSERT_EQ(lpr_key_gw_alive(out, sizeof(out), "nh", 2, "gw-a", 4), 16);
    ASSERT_STR_EQ(out, "nh:gw:gw-a:alive");
    ASSERT_EQ(lpr_key_gws(out, sizeof(out), "nh", 2), 6);
    ASSERT_STR_EQ(out, "nh:gws");
    /* exact fit (key + NUL) and one byte short */
    char small[13];
    ASSERT_EQ(lpr_key_dev(small, 13, "nh", 2, "dev-1", 5), 12);
    ASSERT_STR_EQ(small, "nh:dev:dev-1");
    ASSERT_EQ(lpr_key_dev(small, 12, "nh", 2, "dev-1", 5), 0);
    ASSERT_EQ(small[0], '\0');
    /* the longest valid names fit LPR_KEY_MAX */
    char p[LPR_MAX_PREFIX + 2], g[LPR_MAX_GW + 2], d[LPR_MAX_DEV + 2];
    memset(p, 'p', sizeof(p));
    memset(g, 'g', sizeof(g));
    memset(d, 'd', sizeof(d));
    ASSERT(lpr_key_dev(out, sizeof(out), p, LPR_MAX_PREFIX, d, LPR_MAX_DEV) > 0);
    ASSERT(lpr_key_gw_alive(out, sizeof(out), p, LPR_MAX_PREFIX, g, LPR_MAX_GW) > 0);
    ASSERT(lpr_key_gw_devs(out, sizeof(out), p, LPR_MAX_PREFIX, g, LPR_MAX_GW) > 0);
    /* limits at max and max+1 */
    ASSERT(lpr_prefix_valid(p, LPR_MAX_PREFIX));
    ASSERT(!lpr_prefix_valid(p, LPR_MAX_PREFIX + 1));
    ASSERT(!lpr_prefix_valid(p, 0));
    ASSERT(!lpr_prefix_valid("a:b", 3));
    ASSERT(lpr_gw_valid(g, LPR_MAX_GW));
    ASSERT(!lpr_gw_valid(g, LPR_MAX_GW + 1));
    ASSERT(lpr_gw_valid("pod-7_x", 7));
    ASSERT(!lpr_gw_valid("pod.7", 5));
    ASSERT(lpr_dev_valid(d, LPR_MAX_DEV));
    ASSERT(!lpr_dev_valid(d, LPR_MAX_DEV + 1));
    ASSERT(!lpr_dev_valid(d, 0));
    ASSERT(lpr_dev_valid("serial:ABC-1", 12));
    ASSERT(lpr_dev_valid("caf\xc3\xa9", 5));
    ASSERT(lpr_dev_valid("\xf0\x9f\x98\x80", 4));
    const char *bad[] = { "a.b", "a*", "a>", "a b", "a\tb", "a\x7f", "a\x01",
                          "\xc0\x80",          /* overlong NUL */
                          "\xed\xa0\x80",      /* surrogate */
                          "\xf4\x90\x80\x80",  /* above U+10FFFF */
                          "\xe2\x82",          /* truncated */
                          "\xc2\xa0" };        /* NBSP */
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
        if (lpr_dev_valid(bad[i], strlen(bad[i])))
            TEST_FAIL("device id %zu accepted", i);
    ASSERT_STR_EQ(lpr_script_name(LPR_REAP), "reap");
    ASSERT(lpr_script_text(LPR_SCRIPT_COUNT) == NULL);
    ASSERT(strcmp(lpr_script_text(LPR_CLAIM), LPR_SCRIPT_CLAIM) == 0);
}

/* ---- the scripts, through EVAL ---- */

TEST(lua_claim_release)
{
    redisContext *c = sync_connect(shared_port);
    ASSERT(c);
    const char *P = "lcr";
    redisReply *r = lua_claim(c, P, "d1", "gwA", "0", "11", "60000");
    ASSERT_EQ(r->type, REDIS_REPLY_NIL);
    freeReplyObject(r);
    const char *k = key_dev(P, "d1");
    ASSERT_STR_EQ(hget(c, k, "gw"), "gwA");
    ASSERT_STR_EQ(hget(c, k, "w"), "0");
    ASSERT_STR_EQ(hget(c, k, "cref"), "11");
    ASSERT_STR_EQ(hget(c, k, "at"), "1700000000000");
    ASSERT_STR_EQ(hget(c, k, "peer"), "10.0.0.1:5000");
    long long ttl = cmd_int(c, "PTTL %s", k);
    ASSERT(ttl > 50000 && ttl <= 60000);
    ASSERT_EQ(cmd_int(c, "SISMEMBER %s d1", key_devs(P, "gwA")), 1);
    freeReplyObject(cmd(c, "HSET %s fw abc", k));

    /* a second claim returns the first holder and replaces the whole hash */
    r = lua_claim(c, P, "d1", "gwB", "3", "22", "60000");
    assert_holder(r, "gwA", "0", "11");
    freeReplyObject(r);
    ASSERT_STR_EQ(hget(c, k, "gw"), "gwB");
    ASSERT_STR_EQ(hget(c, k, "cref"), "22");
    ASSERT_STR_EQ(hget(c, k, "fw"), "");

    /* the old holder's release is a no-op on the hash, but leaves its own set */
    ASSERT_EQ(lua_release(c, P, "d1", "gwA", "11"), 0);
    ASSERT_STR_EQ(hget(c, k, "gw"), "gwB");
    ASSERT_EQ(cmd_int(c, "SISMEMBER %s d1", key_devs(P, "gwA")), 0);
    ASSERT_EQ(cmd_int(c, "SISMEMBER %s d1", key_devs(P, "gwB")), 1);
    /* another connection of the same gateway: hash and set stay */
    ASSERT_EQ(lua_release(c, P, "d1", "gwB", "23"), 0);
    ASSERT(exists(c, k));
    ASSERT_EQ(cmd_int(c, "SISMEMBER %s d1", key_devs(P, "gwB")), 1);
    /* the holder itself */
    ASSERT_EQ(lua_release(c, P, "d1", "gwB", "22"), 1);
    ASSERT(!exists(c, k));
    ASSERT_EQ(cmd_int(c, "SISMEMBER %s d1", key_devs(P, "gwB")), 0);
    ASSERT_EQ(lua_release(c, P, "d1", "gwB", "22"), 0);

    /* re-claim by the same connection reports itself as the previous holder */
    freeReplyObject(lua_claim(c, P, "d2", "gwA", "1", "5", "60000"));
    r = lua_claim(c, P, "d2", "gwA", "1", "5", "60000");
    assert_holder(r, "gwA", "1", "5");
    freeReplyObject(r);

    /* a device id containing ":dev:" is still its own key and set member */
    freeReplyObject(lua_claim(c, P, "x:dev:y", "gwA", "1", "6", "60000"));
    ASSERT_EQ(cmd_int(c, "SISMEMBER %s x:dev:y", key_devs(P, "gwA")), 1);
    ASSERT_EQ(lua_release(c, P, "x:dev:y", "gwA", "6"), 1);
    ASSERT_EQ(cmd_int(c, "SISMEMBER %s x:dev:y", key_devs(P, "gwA")), 0);

    /* a key that is not a device key is refused */
    r = cmd(c, "EVAL %s 2 %s %s gw 0 1 2 peer 1000", LPR_SCRIPT_CLAIM, "lcr:nope",
            key_devs(P, "gw"));
    ASSERT_EQ(r->type, REDIS_REPLY_ERROR);
    ASSERT(strstr(r->str, "not a device key"));
    freeReplyObject(r);
    ASSERT(!exists(c, "lcr:nope"));
    redisFree(c);
}

TEST(lua_resync_setfw)
{
    redisContext *c = sync_connect(shared_port);
    ASSERT(c);
    const char *P = "lrs";
    const char *k = key_dev(P, "d1");
    /* absent: written in full */
    redisReply *r = eval2(c, LPR_SCRIPT_RESYNC, P, "d1", "gwA",
                          "gwA 2 7 1700000000001 1.2.3.4:5 30000 fw-1");
    ASSERT_EQ(r->type, REDIS_REPLY_NIL);
    freeReplyObject(r);
    ASSERT_STR_EQ(hget(c, k, "gw"), "gwA");
    ASSERT_STR_EQ(hget(c, k, "w"), "2");
    ASSERT_STR_EQ(hget(c, k, "cref"), "7");
    ASSERT_STR_EQ(hget(c, k, "fw"), "fw-1");
    long long ttl = cmd_int(c, "PTTL %s", k);
    ASSERT(ttl > 20000 && ttl <= 30000);
    ASSERT_EQ(cmd_int(c, "SISMEMBER %s d1", key_devs(P, "gwA")), 1);
    /* ours: rewritten, an empty fw removes the field */
    r = cmd(c, "EVAL %s 2 %s %s gwA 2 7 1700000000001 1.2.3.4:5 30000 %s", LPR_SCRIPT_RESYNC, k,
            key_devs(P, "gwA"), "");
    ASSERT_EQ(r->type, REDIS_REPLY_NIL);
    freeReplyObject(r);
    ASSERT_EQ(cmd_int(c, "HEXISTS %s fw", k), 0);
    /* another connection (same gateway, other cref) holds it: nothing written, holder returned */
    freeReplyObject(lua_claim(c, P, "d1", "gwA", "3", "8", "60000"));
    r = eval2(c, LPR_SCRIPT_RESYNC, P, "d1", "gwA", "gwA 2 7 1700000000001 1.2.3.4:5 30000 fw-1");
    assert_holder(r, "gwA", "3", "8");
    freeReplyObject(r);
    ASSERT_STR_EQ(hget(c, k, "cref"), "8");
    ASSERT_STR_EQ(hget(c, k, "fw"), "");
    ttl = cmd_int(c, "PTTL %s", k);
    ASSERT(ttl > 50000);

    /* setfw only on one's own entry */
    r = cmd(c, "EVAL %s 1 %s gwA 7 fw-x", LPR_SCRIPT_SETFW, k);
    ASSERT_EQ(r->integer, 0);
    freeReplyObject(r);
    ASSERT_EQ(cmd_int(c, "HEXISTS %s fw", k), 0);
    r = cmd(c, "EVAL %s 1 %s gwA 8 fw-y", LPR_SCRIPT_SETFW, k);
    ASSERT_EQ(r->integer, 1);
    freeReplyObject(r);
    ASSERT_STR_EQ(hget(c, k, "fw"), "fw-y");
    r = cmd(c, "EVAL %s 1 %s gwA 8 %s", LPR_SCRIPT_SETFW, k, "");
    ASSERT_EQ(r->integer, 1);
    freeReplyObject(r);
    ASSERT_EQ(cmd_int(c, "HEXISTS %s fw", k), 0);
    /* on a missing hash it creates nothing */
    r = cmd(c, "EVAL %s 1 %s gwA 8 fw-z", LPR_SCRIPT_SETFW, key_dev(P, "nobody"));
    ASSERT_EQ(r->integer, 0);
    freeReplyObject(r);
    ASSERT(!exists(c, key_dev(P, "nobody")));
    redisFree(c);
}

static void reap(redisContext *c, const char *P, const char *gw, const char *max, long long *n,
                 long long *left)
{
    char devs[LPR_KEY_MAX], gws[LPR_KEY_MAX], alive[LPR_KEY_MAX];
    lpr_key_gw_devs(devs, sizeof(devs), P, strlen(P), gw, strlen(gw));
    lpr_key_gws(gws, sizeof(gws), P, strlen(P));
    lpr_key_gw_alive(alive, sizeof(alive), P, strlen(P), gw, strlen(gw));
    redisReply *r = cmd(c, "EVAL %s 3 %s %s %s %s %s", LPR_SCRIPT_REAP, devs, gws, alive, gw, max);
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2)
        TEST_FAIL("reap: type %d %s", r->type, r->type == REDIS_REPLY_ERROR ? r->str : "");
    *n = r->element[0]->integer;
    *left = r->element[1]->integer;
    freeReplyObject(r);
}

TEST(lua_reap)
{
    redisContext *c = sync_connect(shared_port);
    ASSERT(c);
    const char *P = "lrp";
    freeReplyObject(lua_claim(c, P, "d1", "gwA", "0", "1", "60000"));
    freeReplyObject(lua_claim(c, P, "d2", "gwA", "1", "2", "60000"));
    freeReplyObject(lua_claim(c, P, "d3", "gwA", "0", "3", "60000"));
    /* d2 moved to gwB, whose claim gwA never released */
    freeReplyObject(lua_claim(c, P, "d2", "gwB", "0", "9", "60000"));
    freeReplyObject(cmd(c, "SADD lrp:gws gwA gwB"));
    ASSERT_EQ(cmd_int(c, "SCARD %s", key_devs(P, "gwA")), 3);

    /* alive: nothing happens */
    freeReplyObject(cmd(c, "SET lrp:gw:gwA:alive 1 PX 60000"));
    long long n, left;
    reap(c, P, "gwA", "0", &n, &left);
    ASSERT_EQ(n, 0);
    ASSERT_EQ(left, -1);
    ASSERT(exists(c, key_dev(P, "d1")));
    ASSERT_EQ(cmd_int(c, "SCARD %s", key_devs(P, "gwA")), 3);

    freeReplyObject(cmd(c, "DEL lrp:gw:gwA:alive"));
    reap(c, P, "gwA", "0", &n, &left);
    ASSERT_EQ(n, 2);
    ASSERT_EQ(left, 0);
    ASSERT(!exists(c, key_dev(P, "d1")));
    ASSERT(!exists(c, key_dev(P, "d3")));
    ASSERT_STR_EQ(hget(c, key_dev(P, "d2"), "gw"), "gwB");
    ASSERT(!exists(c, key_devs(P, "gwA")));
    ASSERT_EQ(cmd_int(c, "SISMEMBER lrp:gws gwA"), 0);
    ASSERT_EQ(cmd_int(c, "SISMEMBER lrp:gws gwB"), 1);

    /* in chunks: the gateway leaves <p>:gws only with the last one */
    char dev[16];
    for (int i = 0; i < 5; i++) {
        snprintf(dev, sizeof(dev), "c%d", i);
        freeReplyObject(lua_claim(c, P, dev, "gwC", "0", "1", "60000"));
    }
    freeReplyObject(cmd(c, "SADD lrp:gws gwC"));
    long long total = 0;
    int calls = 0;
    do {
        reap(c, P, "gwC", "2", &n, &left);
        total += n;
        calls++;
        ASSERT(n <= 2);
        ASSERT_EQ(cmd_int(c, "SISMEMBER lrp:gws gwC"), left > 0 ? 1 : 0);
    } while (left > 0 && calls < 10);
    ASSERT_EQ(calls, 3);
    ASSERT_EQ(total, 5);
    ASSERT_EQ(cmd_int(c, "EXISTS lrp:dev:c0 lrp:dev:c1 lrp:dev:c2 lrp:dev:c3 lrp:dev:c4"), 0);

    /* the keys are required */
    redisReply *r = cmd(c, "EVAL %s 1 %s gwC", LPR_SCRIPT_REAP, key_devs(P, "gwC"));
    ASSERT_EQ(r->type, REDIS_REPLY_ERROR);
    freeReplyObject(r);
    redisFree(c);
}

/* ---- the client ---- */

TEST(new_rejects_bad_options)
{
    struct event_base *base = event_base_new();
    struct reg_opts o = { .host = "127.0.0.1", .port = shared_port, .prefix = "nh",
                          .gateway_id = "g" };
    struct reg_opts bad = o;
    bad.prefix = "a:b";
    ASSERT(reg_new(base, &bad) == NULL);
    bad = o;
    bad.gateway_id = "g.1";
    ASSERT(reg_new(base, &bad) == NULL);
    bad = o;
    bad.port = 0;
    ASSERT(reg_new(base, &bad) == NULL);
    bad = o;
    bad.host = "";
    ASSERT(reg_new(base, &bad) == NULL);
    struct reg *r = reg_new(base, &o);
    ASSERT(r != NULL);
    RUN_UNTIL(base, reg_connected(r), 3000);
    ASSERT(reg_connected(r));
    reg_free(r);
    event_base_free(base);
}

TEST(claim_without_previous_holder)
{
    struct event_base *base = event_base_new();
    redisContext *c = sync_connect(shared_port);
    struct reg *r = new_reg(base, shared_port, "cnp", "gwA", 2, 60000);
    struct sess s;
    sess_init(&s, "dev-1", 1234567890123456789ull);
    reg_claim(r, &s.e, on_claim, &s);
    ASSERT_EQ(s.calls, 0); /* never from inside reg_claim */
    RUN_UNTIL(base, s.calls > 0, 3000);
    ASSERT_EQ(s.calls, 1);
    ASSERT_EQ(s.result, REG_CLAIMED);
    ASSERT(!s.has_prev);
    const char *k = key_dev("cnp", "dev-1");
    ASSERT_STR_EQ(hget(c, k, "gw"), "gwA");
    ASSERT_STR_EQ(hget(c, k, "w"), "2");
    ASSERT_STR_EQ(hget(c, k, "cref"), "1234567890123456789");
    char at[32];
    snprintf(at, sizeof(at), "%llu", (unsigned long long)s.e.at_ms);
    ASSERT_STR_EQ(hget(c, k, "at"), at);
    ASSERT_STR_EQ(hget(c, k, "peer"), s.peer);
    ASSERT_EQ(cmd_int(c, "SISMEMBER %s dev-1", key_devs("cnp", "gwA")), 1);
    ASSERT_EQ(reg_stats(r)->claims, 1);
    ASSERT_EQ(reg_stats(r)->live, 1);
    run_for(base, 200);
    ASSERT_EQ(s.calls, 1); /* exactly once */

    reg_release(r, &s.e);
    RUN_UNTIL(base, !exists(c, k), 3000);
    ASSERT(!exists(c, k));
    ASSERT_EQ(cmd_int(c, "SISMEMBER %s dev-1", key_devs("cnp", "gwA")), 0);
    ASSERT_EQ(reg_stats(r)->live, 0);
    reg_release(r, &s.e); /* released twice: no-op */
    ASSERT_EQ(reg_stats(r)->releases, 1);
    reg_free(r);
    redisFree(c);
    event_base_free(base);
}

TEST(claim_returns_previous_holder_and_release_compares)
{
    struct event_base *base = event_base_new();
    redisContext *c = sync_connect(shared_port);
    struct reg *a = new_reg(base, shared_port, "cpv", "gwA", 1, 60000);
    struct reg *b = new_reg(base, shared_port, "cpv", "gwB", 3, 60000);
    struct sess sa, sb;
    sess_init(&sa, "dev-1", 100);
    sess_init(&sb, "dev-1", 200);
    reg_claim(a, &sa.e, on_claim, &sa);
    RUN_UNTIL(base, sa.calls > 0, 3000);
    ASSERT_EQ(sa.result, REG_CLAIMED);
    reg_claim(b, &sb.e, on_claim, &sb);
    RUN_UNTIL(base, sb.calls > 0, 3000);
    ASSERT_EQ(sb.calls, 1);
    ASSERT_EQ(sb.result, REG_CLAIMED_PREV);
    ASSERT(sb.has_prev);
    ASSERT_STR_EQ(sb.prev_gw, "gwA");
    ASSERT_EQ(sb.prev_worker, 1);
    ASSERT_EQ(sb.prev_cref, 100);
    ASSERT_EQ(reg_stats(b)->claim_prev, 1);
    const char *k = key_dev("cpv", "dev-1");
    ASSERT_STR_EQ(hget(c, k, "gw"), "gwB");

    /* the kicked holder releases: compare-and-delete leaves the new entry */
    reg_release(a, &sa.e);
    RUN_UNTIL(base, cmd_int(c, "SISMEMBER %s dev-1", key_devs("cpv", "gwA")) == 0, 3000);
    ASSERT_EQ(cmd_int(c, "SISMEMBER %s dev-1", key_devs("cpv", "gwA")), 0);
    run_for(base, 100);
    ASSERT_STR_EQ(hget(c, k, "gw"), "gwB");
    ASSERT_STR_EQ(hget(c, k, "cref"), "200");
    ASSERT_EQ(cmd_int(c, "SISMEMBER %s dev-1", key_devs("cpv", "gwB")), 1);

    /* a newer connection on the same worker: prev is the older one of this gateway */
    struct sess sb2;
    sess_init(&sb2, "dev-1", 201);
    reg_claim(b, &sb2.e, on_claim, &sb2);
    RUN_UNTIL(base, sb2.calls > 0, 3000);
    ASSERT_EQ(sb2.result, REG_CLAIMED_PREV);
    ASSERT_STR_EQ(sb2.prev_gw, "gwB");
    ASSERT_EQ(sb2.prev_cref, 200);
    reg_release(b, &sb.e);
    run_for(base, 200);
    ASSERT_STR_EQ(hget(c, k, "cref"), "201");
    ASSERT_EQ(cmd_int(c, "SISMEMBER %s dev-1", key_devs("cpv", "gwB")), 1);
    reg_free(a);
    reg_free(b);
    redisFree(c);
    event_base_free(base);
}

TEST(simultaneous_claims_leave_one_holder)
{
    redisContext *c = sync_connect(shared_port);
    for (int round = 0; round < 20; round++) {
        struct event_base *base = event_base_new();
        struct reg *a = new_reg(base, shared_port, "sim", "gwA", 0, 60000);
        struct reg *b = new_reg(base, shared_port, "sim", "gwB", 0, 60000);
        RUN_UNTIL(base, reg_connected(a) && reg_connected(b), 3000);
        char dev[16];
        snprintf(dev, sizeof(dev), "dev-%d", round);
        struct sess sa, sb;
        sess_init(&sa, dev, 1000 + (uint64_t)round);
        sess_init(&sb, dev, 2000 + (uint64_t)round);
        /* both in the same loop iteration: two connections, Redis serialises the scripts */
        reg_claim(a, &sa.e, on_claim, &sa);
        reg_claim(b, &sb.e, on_claim, &sb);
        RUN_UNTIL(base, sa.calls && sb.calls, 3000);
        ASSERT_EQ(sa.calls, 1);
        ASSERT_EQ(sb.calls, 1);
        const char *holder = hget(c, key_dev("sim", dev), "gw");
        struct sess *win = strcmp(holder, "gwA") == 0 ? &sa : &sb;
        struct sess *lose = win == &sa ? &sb : &sa;
        ASSERT(strcmp(holder, "gwA") == 0 || strcmp(holder, "gwB") == 0);
        /* the survivor ran second and saw the other; the other saw nobody */
        ASSERT_EQ(win->result, REG_CLAIMED_PREV);
        ASSERT_STR_EQ(win->prev_gw, win == &sa ? "gwB" : "gwA");
        ASSERT_EQ(win->prev_cref, lose->e.cref);
        ASSERT_EQ(lose->result, REG_CLAIMED);
        ASSERT(!lose->has_prev);
        /* the loser is kicked and releases: the winner's entry stays */
        reg_release(win == &sa ? b : a, &lose->e);
        run_for(base, 50);
        ASSERT_STR_EQ(hget(c, key_dev("sim", dev), "gw"), holder);
        reg_free(a);
        reg_free(b);
        event_base_free(base);
    }
    redisFree(c);
}

TEST(release_cancels_pending_claim)
{
    struct event_base *base = event_base_new();
    redisContext *c = sync_connect(shared_port);
    struct reg *r = new_reg(base, shared_port, "rcp", "gwA", 0, 60000);
    RUN_UNTIL(base, reg_connected(r), 3000);
    /* many, so that replies of released and live entries interleave */
    enum { N = 200 };
    static struct sess s[N];
    char dev[16];
    /* each device has a distinct previous holder, so a reply handed to the wrong entry shows */
    char cref[24];
    for (int i = 0; i < N; i++) {
        snprintf(dev, sizeof(dev), "d%d", i);
        snprintf(cref, sizeof(cref), "%d", 1000 + i);
        freeReplyObject(lua_claim(c, "rcp", dev, "gwX", "0", cref, "60000"));
    }
    for (int i = 0; i < N; i++) {
        snprintf(dev, sizeof(dev), "d%d", i);
        sess_init(&s[i], dev, (uint64_t)i + 1);
        reg_claim(r, &s[i].e, on_claim, &s[i]);
    }
    for (int i = 0; i < N; i += 2)
        reg_release(r, &s[i].e);
    /* the memory of a released entry may be reused at once: scribble over it */
    for (int i = 0; i < N; i += 2)
        memset(&s[i].e, 0xA5, sizeof(s[i].e));
    RUN_UNTIL(base, s[N - 1].calls > 0, 3000);
    run_for(base, 200);
    for (int i = 0; i < N; i++) {
        snprintf(dev, sizeof(dev), "d%d", i);
        if (i % 2 == 0) {
            ASSERT_EQ(s[i].calls, 0);
            ASSERT(!exists(c, key_dev("rcp", dev)));
        } else {
            ASSERT_EQ(s[i].calls, 1);
            ASSERT_EQ(s[i].result, REG_CLAIMED_PREV);
            ASSERT_STR_EQ(s[i].prev_gw, "gwX");
            ASSERT_EQ(s[i].prev_cref, 1000 + i);
            ASSERT_STR_EQ(hget(c, key_dev("rcp", dev), "gw"), "gwA");
        }
    }
    ASSERT_EQ(cmd_int(c, "SCARD %s", key_devs("rcp", "gwA")), N / 2);
    ASSERT_EQ(reg_stats(r)->live, N / 2);
    reg_free(r);
    redisFree(c);
    event_base_free(base);
}

TEST(ttl_set_and_refreshed)
{
    struct event_base *base = event_base_new();
    redisContext *c = sync_connect(shared_port);
    /* TTL 3 s: refreshed every second */
    struct reg *r = new_reg(base, shared_port, "ttl", "gwA", 0, 3000);
    struct sess s, s2;
    sess_init(&s, "dev-1", 1);
    sess_init(&s2, "dev-2", 2);
    reg_claim(r, &s.e, on_claim, &s);
    reg_claim(r, &s2.e, on_claim, &s2);
    RUN_UNTIL(base, s.calls && s2.calls, 3000);
    const char *k = key_dev("ttl", "dev-1");
    long long t = cmd_int(c, "PTTL %s", k);
    ASSERT(t > 2000 && t <= 3000);
    /* after 4.5 s (beyond the TTL) the entry is still there, its TTL recently refreshed */
    run_for(base, 4500);
    ASSERT(exists(c, k));
    t = cmd_int(c, "PTTL %s", k);
    ASSERT(t > 1200 && t <= 3000);
    ASSERT(reg_stats(r)->refreshes >= 6);

    /* a hash that disappears behind the registry's back is written again */
    freeReplyObject(cmd(c, "DEL %s", k));
    uint64_t resyncs = reg_stats(r)->resyncs;
    /* the key reappears when Redis runs the resync, the counter when its reply is read */
    RUN_UNTIL(base, exists(c, k) && reg_stats(r)->resyncs > resyncs, 4000);
    ASSERT(exists(c, k));
    ASSERT_STR_EQ(hget(c, k, "cref"), "1");
    ASSERT(reg_stats(r)->resyncs > resyncs);
    t = cmd_int(c, "PTTL %s", k);
    ASSERT(t > 0 && t <= 3000);

    /* released entries are no longer refreshed: they expire (they were deleted anyway) and a
     * stranger's hash under the same key is not extended */
    reg_release(r, &s2.e);
    run_for(base, 100);
    freeReplyObject(lua_claim(c, "ttl", "dev-2", "gwX", "0", "9", "2500"));
    run_for(base, 3000);
    ASSERT(!exists(c, key_dev("ttl", "dev-2")));
    reg_release(r, &s.e);
    reg_free(r);
    redisFree(c);
    event_base_free(base);
}

TEST(set_fw)
{
    struct event_base *base = event_base_new();
    redisContext *c = sync_connect(shared_port);
    struct reg *a = new_reg(base, shared_port, "sfw", "gwA", 0, 60000);
    struct sess s;
    sess_init(&s, "dev-1", 5);
    reg_claim(a, &s.e, on_claim, &s);
    /* set while the claim is in flight: lands after it */
    snprintf(s.fw, sizeof(s.fw), "uuid-1");
    reg_set_fw(a, &s.e, (struct span){ s.fw, strlen(s.fw) });
    RUN_UNTIL(base, s.calls > 0, 3000);
    const char *k = key_dev("sfw", "dev-1");
    RUN_UNTIL(base, strcmp(hget(c, k, "fw"), "uuid-1") == 0, 3000);
    ASSERT_STR_EQ(hget(c, k, "fw"), "uuid-1");
    /* another gateway takes the device: a late fw of the old holder does not touch its entry */
    freeReplyObject(lua_claim(c, "sfw", "dev-1", "gwB", "0", "77", "60000"));
    snprintf(s.fw, sizeof(s.fw), "uuid-2");
    reg_set_fw(a, &s.e, (struct span){ s.fw, strlen(s.fw) });
    run_for(base, 300);
    ASSERT_STR_EQ(hget(c, k, "gw"), "gwB");
    ASSERT_EQ(cmd_int(c, "HEXISTS %s fw", k), 0);
    reg_free(a);
    redisFree(c);
    event_base_free(base);
}

TEST(outage_then_restart_resyncs_and_reports_conflicts)
{
    struct server srv;
    int port = free_port();
    server_start(&srv, port);
    /* two gateways on two loops, so the test decides who talks to Redis when */
    struct event_base *ba = event_base_new(), *bb = event_base_new();
    struct reg *a = new_reg(ba, port, "out", "gwA", 0, 60000);
    enum { N = 4 };
    struct sess s[N + 1];
    char dev[16];
    for (int i = 0; i < N; i++) {
        snprintf(dev, sizeof(dev), "d%d", i);
        sess_init(&s[i], dev, (uint64_t)i + 10);
        reg_claim(a, &s[i].e, on_claim, &s[i]);
    }
    RUN_UNTIL(ba, s[N - 1].calls > 0, 3000);
    for (int i = 0; i < N; i++)
        ASSERT_EQ(s[i].result, REG_CLAIMED);
    snprintf(s[1].fw, sizeof(s[1].fw), "fw-1");
    reg_set_fw(a, &s[1].e, (struct span){ s[1].fw, 4 });

    server_kill(&srv);
    RUN_UNTIL(ba, !reg_connected(a), 3000);
    ASSERT(!reg_connected(a));
    /* a claim while Redis is down: unavailable, answered on the loop */
    sess_init(&s[N], "d-new", 99);
    reg_claim(a, &s[N].e, on_claim, &s[N]);
    ASSERT_EQ(s[N].calls, 0);
    RUN_UNTIL(ba, s[N].calls > 0, 2000);
    ASSERT_EQ(s[N].calls, 1);
    ASSERT_EQ(s[N].result, REG_UNAVAILABLE);
    run_for(ba, 500); /* the outage lasts; sessions are untouched */
    ASSERT_EQ(conflicts_seen, 0);
    ASSERT_EQ(reg_stats(a)->live, N + 1);

    /* Redis comes back empty; gateway B claims d2 before A reconnects */
    server_start(&srv, port);
    redisContext *c = sync_connect(port);
    ASSERT(c);
    ASSERT_EQ(cmd_int(c, "DBSIZE"), 0);
    struct reg *b = new_reg(bb, port, "out", "gwB", 0, 60000);
    struct sess sb;
    sess_init(&sb, "d2", 500);
    reg_claim(b, &sb.e, on_claim, &sb);
    RUN_UNTIL(bb, sb.calls > 0, 3000);
    ASSERT_EQ(sb.result, REG_CLAIMED);
    ASSERT(!sb.has_prev);

    /* A reconnects and resyncs every live entry */
    RUN_UNTIL(ba, s[2].conflicts > 0 && reg_stats(a)->resyncs >= N, 8000);
    ASSERT(reg_connected(a));
    ASSERT_EQ(s[2].conflicts, 1);
    ASSERT_EQ(conflicts_seen, 1);
    ASSERT_EQ(reg_stats(a)->conflicts, 1);
    ASSERT_EQ(reg_stats(a)->resyncs, N);
    ASSERT(reg_stats(a)->reconnects >= 1);
    int expect[] = { 0, 1, 3, N };
    for (size_t i = 0; i < ARRAY_SIZE(expect); i++) {
        const char *k = key_dev("out", s[expect[i]].dev);
        ASSERT_STR_EQ(hget(c, k, "gw"), "gwA");
        char cref[24];
        snprintf(cref, sizeof(cref), "%llu", (unsigned long long)s[expect[i]].e.cref);
        ASSERT_STR_EQ(hget(c, k, "cref"), cref);
        ASSERT_STR_EQ(hget(c, k, "peer"), s[expect[i]].peer);
        long long t = cmd_int(c, "PTTL %s", k);
        ASSERT(t > 50000 && t <= 60000);
    }
    ASSERT_STR_EQ(hget(c, key_dev("out", "d1"), "fw"), "fw-1");
    ASSERT_STR_EQ(hget(c, key_dev("out", "d2"), "gw"), "gwB");
    ASSERT_EQ(cmd_int(c, "SCARD %s", key_devs("out", "gwA")), 4);
    /* the conflicting session is closed by its owner, which releases it: B's entry stays */
    reg_release(a, &s[2].e);
    run_for(ba, 200);
    ASSERT_STR_EQ(hget(c, key_dev("out", "d2"), "gw"), "gwB");
    ASSERT_STR_EQ(hget(c, key_dev("out", "d2"), "cref"), "500");
    run_for(ba, 300);
    ASSERT_EQ(s[2].conflicts, 1);

    reg_free(a);
    reg_free(b);
    redisFree(c);
    server_kill(&srv);
    event_base_free(ba);
    event_base_free(bb);
}

TEST(unresponsive_redis_is_dropped)
{
    struct server srv;
    int port = free_port();
    server_start(&srv, port);
    struct event_base *base = event_base_new();
    struct reg_opts o = { .host = "127.0.0.1", .port = port, .prefix = "hung", .gateway_id = "gwA",
                          .ttl_ms = 3000, .timeout_ms = 500 };
    struct reg *r = reg_new(base, &o);
    ASSERT(r);
    /* Devices keep connecting while Redis hangs: a claim every 50 ms, more often than the
     * timeout, which hiredis restarts with every command sent. */
    enum { N = 10, M = 60 };
    static struct sess s[N + M];
    char dev[16];
    for (int i = 0; i < N + M; i++) {
        snprintf(dev, sizeof(dev), "d%d", i);
        sess_init(&s[i], dev, (uint64_t)i + 1);
    }
    for (int i = 0; i < N; i++)
        reg_claim(r, &s[i].e, on_claim, &s[i]);
    RUN_UNTIL(base, s[N - 1].calls > 0, 3000);
    ASSERT_EQ(s[N - 1].result, REG_CLAIMED);

    kill(srv.pid, SIGSTOP);
    uint64_t t0 = now_ms();
    int m = 0;
    while (s[N].calls == 0 && now_ms() - t0 < 3000) {
        if (m < M && now_ms() - t0 >= (uint64_t)m * 50) {
            reg_claim(r, &s[N + m].e, on_claim, &s[N + m]);
            m++;
        }
        event_base_loop(base, EVLOOP_NONBLOCK);
        sleep_ms(5);
    }
    uint64_t took = now_ms() - t0;
    ASSERT_EQ(s[N].calls, 1);
    ASSERT_EQ(s[N].result, REG_UNAVAILABLE);
    if (took < 400 || took > 1500)
        TEST_FAIL("hung Redis detected after %llu ms (timeout 500 ms)", (unsigned long long)took);
    for (int i = m; i < M; i++)
        reg_claim(r, &s[N + i].e, on_claim, &s[N + i]);
    RUN_UNTIL(base, s[N + M - 1].calls > 0, 3000);
    for (int i = N; i < N + M; i++)
        ASSERT_EQ(s[i].result, REG_UNAVAILABLE);
    run_for(base, 1500);
    ASSERT_EQ(reg_stats(r)->conflicts, 0);
    kill(srv.pid, SIGCONT);
    RUN_UNTIL(base, reg_connected(r) && reg_stats(r)->resyncs >= N + M, 10000);
    ASSERT(reg_connected(r));
    ASSERT_EQ(reg_stats(r)->resyncs, N + M);
    redisContext *c = sync_connect(port);
    ASSERT_STR_EQ(hget(c, key_dev("hung", "d69"), "gw"), "gwA");
    ASSERT_STR_EQ(hget(c, key_dev("hung", "d0"), "gw"), "gwA");
    reg_free(r);
    redisFree(c);
    server_kill(&srv);
    event_base_free(base);
}

/* A listener whose accept queue is full: SYNs are dropped, connects hang. */
static int blackhole(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t n = sizeof(a);
    ASSERT(bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0);
    ASSERT(listen(fd, 0) == 0);
    ASSERT(getsockname(fd, (struct sockaddr *)&a, &n) == 0);
    *port = ntohs(a.sin_port);
    for (int i = 0; i < 4; i++) {
        int c = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        connect(c, (struct sockaddr *)&a, sizeof(a)); /* kept open: they fill the queue */
    }
    sleep_ms(100);
    return fd;
}

TEST(first_connect_times_out_with_claims_queued)
{
    int port;
    int lfd = blackhole(&port);
    struct event_base *base = event_base_new();
    struct reg_opts o = { .host = "127.0.0.1", .port = port, .prefix = "bh", .gateway_id = "gwA",
                          .timeout_ms = 500 };
    struct reg *r = reg_new(base, &o);
    ASSERT(r);
    /* claims keep arriving during the first connect: each is queued behind it */
    enum { M = 40 };
    static struct sess s[M];
    char dev[16];
    uint64_t t0 = now_ms();
    int m = 0;
    while (s[0].calls == 0 && now_ms() - t0 < 3000) {
        if (m < M && now_ms() - t0 >= (uint64_t)m * 50) {
            snprintf(dev, sizeof(dev), "d%d", m);
            sess_init(&s[m], dev, (uint64_t)m + 1);
            reg_claim(r, &s[m].e, on_claim, &s[m]);
            m++;
        }
        event_base_loop(base, EVLOOP_NONBLOCK);
        sleep_ms(5);
    }
    uint64_t took = now_ms() - t0;
    ASSERT_EQ(s[0].calls, 1);
    ASSERT_EQ(s[0].result, REG_UNAVAILABLE);
    if (took < 400 || took > 1500)
        TEST_FAIL("first connect given up after %llu ms (timeout 500 ms)",
                  (unsigned long long)took);
    ASSERT(!reg_connected(r));
    RUN_UNTIL(base, s[m - 1].calls > 0, 2000);
    for (int i = 0; i < m; i++) {
        ASSERT_EQ(s[i].calls, 1);
        ASSERT_EQ(s[i].result, REG_UNAVAILABLE);
    }
    ASSERT_EQ(reg_stats(r)->live, m);
    reg_free(r);
    close(lfd);
    event_base_free(base);
}

TEST(scripts_flushed_are_reloaded)
{
    struct event_base *base = event_base_new();
    redisContext *c = sync_connect(shared_port);
    struct reg *r = new_reg(base, shared_port, "nos", "gwA", 0, 60000);
    struct sess s[3];
    sess_init(&s[0], "d0", 1);
    reg_claim(r, &s[0].e, on_claim, &s[0]);
    RUN_UNTIL(base, s[0].calls > 0, 3000);
    freeReplyObject(cmd(c, "SCRIPT FLUSH"));
    sess_init(&s[1], "d1", 2);
    sess_init(&s[2], "d2", 3);
    reg_claim(r, &s[1].e, on_claim, &s[1]);
    reg_claim(r, &s[2].e, on_claim, &s[2]);
    RUN_UNTIL(base, s[1].calls && s[2].calls, 3000);
    ASSERT_EQ(s[1].result, REG_CLAIMED);
    ASSERT_EQ(s[2].result, REG_CLAIMED);
    ASSERT_STR_EQ(hget(c, key_dev("nos", "d1"), "gw"), "gwA");
    ASSERT_STR_EQ(hget(c, key_dev("nos", "d2"), "gw"), "gwA");
    reg_release(r, &s[1].e);
    RUN_UNTIL(base, !exists(c, key_dev("nos", "d1")), 3000);
    ASSERT(!exists(c, key_dev("nos", "d1")));
    reg_free(r);
    redisFree(c);
    event_base_free(base);
}

TEST(alive_key)
{
    struct event_base *base = event_base_new();
    redisContext *c = sync_connect(shared_port);
    struct reg_opts o = { .host = "127.0.0.1", .port = shared_port, .prefix = "alv",
                          .gateway_id = "gw-7", .keep_alive_key = true };
    struct reg *r = reg_new(base, &o);
    RUN_UNTIL(base, exists(c, "alv:gw:gw-7:alive"), 3000);
    ASSERT(exists(c, "alv:gw:gw-7:alive"));
    long long t = cmd_int(c, "PTTL alv:gw:gw-7:alive");
    ASSERT(t > 10000 && t <= LPR_ALIVE_TTL_MS);
    redisReply *v = cmd(c, "GET alv:gw:gw-7:alive");
    ASSERT_EQ(v->type, REDIS_REPLY_STRING);
    ASSERT(strtoull(v->str, NULL, 10) > 1600000000000ull);
    freeReplyObject(v);
    ASSERT_EQ(cmd_int(c, "SISMEMBER alv:gws gw-7"), 1);
    /* refreshed every 5 s */
    run_for(base, 5600);
    t = cmd_int(c, "PTTL alv:gw:gw-7:alive");
    ASSERT(t > 13000);
    /* a worker without keep_alive_key writes neither */
    struct reg_opts o2 = o;
    o2.gateway_id = "gw-8";
    o2.keep_alive_key = false;
    struct reg *r2 = reg_new(base, &o2);
    run_for(base, 500);
    ASSERT(reg_connected(r2));
    ASSERT(!exists(c, "alv:gw:gw-8:alive"));
    ASSERT_EQ(cmd_int(c, "SISMEMBER alv:gws gw-8"), 0);
    reg_free(r);
    reg_free(r2);
    redisFree(c);
    event_base_free(base);
}

TEST(resync_is_chunked)
{
    struct server srv;
    int port = free_port();
    server_start(&srv, port);
    struct event_base *base = event_base_new();
    struct reg_opts o = { .host = "127.0.0.1", .port = port, .prefix = "chk", .gateway_id = "gwA",
                          .ttl_ms = 600000, .batch = 100 };
    struct reg *r = reg_new(base, &o);
    enum { N = 3000 };
    struct sess *s = calloc(N, sizeof(*s));
    char dev[16];
    for (int i = 0; i < N; i++) {
        snprintf(dev, sizeof(dev), "d%d", i);
        sess_init(&s[i], dev, (uint64_t)i + 1);
        reg_claim(r, &s[i].e, on_claim, &s[i]);
    }
    RUN_UNTIL(base, s[N - 1].calls > 0, 5000);
    ASSERT_EQ(reg_stats(r)->live, N);
    server_kill(&srv);
    RUN_UNTIL(base, !reg_connected(r), 3000);
    server_start(&srv, port);
    RUN_UNTIL(base, reg_connected(r), 8000);
    ASSERT(reg_connected(r));
    uint64_t t0 = now_ms();
    RUN_UNTIL(base, reg_stats(r)->resyncs >= N, 20000);
    uint64_t took = now_ms() - t0;
    ASSERT_EQ(reg_stats(r)->resyncs, N);
    /* 100 per 100 ms tick: 30 ticks at least */
    if (took < 2500)
        TEST_FAIL("resync of %d entries took %llu ms: not spread over ticks", N,
                  (unsigned long long)took);
    redisContext *c = sync_connect(port);
    ASSERT_EQ(cmd_int(c, "SCARD %s", key_devs("chk", "gwA")), N);
    ASSERT_EQ(cmd_int(c, "DBSIZE"), N + 1);
    for (int i = 0; i < N; i++)
        reg_release(r, &s[i].e);
    RUN_UNTIL(base, cmd_int(c, "DBSIZE") == 0, 5000);
    ASSERT_EQ(cmd_int(c, "DBSIZE"), 0);
    reg_free(r);
    free(s);
    redisFree(c);
    server_kill(&srv);
    event_base_free(base);
}

TEST(invalid_device_id_is_never_written)
{
    struct event_base *base = event_base_new();
    redisContext *c = sync_connect(shared_port);
    struct reg *r = new_reg(base, shared_port, "inv", "gwA", 0, 60000);
    RUN_UNTIL(base, reg_connected(r), 3000);
    struct sess s;
    sess_init(&s, "a.b", 1);
    reg_claim(r, &s.e, on_claim, &s);
    ASSERT_EQ(s.calls, 0);
    RUN_UNTIL(base, s.calls > 0, 2000);
    ASSERT_EQ(s.result, REG_UNAVAILABLE);
    run_for(base, 300);
    ASSERT(!exists(c, "inv:dev:a.b"));
    reg_release(r, &s.e);
    ASSERT_EQ(reg_stats(r)->live, 0);
    reg_free(r);
    redisFree(c);
    event_base_free(base);
}

/* ---- runner ---- */

static struct server shared;

/* one server for the tests that need none of their own; children inherit it */
static void start_shared(void)
{
    log_init(getenv("REG_TEST_VERBOSE") ? LOG_DEBUG : LOG_ERROR, false, "test", -1);
    server_start(&shared, free_port());
    shared_port = shared.port;
}

static void stop_shared(void)
{
    server_kill(&shared);
}

int main(int argc, char **argv)
{
    const struct test_hooks hooks = { .before_all = start_shared, .after_all = stop_shared, .leak_check = true };
    return test_run_all(argc, argv, &hooks);
}
