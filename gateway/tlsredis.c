/* The cross-pod TLS session store (tlsredis.h).
 * Lookups wait in a ring in sending order; each carries a sequence number as its command's tag,
 * so a reply finds its lookup without a pointer and a reply to a lookup that already timed out
 * finds a slot that has moved on and is dropped. All lookups share one timeout, so deadlines
 * grow along the ring and one timer, armed for the oldest, expires them. */
#include "tlsredis.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>
#include <hiredis/hiredis.h>

#include "common.h"
#include "registry.h"
#include "sesscache.h"

#define KEY_MAX (32 + 5 + 2 * SCACHE_ID_MAX + 1) /* <prefix>:tls:<hex id> */

#define TAG_LOOKUP 0x80000000u /* lookups' tags: seq | TAG_LOOKUP; stores' tag: 0 */

struct lookup {
    bool busy;
    uint32_t seq;
    uint64_t deadline_ms;
    tlsr_cb cb;
    void *arg;
};

struct tlsr {
    struct reg *reg;
    struct event *timer;
    char prefix[33];
    uint32_t timeout_ms;
    uint32_t next_seq;  /* the next lookup's number */
    uint32_t head_seq;  /* oldest lookup that may still wait */
    struct lookup ring[TLSR_MAX_LOOKUPS];
    struct tlsr_stats st;
};

_Static_assert((TLSR_MAX_LOOKUPS & (TLSR_MAX_LOOKUPS - 1)) == 0, "ring size is a power of two");

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static size_t make_key(const struct tlsr *t, const uint8_t *id, size_t id_len, char *out)
{
    static const char hex[] = "0123456789abcdef";
    size_t n = strlen(t->prefix);
    memcpy(out, t->prefix, n);
    memcpy(out + n, ":tls:", 5);
    n += 5;
    for (size_t i = 0; i < id_len; i++) {
        out[n++] = hex[id[i] >> 4];
        out[n++] = hex[id[i] & 15];
    }
    out[n] = 0;
    return n;
}

static struct lookup *slot_of(struct tlsr *t, uint32_t seq)
{
    return &t->ring[seq & (TLSR_MAX_LOOKUPS - 1)];
}

static bool waiting(struct tlsr *t, uint32_t seq)
{
    const struct lookup *l = slot_of(t, seq);
    return l->busy && l->seq == seq;
}

/* Skips answered lookups at the head and arms the timer for the oldest one still waiting. */
static void advance(struct tlsr *t)
{
    while (t->head_seq != t->next_seq && !waiting(t, t->head_seq))
        t->head_seq++;
    if (t->head_seq == t->next_seq) {
        evtimer_del(t->timer);
        return;
    }
    uint64_t now = mono_ms(), at = slot_of(t, t->head_seq)->deadline_ms;
    uint64_t in = at > now ? at - now : 0;
    struct timeval tv = { (time_t)(in / 1000), (suseconds_t)(in % 1000) * 1000 };
    evtimer_add(t->timer, &tv);
}

static void finish(struct tlsr *t, struct lookup *l, enum tlsr_result r, const uint8_t *val, size_t len)
{
    tlsr_cb cb = l->cb;
    void *arg = l->arg;
    l->busy = false;
    l->cb = NULL;
    t->st.lookups[r]++;
    cb(arg, r, val, len);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct tlsr *t = arg;
    uint64_t now = mono_ms();
    while (t->head_seq != t->next_seq) {
        struct lookup *l = slot_of(t, t->head_seq);
        if (waiting(t, t->head_seq)) {
            if (l->deadline_ms > now)
                break;
            finish(t, l, TLSR_TIMEOUT, NULL, 0);
        }
        t->head_seq++;
    }
    advance(t);
}

static void on_reply(void *arg, uint32_t tag, const void *reply)
{
    struct tlsr *t = arg;
    const redisReply *rep = reply;
    if (tag == 0) {
        if (!rep || rep->type == REDIS_REPLY_ERROR)
            t->st.store_failed++;
        return;
    }
    struct lookup *l = slot_of(t, tag);
    if (!l->busy || (l->seq | TAG_LOOKUP) != tag)
        return; /* timed out already */
    if (rep && rep->type == REDIS_REPLY_STRING)
        finish(t, l, TLSR_HIT, (const uint8_t *)rep->str, rep->len);
    else if (rep && rep->type == REDIS_REPLY_NIL)
        finish(t, l, TLSR_MISS, NULL, 0);
    else
        finish(t, l, TLSR_ERROR, NULL, 0);
    advance(t);
}

struct tlsr *tlsr_new(struct event_base *base, struct reg *reg, const char *prefix, uint32_t timeout_ms)
{
    if (!reg || !prefix || strlen(prefix) > 32)
        return NULL;
    struct tlsr *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    t->reg = reg;
    t->timer = evtimer_new(base, on_timer, t);
    if (!t->timer) {
        free(t);
        return NULL;
    }
    memcpy(t->prefix, prefix, strlen(prefix) + 1);
    t->timeout_ms = timeout_ms ? timeout_ms : 50;
    reg_set_raw_handler(reg, on_reply, t);
    return t;
}

void tlsr_store(struct tlsr *t, const uint8_t *id, size_t id_len, const uint8_t *val, size_t len,
                uint32_t ttl_s)
{
    char key[KEY_MAX], ex[12];
    if (id_len == 0 || id_len > SCACHE_ID_MAX || ttl_s == 0) {
        t->st.store_skipped++;
        return;
    }
    size_t klen = make_key(t, id, id_len, key);
    size_t exlen = (size_t)snprintf(ex, sizeof(ex), "%u", (unsigned)ttl_s);
    const char *argv[5] = { "SET", key, (const char *)val, "EX", ex };
    const size_t lens[5] = { 3, klen, len, 2, exlen };
    if (reg_raw_command(t->reg, 0, 5, argv, lens, TLSR_MAX_PENDING))
        t->st.stored++;
    else
        t->st.store_skipped++;
}

bool tlsr_lookup(struct tlsr *t, const uint8_t *id, size_t id_len, tlsr_cb cb, void *arg)
{
    char key[KEY_MAX];
    advance(t);
    if (id_len == 0 || id_len > SCACHE_ID_MAX || t->next_seq - t->head_seq >= TLSR_MAX_LOOKUPS) {
        t->st.lookups[TLSR_ERROR]++;
        return false;
    }
    uint32_t seq = t->next_seq;
    size_t klen = make_key(t, id, id_len, key);
    const char *argv[2] = { "GET", key };
    const size_t lens[2] = { 3, klen };
    if (!reg_raw_command(t->reg, seq | TAG_LOOKUP, 2, argv, lens, TLSR_MAX_PENDING)) {
        t->st.lookups[TLSR_ERROR]++;
        return false;
    }
    t->next_seq = seq + 1;
    struct lookup *l = slot_of(t, seq);
    l->busy = true;
    l->seq = seq;
    l->deadline_ms = mono_ms() + t->timeout_ms;
    l->cb = cb;
    l->arg = arg;
    if (!evtimer_pending(t->timer, NULL))
        advance(t);
    return true;
}

const struct tlsr_stats *tlsr_stats(const struct tlsr *t)
{
    return &t->st;
}
