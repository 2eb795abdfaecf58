/* The worker's registry client (registry.h): one async hiredis connection, the scripts of
 * lp_registry.h, and four intrusive lists that say what each entry needs next.
 *
 * Every entry is in exactly one state:
 *   NOTIFY    claimed while Redis is away: its REG_UNAVAILABLE callback runs on the next loop
 *             iteration (never inside reg_claim), then it becomes DIRTY
 *   DIRTY     must be (re)written by a resync once connected
 *   INFLIGHT  a claim, resync or refresh of it awaits its reply
 *   LIVE      written; refreshed every TTL/3
 *   DETACHED  another connection holds the device (resync conflict) or the id is invalid: the
 *             registry does nothing more with it until reg_release
 * Replies find their entry without a pointer: commands on one connection are answered in order,
 * so the INFLIGHT list is a FIFO in sending order and a reply belongs to its head when the head
 * carries the command's sequence number; when it does not, the entry was released meanwhile
 * and the reply is dropped. */
#include "registry.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>
#include <hiredis/adapters/libevent.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <openssl/sha.h>

#include "log.h"
#include "lp_registry.h"

#define TICK_MS 100
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
#define PAUSE_ON_ERROR_MS 1000 /* resyncs wait this long after an error reply */
#define INFLIGHT_PER_BATCH 4   /* tracked commands in flight: at most this many ticks' worth */

enum { S_NONE, S_NOTIFY, S_DIRTY, S_INFLIGHT, S_LIVE, S_DETACHED, S_COUNT };
enum { OP_NONE, OP_CLAIM, OP_RESYNC, OP_REFRESH };
#define F_RETRIED 0x01 /* the command in flight is a retry after NOSCRIPT */
#define F_INVALID 0x02 /* the device id cannot be a key: never written */

struct reg_list {
    struct reg_entry *head, *tail;
    size_t n;
};

struct reg {
    struct event_base *base;
    redisAsyncContext *ac;          /* NULL while waiting to reconnect */
    char *host;                     /* owned */
    int port;
    char prefix[LPR_MAX_PREFIX + 1];
    size_t prefix_len;
    char gw[LPR_MAX_GW + 1];
    size_t gw_len;
    char worker[12];                /* decimal */
    char ttl[12];                   /* decimal ms */
    uint32_t ttl_ms;
    uint32_t timeout_ms;
    unsigned batch;
    bool keep_alive;
    char devs_key[LPR_KEY_MAX];
    char alive_key[LPR_KEY_MAX];
    char gws_key[LPR_KEY_MAX];
    char sha[LPR_SCRIPT_COUNT][2 * SHA_DIGEST_LENGTH + 1];
    struct event *tick_ev;          /* every TICK_MS: pump, alive key, watchdog */
    struct event *retry_ev;         /* reconnect after backoff */
    struct event *notify_ev;        /* runs the NOTIFY list's callbacks */
    struct reg_list lists[S_COUNT]; /* by state; S_NONE and S_DETACHED stay empty */
    uint32_t seq;                   /* numbers every command sent */
    uint32_t load_seq;              /* seq of the latest SCRIPT LOAD batch */
    uint32_t pending;               /* commands sent and not yet answered */
    uint64_t progress_ms;           /* last reply, or first send after an idle spell */
    uint64_t connect_at_ms;         /* when the current connection attempt started */
    uint32_t backoff_ms;
    bool connected;
    bool first_attempt;             /* the very first connect is still in progress */
    bool ever_connected;
    bool down_logged;
    bool freeing;
    uint64_t pause_until_ms;
    uint64_t round_at_ms;           /* next refresh round may start then */
    size_t round_left;              /* entries left to refresh in this round */
    size_t round_per_tick;
    uint64_t alive_at_ms;
    uint64_t err_log_ms;
    reg_conflict_cb conflict_cb;
    void *conflict_arg;
    reg_raw_cb raw_cb;
    void *raw_arg;
    struct reg_stats st;
};

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static uint64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ---- lists ---- */

static bool state_listed(uint8_t s)
{
    return s == S_NOTIFY || s == S_DIRTY || s == S_INFLIGHT || s == S_LIVE;
}

static void unlink_entry(struct reg *r, struct reg_entry *e)
{
    if (state_listed(e->state)) {
        struct reg_list *l = &r->lists[e->state];
        if (e->prev)
            e->prev->next = e->next;
        else
            l->head = e->next;
        if (e->next)
            e->next->prev = e->prev;
        else
            l->tail = e->prev;
        l->n--;
    }
    e->prev = e->next = NULL;
    e->state = S_NONE;
}

/* Moves e to the tail of the list for `state` (or just marks it, for unlisted states). */
static void move_to(struct reg *r, struct reg_entry *e, uint8_t state)
{
    unlink_entry(r, e);
    e->state = state;
    if (!state_listed(state))
        return;
    struct reg_list *l = &r->lists[state];
    e->prev = l->tail;
    if (l->tail)
        l->tail->next = e;
    else
        l->head = e;
    l->tail = e;
    l->n++;
}

/* ---- logging ---- */

static void log_error(struct reg *r, const char *what, const char *detail)
{
    uint64_t now = mono_ms();
    if (r->err_log_ms && now - r->err_log_ms < 1000)
        return;
    r->err_log_ms = now;
    LOG(LOG_WARN, "registry_error", "what=%s error=\"%s\"", what, detail ? detail : "");
}

static bool is_noscript(const redisReply *rep)
{
    return rep && rep->type == REDIS_REPLY_ERROR && rep->len >= 8 &&
           memcmp(rep->str, "NOSCRIPT", 8) == 0;
}

static bool parse_u64(const char *s, size_t n, uint64_t *out)
{
    uint64_t v = 0;
    if (n == 0 || n > 20)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        uint64_t d = (uint64_t)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *out = v;
    return true;
}

/* A script's {gw, w, cref} answer. */
static bool parse_holder(const redisReply *rep, struct reg_prev *p)
{
    if (!rep || rep->type != REDIS_REPLY_ARRAY || rep->elements != 3)
        return false;
    for (size_t i = 0; i < 3; i++)
        if (rep->element[i]->type != REDIS_REPLY_STRING)
            return false;
    uint64_t w = 0;
    p->gw = (struct span){ rep->element[0]->str, rep->element[0]->len };
    p->cref = 0;
    /* a hash written by something else may lack w or cref; the holder still counts */
    if (parse_u64(rep->element[1]->str, rep->element[1]->len, &w) && w <= UINT32_MAX)
        p->worker = (unsigned)w;
    else
        p->worker = 0;
    parse_u64(rep->element[2]->str, rep->element[2]->len, &p->cref);
    return true;
}

/* ---- sending ---- */

static void on_op_reply(redisAsyncContext *ac, void *reply, void *privdata);
static void on_plain_reply(redisAsyncContext *ac, void *reply, void *privdata);

/* Queues one command; its callback gets the command's seq as privdata. */
static bool send_cmd(struct reg *r, redisCallbackFn *fn, int argc, const char **argv,
                     const size_t *len, uint32_t *seq_out)
{
    if (!r->ac)
        return false;
    uint32_t seq = r->seq + 1;
    if (redisAsyncCommandArgv(r->ac, fn, (void *)(uintptr_t)seq, argc, argv, len) != REDIS_OK)
        return false;
    r->seq = seq;
    if (r->pending++ == 0)
        r->progress_ms = mono_ms();
    if (seq_out)
        *seq_out = seq;
    return true;
}

#define ARG(s, l) (argv[argc] = (s), len[argc] = (l), argc++)
#define ARGS(s) ARG((s), strlen(s))

/* Sends e's claim, resync or refresh and puts e at the tail of INFLIGHT. False when the
 * command could not be queued (no connection); e is then unchanged. */
static bool send_op(struct reg *r, struct reg_entry *e, uint8_t op)
{
    char key[LPR_KEY_MAX], cref[24], at[24];
    const char *argv[13];
    size_t len[13];
    int argc = 0;
    size_t klen = lpr_key_dev(key, sizeof(key), r->prefix, r->prefix_len, e->dev.p, e->dev.len);
    if (!klen)
        return false;
    snprintf(cref, sizeof(cref), "%" PRIu64, e->cref);
    snprintf(at, sizeof(at), "%" PRIu64, e->at_ms);
    if (op == OP_REFRESH) {
        ARGS("PEXPIRE");
        ARG(key, klen);
        ARGS(r->ttl);
    } else {
        ARGS("EVALSHA");
        ARGS(r->sha[op == OP_CLAIM ? LPR_CLAIM : LPR_RESYNC]);
        ARGS("2");
        ARG(key, klen);
        ARGS(r->devs_key);
        ARG(r->gw, r->gw_len);
        ARGS(r->worker);
        ARGS(cref);
        ARGS(at);
        ARG(e->peer.len ? e->peer.p : "", e->peer.len);
        ARGS(r->ttl);
        if (op == OP_RESYNC)
            ARG(e->fw.len ? e->fw.p : "", e->fw.len);
    }
    uint32_t seq;
    if (!send_cmd(r, on_op_reply, argc, argv, len, &seq))
        return false;
    e->seq = seq;
    e->op = op;
    move_to(r, e, S_INFLIGHT);
    return true;
}

/* release and setfw: scripts that act on the caller's own entry only (gw and cref must match),
 * fire and forget. */
static void send_own_entry_script(struct reg *r, struct reg_entry *e, int script)
{
    char key[LPR_KEY_MAX], cref[24];
    const char *argv[8];
    size_t len[8];
    int argc = 0;
    size_t klen = lpr_key_dev(key, sizeof(key), r->prefix, r->prefix_len, e->dev.p, e->dev.len);
    if (!klen)
        return;
    snprintf(cref, sizeof(cref), "%" PRIu64, e->cref);
    ARGS("EVALSHA");
    ARGS(r->sha[script]);
    if (script == LPR_RELEASE) {
        ARGS("2");
        ARG(key, klen);
        ARGS(r->devs_key);
    } else {
        ARGS("1");
        ARG(key, klen);
    }
    ARG(r->gw, r->gw_len);
    ARGS(cref);
    if (script == LPR_SETFW)
        ARG(e->fw.len ? e->fw.p : "", e->fw.len);
    send_cmd(r, on_plain_reply, argc, argv, len, NULL);
}

static void send_alive(struct reg *r)
{
    char now[24], ttl[12];
    snprintf(now, sizeof(now), "%" PRIu64, wall_ms());
    snprintf(ttl, sizeof(ttl), "%d", LPR_ALIVE_TTL_MS);
    const char *argv[5];
    size_t len[5];
    int argc = 0;
    ARGS("SET");
    ARGS(r->alive_key);
    ARGS(now);
    ARGS("PX");
    ARGS(ttl);
    send_cmd(r, on_plain_reply, argc, argv, len, NULL);
    argc = 0;
    ARGS("SADD");
    ARGS(r->gws_key);
    ARG(r->gw, r->gw_len);
    send_cmd(r, on_plain_reply, argc, argv, len, NULL);
}

static void on_load_reply(redisAsyncContext *ac, void *reply, void *privdata);

/* SCRIPT LOAD of every script. Queued first on each connection, so the EVALSHAs queued behind
 * them on the same connection always find their script. */
static void load_scripts(struct reg *r)
{
    for (int i = 0; i < LPR_SCRIPT_COUNT; i++) {
        const char *argv[3] = { "SCRIPT", "LOAD", lpr_script_text((enum lpr_script)i) };
        size_t len[3] = { 6, 4, strlen(argv[2]) };
        send_cmd(r, on_load_reply, 3, argv, len, NULL);
    }
    r->load_seq = r->seq;
}

/* ---- the connection ---- */

static void start_connect(struct reg *r);

static void schedule_retry(struct reg *r)
{
    if (r->freeing || evtimer_pending(r->retry_ev, NULL))
        return;
    struct timeval tv = { r->backoff_ms / 1000, (r->backoff_ms % 1000) * 1000 };
    evtimer_add(r->retry_ev, &tv);
    r->backoff_ms = r->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : r->backoff_ms * 2;
}

/* The connection `ac` is gone (or going: hiredis may still run its pending callbacks with a
 * NULL reply right after this). */
static void lost(struct reg *r, const redisAsyncContext *ac, const char *why)
{
    if (r->ac != ac)
        return;
    if (!r->down_logged) {
        LOG(LOG_WARN, "registry_down", "host=%s port=%d error=\"%s\"", r->host, r->port,
            why ? why : "");
        r->down_logged = true;
    }
    r->ac = NULL;
    r->connected = false;
    r->first_attempt = false;
    r->pending = 0;
    schedule_retry(r);
}

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    start_connect(arg);
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    struct reg *r = ac->data;
    if (!r || r->freeing)
        return;
    if (status != REDIS_OK) {
        r->st.errors++;
        lost(r, ac, ac->errstr);
        return;
    }
    uint64_t now = mono_ms();
    r->connected = true;
    r->progress_ms = now; /* the watchdog counts from here, not from the connect attempt */
    if (r->ever_connected)
        r->st.reconnects++;
    r->ever_connected = true;
    r->down_logged = false;
    LOG(LOG_INFO, "registry_up", "host=%s port=%d live=%zu", r->host, r->port,
        r->lists[S_LIVE].n + r->lists[S_DIRTY].n);
    /* Redis may have lost everything meanwhile (restart without persistence): rewrite every
     * entry through resync, which never overwrites a newer holder. */
    while (r->lists[S_LIVE].head)
        move_to(r, r->lists[S_LIVE].head, S_DIRTY);
    r->round_left = 0;
    r->round_at_ms = now + r->ttl_ms / 3;
    r->pause_until_ms = 0;
    r->alive_at_ms = 0;
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    struct reg *r = ac->data;
    if (!r || r->freeing)
        return;
    if (status != REDIS_OK)
        r->st.errors++;
    lost(r, ac, ac->errstr);
}

static void start_connect(struct reg *r)
{
    /* Cannot hold anything: every command of the previous connection was answered (with NULL at
     * worst). Kept as a guard so a stuck entry can never stay in INFLIGHT forever. */
    while (r->lists[S_INFLIGHT].head) {
        struct reg_entry *e = r->lists[S_INFLIGHT].head;
        move_to(r, e, e->cb ? S_NOTIFY : S_DIRTY);
        event_active(r->notify_ev, EV_TIMEOUT, 0);
    }
    struct timeval tv = { r->timeout_ms / 1000, (r->timeout_ms % 1000) * 1000 };
    redisOptions o = { 0 };
    REDIS_OPTIONS_SET_TCP(&o, r->host, r->port);
    o.connect_timeout = &tv;
    o.command_timeout = &tv;
    redisAsyncContext *ac = redisAsyncConnectWithOptions(&o);
    if (!ac || ac->err) {
        r->st.errors++;
        if (!r->down_logged) {
            LOG(LOG_WARN, "registry_down", "host=%s port=%d error=\"%s\"", r->host, r->port,
                ac ? ac->errstr : "out of memory");
            r->down_logged = true;
        }
        if (ac)
            redisAsyncFree(ac);
        r->first_attempt = false;
        schedule_retry(r);
        return;
    }
    ac->data = r;
    if (redisLibeventAttach(ac, r->base) != REDIS_OK ||
        redisAsyncSetConnectCallback(ac, on_connect) != REDIS_OK ||
        redisAsyncSetDisconnectCallback(ac, on_disconnect) != REDIS_OK) {
        r->st.errors++;
        ac->data = NULL;
        redisAsyncFree(ac);
        r->first_attempt = false;
        schedule_retry(r);
        return;
    }
    r->ac = ac;
    r->pending = 0;
    r->connect_at_ms = mono_ms();
    load_scripts(r);
}

/* ---- replies ---- */

/* Every reply: the registry it belongs to, with the reply counted as progress (the watchdog's
 * measure); NULL when the registry is being freed and the reply must be ignored. */
static struct reg *reply_arrived(redisAsyncContext *ac)
{
    struct reg *r = ac->data;
    if (!r || r->freeing)
        return NULL;
    if (r->pending)
        r->pending--;
    r->progress_ms = mono_ms();
    return r;
}

static void on_load_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    (void)privdata;
    struct reg *r = reply_arrived(ac);
    redisReply *rep = reply;
    if (!r)
        return;
    if (!rep)
        return;
    if (rep->type != REDIS_REPLY_STRING) {
        r->st.errors++;
        log_error(r, "script_load", rep->type == REDIS_REPLY_ERROR ? rep->str : "bad reply");
        return;
    }
    bool known = false;
    for (int i = 0; i < LPR_SCRIPT_COUNT; i++)
        known |= rep->len == 2 * SHA_DIGEST_LENGTH && memcmp(rep->str, r->sha[i], rep->len) == 0;
    if (!known) {
        r->st.errors++;
        log_error(r, "script_load", "unexpected sha1");
        return;
    }
    /* a Redis that answers is a Redis that works: the next outage starts from a short backoff */
    r->backoff_ms = BACKOFF_MIN_MS;
}

static void on_plain_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    struct reg *r = reply_arrived(ac);
    redisReply *rep = reply;
    if (!r)
        return;
    if (!rep || rep->type != REDIS_REPLY_ERROR)
        return;
    r->st.errors++;
    log_error(r, "command", rep->str);
    /* scripts vanished (SCRIPT FLUSH) after the latest load: load them again for what follows;
     * this fire-and-forget command itself is lost (its TTL or the refresh covers it) */
    uint32_t seq = (uint32_t)(uintptr_t)privdata;
    if (is_noscript(rep) && (int32_t)(seq - r->load_seq) > 0)
        load_scripts(r);
}

static void claim_done(struct reg *r, struct reg_entry *e, const redisReply *rep)
{
    reg_claim_cb cb = e->cb;
    void *arg = e->cb_arg;
    e->cb = NULL;
    if (!rep || rep->type == REDIS_REPLY_ERROR) {
        move_to(r, e, S_DIRTY);
        if (cb)
            cb(arg, REG_UNAVAILABLE, NULL);
        return;
    }
    move_to(r, e, S_LIVE);
    struct reg_prev prev;
    if (parse_holder(rep, &prev) &&
        !(prev.gw.len == r->gw_len && memcmp(prev.gw.p, r->gw, r->gw_len) == 0 &&
          prev.cref == e->cref)) {
        r->st.claim_prev++;
        if (cb)
            cb(arg, REG_CLAIMED_PREV, &prev);
        return;
    }
    if (cb)
        cb(arg, REG_CLAIMED, NULL);
}

static void resync_done(struct reg *r, struct reg_entry *e, const redisReply *rep)
{
    if (!rep || rep->type == REDIS_REPLY_ERROR) {
        move_to(r, e, S_DIRTY);
        return;
    }
    struct reg_prev other;
    if (parse_holder(rep, &other)) {
        r->st.conflicts++;
        LOG(LOG_INFO, "registry_conflict", "device=\"%.*s\" holder_gateway=%.*s holder_worker=%u",
            (int)e->dev.len, e->dev.p, (int)other.gw.len, other.gw.p, other.worker);
        move_to(r, e, S_DETACHED);
        if (r->conflict_cb)
            r->conflict_cb(r->conflict_arg, e);
        return;
    }
    r->st.resyncs++;
    move_to(r, e, S_LIVE);
}

static void refresh_done(struct reg *r, struct reg_entry *e, const redisReply *rep)
{
    if (!rep) {
        move_to(r, e, S_DIRTY);
    } else if (rep->type == REDIS_REPLY_INTEGER && rep->integer == 0) {
        /* the hash is gone (expired during a stall, deleted by hand, reaped): write it again */
        move_to(r, e, S_DIRTY);
    } else {
        if (rep->type == REDIS_REPLY_INTEGER)
            r->st.refreshes++;
        move_to(r, e, S_LIVE);
    }
}

static void on_op_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    struct reg *r = reply_arrived(ac);
    redisReply *rep = reply;
    if (!r)
        return;
    uint32_t seq = (uint32_t)(uintptr_t)privdata;
    struct reg_list *fl = &r->lists[S_INFLIGHT];
    struct reg_entry *e;
    /* cannot happen (replies come in order and each command is answered once): an older
     * command than this one still in flight would never be answered */
    while ((e = fl->head) && (int32_t)(e->seq - seq) < 0) {
        r->st.errors++;
        move_to(r, e, e->cb ? S_NOTIFY : S_DIRTY);
        event_active(r->notify_ev, EV_TIMEOUT, 0);
    }
    if (!e || e->seq != seq)
        return; /* released meanwhile */
    if (rep && rep->type == REDIS_REPLY_ERROR) {
        if (is_noscript(rep) && !(e->flags & F_RETRIED)) {
            /* scripts flushed: reload them unless a load already went out after this command,
             * then send the command again (once) behind the load */
            if ((int32_t)(seq - r->load_seq) > 0)
                load_scripts(r);
            e->flags |= F_RETRIED;
            if (send_op(r, e, e->op))
                return;
            rep = NULL;
        } else {
            r->st.errors++;
            r->pause_until_ms = mono_ms() + PAUSE_ON_ERROR_MS;
            log_error(r, e->op == OP_CLAIM ? "claim" : e->op == OP_RESYNC ? "resync" : "refresh",
                      rep->str);
        }
    }
    e->flags &= (uint8_t)~F_RETRIED;
    switch (e->op) {
    case OP_CLAIM:
        claim_done(r, e, rep);
        break;
    case OP_RESYNC:
        resync_done(r, e, rep);
        break;
    default:
        refresh_done(r, e, rep);
        break;
    }
}

/* ---- the tick ---- */

/* Resyncs DIRTY entries, then refreshes LIVE ones: at most `batch` commands per tick, each
 * refresh round spread evenly over TTL/3 so a large worker never sends one huge burst. */
static void pump(struct reg *r, uint64_t now)
{
    if (!r->connected || !r->ac)
        return;
    struct reg_list *dirty = &r->lists[S_DIRTY], *live = &r->lists[S_LIVE];
    size_t cap = (size_t)r->batch * INFLIGHT_PER_BATCH;
    size_t budget = r->batch;
    if (now >= r->pause_until_ms) {
        while (budget && dirty->head && r->lists[S_INFLIGHT].n < cap) {
            if (!send_op(r, dirty->head, OP_RESYNC))
                return;
            budget--;
        }
    }
    uint64_t period = r->ttl_ms / 3;
    if (r->round_left == 0 && now >= r->round_at_ms) {
        uint64_t ticks = period / TICK_MS ? period / TICK_MS : 1;
        r->round_left = live->n;
        r->round_per_tick = (size_t)((live->n + ticks - 1) / ticks);
        r->round_at_ms = now + period;
    }
    size_t n = MIN(MIN(budget, r->round_per_tick), r->round_left);
    while (n-- && live->head && r->lists[S_INFLIGHT].n < cap) {
        if (!send_op(r, live->head, OP_REFRESH))
            return;
        r->round_left--;
    }
    if (!live->head)
        r->round_left = 0;
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct reg *r = arg;
    uint64_t now = mono_ms();
    if (r->connected && r->pending && now - r->progress_ms > r->timeout_ms) {
        /* hiredis's own timeout restarts with every command sent, so a Redis that stopped
         * answering while commands keep flowing is caught here: nothing answered for a whole
         * timeout while commands wait */
        redisAsyncContext *ac = r->ac;
        r->st.errors++;
        lost(r, ac, "no reply within the timeout");
        redisAsyncFree(ac); /* runs the pending callbacks with NULL replies */
        return;
    }
    if (r->ac && !r->connected && now - r->connect_at_ms > r->timeout_ms) {
        /* hiredis re-arms its connect timeout with every command queued meanwhile */
        redisAsyncContext *ac = r->ac;
        r->st.errors++;
        lost(r, ac, "connect timeout");
        redisAsyncFree(ac);
        return;
    }
    if (r->connected && r->keep_alive && now >= r->alive_at_ms) {
        send_alive(r);
        r->alive_at_ms = now + LPR_ALIVE_EVERY_MS;
    }
    pump(r, now);
}

static void on_notify(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct reg *r = arg;
    struct reg_list *l = &r->lists[S_NOTIFY];
    /* only those queued before this run: a callback that claims again is answered next time */
    size_t n = l->n;
    while (n-- && l->head) {
        struct reg_entry *e = l->head;
        reg_claim_cb cb = e->cb;
        e->cb = NULL;
        move_to(r, e, (e->flags & F_INVALID) ? S_DETACHED : S_DIRTY);
        if (cb)
            cb(e->cb_arg, REG_UNAVAILABLE, NULL);
    }
    if (l->head)
        event_active(r->notify_ev, EV_TIMEOUT, 0);
}

/* ---- API ---- */

struct reg *reg_new(struct event_base *base, const struct reg_opts *o)
{
    if (!base || !o || !o->host || !*o->host || o->port <= 0 || o->port > 65535 || !o->prefix ||
        !lpr_prefix_valid(o->prefix, strlen(o->prefix)) || !o->gateway_id ||
        !lpr_gw_valid(o->gateway_id, strlen(o->gateway_id)))
        return NULL;
    struct reg *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    r->base = base;
    r->host = strdup(o->host);
    r->port = o->port;
    r->prefix_len = strlen(o->prefix);
    memcpy(r->prefix, o->prefix, r->prefix_len + 1);
    r->gw_len = strlen(o->gateway_id);
    memcpy(r->gw, o->gateway_id, r->gw_len + 1);
    snprintf(r->worker, sizeof(r->worker), "%u", o->worker);
    r->ttl_ms = o->ttl_ms ? o->ttl_ms : 90000;
    snprintf(r->ttl, sizeof(r->ttl), "%" PRIu32, r->ttl_ms);
    r->timeout_ms = o->timeout_ms ? o->timeout_ms : 2000;
    r->batch = o->batch ? o->batch : 1000;
    r->keep_alive = o->keep_alive_key;
    lpr_key_gw_devs(r->devs_key, sizeof(r->devs_key), r->prefix, r->prefix_len, r->gw, r->gw_len);
    lpr_key_gw_alive(r->alive_key, sizeof(r->alive_key), r->prefix, r->prefix_len, r->gw,
                     r->gw_len);
    lpr_key_gws(r->gws_key, sizeof(r->gws_key), r->prefix, r->prefix_len);
    for (int i = 0; i < LPR_SCRIPT_COUNT; i++) {
        const char *text = lpr_script_text((enum lpr_script)i);
        uint8_t md[SHA_DIGEST_LENGTH];
        SHA1((const uint8_t *)text, strlen(text), md);
        for (int j = 0; j < SHA_DIGEST_LENGTH; j++)
            snprintf(&r->sha[i][2 * j], 3, "%02x", md[j]);
    }
    r->backoff_ms = BACKOFF_MIN_MS;
    r->first_attempt = true;
    r->tick_ev = event_new(base, -1, EV_PERSIST, on_tick, r);
    r->retry_ev = evtimer_new(base, on_retry, r);
    r->notify_ev = event_new(base, -1, 0, on_notify, r);
    if (!r->host || !r->tick_ev || !r->retry_ev || !r->notify_ev) {
        reg_free(r);
        return NULL;
    }
    struct timeval tick = { 0, TICK_MS * 1000 };
    event_add(r->tick_ev, &tick);
    start_connect(r);
    return r;
}

void reg_claim(struct reg *r, struct reg_entry *e, reg_claim_cb cb, void *arg)
{
    if (e->state != S_NONE)
        unlink_entry(r, e); /* a caller bug; keeps the lists sound */
    else
        r->st.live++;
    e->cb = cb;
    e->cb_arg = arg;
    e->flags = 0;
    e->op = OP_NONE;
    r->st.claims++;
    if (!lpr_dev_valid(e->dev.p, e->dev.len)) {
        r->st.errors++;
        e->flags |= F_INVALID;
    } else if (r->ac && (r->connected || r->first_attempt) && send_op(r, e, OP_CLAIM)) {
        /* while the first connection is being made, the claim waits for it (at most the
         * timeout): a gateway that just started still kicks older connections */
        return;
    }
    move_to(r, e, S_NOTIFY);
    event_active(r->notify_ev, EV_TIMEOUT, 0);
}

void reg_set_fw(struct reg *r, struct reg_entry *e, struct span fw)
{
    if (e->state == S_NONE || (e->flags & F_INVALID))
        return;
    e->fw = fw;
    /* DIRTY and NOTIFY entries get it with their resync; INFLIGHT ones are answered before this
     * command runs (one connection, in order) */
    if ((e->state == S_LIVE || e->state == S_INFLIGHT) && r->ac)
        send_own_entry_script(r, e, LPR_SETFW);
}

void reg_release(struct reg *r, struct reg_entry *e)
{
    if (!r || !e || e->state == S_NONE)
        return;
    bool write = !(e->flags & F_INVALID);
    unlink_entry(r, e);
    e->cb = NULL;
    e->flags = 0;
    r->st.releases++;
    r->st.live--;
    /* Queued behind a claim still in flight, so it deletes what that claim wrote. */
    if (write && r->ac)
        send_own_entry_script(r, e, LPR_RELEASE);
}

static void on_raw_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    struct reg *r = reply_arrived(ac);
    if (!r)
        return;
    if (r->raw_cb)
        r->raw_cb(r->raw_arg, (uint32_t)(uintptr_t)privdata, reply);
}

void reg_set_raw_handler(struct reg *r, reg_raw_cb cb, void *arg)
{
    r->raw_cb = cb;
    r->raw_arg = arg;
}

bool reg_raw_command(struct reg *r, uint32_t tag, int argc, const char **argv, const size_t *len,
                     uint32_t max_pending)
{
    if (!r || !r->connected || !r->ac || r->pending >= max_pending)
        return false;
    if (redisAsyncCommandArgv(r->ac, on_raw_reply, (void *)(uintptr_t)tag, argc, argv, len) != REDIS_OK)
        return false;
    if (r->pending++ == 0)
        r->progress_ms = mono_ms();
    return true;
}

void reg_set_conflict_cb(struct reg *r, reg_conflict_cb cb, void *arg)
{
    r->conflict_cb = cb;
    r->conflict_arg = arg;
}

bool reg_connected(const struct reg *r)
{
    return r && r->connected;
}

const struct reg_stats *reg_stats(const struct reg *r)
{
    return &r->st;
}

void reg_free(struct reg *r)
{
    if (!r)
        return;
    r->freeing = true;
    if (r->ac) {
        redisAsyncContext *ac = r->ac;
        r->ac = NULL;
        redisAsyncFree(ac);
    }
    if (r->tick_ev)
        event_free(r->tick_ev);
    if (r->retry_ev)
        event_free(r->retry_ev);
    if (r->notify_ev)
        event_free(r->notify_ev);
    free(r->host);
    free(r);
}
