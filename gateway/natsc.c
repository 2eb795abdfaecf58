/* natsc: see natsc.h.
 *
 * Threads. NATS.c calls us on its threads in exactly five places: the two message handlers
 * (on_nats_msg, on_nats_reply), the connection handlers, the subscription on-complete handler and
 * the reconnect-delay handler. All of them touch only the mailbox (struct mbox) under its mutex.
 * The mailbox is reference-counted: the loop holds one reference until natsc_free, the NATS
 * connection one until its closed handler ran, and every NATS subscription one until its
 * on-complete handler ran (after which NATS.c calls nothing more for it). So the mailbox, and
 * the eventfd that wakes the loop, outlive every NATS callback, while natsc_free never waits for
 * a NATS thread.
 *
 * The loop learns of new mail through an eventfd rather than event_active from another thread,
 * so the worker's event_base needs no locking (evthread_use_pthreads not required). */
#include "natsc.h"

#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <nats/nats.h>

#define DEFAULT_MAX_PENDING 65536u
#define DEFAULT_MAX_PENDING_BYTES (64u << 20)
#define DEFAULT_CONNECT_TIMEOUT_MS 2000u
#define DEFAULT_RECONNECT_MIN_MS 100u
#define DEFAULT_RECONNECT_MAX_MS 5000u
/* A half-open connection is noticed after about PING_INTERVAL * (MAX_PINGS_OUT + 1). */
#define PING_INTERVAL_MS 20000
#define MAX_PINGS_OUT 2
/* Inbound messages handled per loop turn before yielding to the loop's other events. */
#define DRAIN_BATCH 256
#define HMAP_MIN_BITS 6
#define MAX_URLS 32

/* ---- the mailbox (shared with NATS threads; every field under mu) ---- */

enum { MB_MSG, MB_REPLY };

struct mb_item {
    struct mb_item *next;
    uint8_t kind;
    bool no_responders; /* MB_REPLY */
    int64_t sid;        /* MB_MSG: the NATS subscription id */
    uint64_t req_id;    /* MB_REPLY: 0 when the subject did not carry a valid id */
    size_t cost;        /* counted against max_pending_bytes */
    const char *subject, *reply;
    const char *data;
    size_t len;
    char buf[];
};

struct mbox {
    pthread_mutex_t mu;
    int refs;
    int efd;
    bool closing;  /* natsc_free ran: drop everything, wake nobody */
    bool signaled; /* the eventfd has been written since the loop last emptied the queue */
    struct mb_item *head, *tail;
    uint32_t count, max_count;
    size_t bytes, max_bytes;
    uint64_t dropped;
    bool up;        /* the connection's latest state as NATS.c reported it */
    bool went_down; /* it was lost since the loop last looked */
    uint64_t conn_events; /* connection handler calls so far */
    uint64_t reconnects;
    size_t prefix_len; /* reply subjects are <prefix>.<id> */
    uint32_t rc_min_ms, rc_max_ms;
    uint64_t rng;
};

static atomic_size_t live_mailboxes;

static void mbox_retain(struct mbox *mb)
{
    pthread_mutex_lock(&mb->mu);
    mb->refs++;
    pthread_mutex_unlock(&mb->mu);
}

static void mbox_free_items(struct mb_item *it)
{
    while (it) {
        struct mb_item *next = it->next;
        free(it);
        it = next;
    }
}

static void mbox_release(struct mbox *mb)
{
    pthread_mutex_lock(&mb->mu);
    int refs = --mb->refs;
    pthread_mutex_unlock(&mb->mu);
    if (refs > 0)
        return;
    mbox_free_items(mb->head);
    close(mb->efd);
    pthread_mutex_destroy(&mb->mu);
    free(mb);
    atomic_fetch_sub(&live_mailboxes, 1);
}

/* Called with mu held. The write happens under the lock so it can never race the close in
 * mbox_release (which needs the last reference, i.e. no NATS thread in here). */
static void mbox_signal_locked(struct mbox *mb)
{
    if (mb->closing || mb->signaled)
        return;
    mb->signaled = true;
    uint64_t one = 1;
    ssize_t r = write(mb->efd, &one, sizeof(one));
    (void)r; /* EAGAIN only if the counter is near 2^64: the loop is awake anyway */
}

static void mbox_push(struct mbox *mb, struct mb_item *it)
{
    pthread_mutex_lock(&mb->mu);
    if (mb->closing || mb->count >= mb->max_count || it->cost > mb->max_bytes - mb->bytes) {
        mb->dropped += !mb->closing;
        pthread_mutex_unlock(&mb->mu);
        free(it);
        return;
    }
    it->next = NULL;
    if (mb->tail)
        mb->tail->next = it;
    else
        mb->head = it;
    mb->tail = it;
    mb->count++;
    mb->bytes += it->cost;
    mbox_signal_locked(mb);
    pthread_mutex_unlock(&mb->mu);
}

static void mbox_count_drop(struct mbox *mb)
{
    pthread_mutex_lock(&mb->mu);
    mb->dropped++;
    pthread_mutex_unlock(&mb->mu);
}

/* ---- NATS threads ---- */

static void on_nats_msg(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    (void)nc;
    struct mbox *mb = closure;
    const char *subj = natsMsg_GetSubject(msg);
    const char *reply = natsMsg_GetReply(msg);
    const char *data = natsMsg_GetData(msg);
    int dlen = natsMsg_GetDataLength(msg);
    size_t sl = strlen(subj), rl = reply ? strlen(reply) : 0, len = dlen > 0 ? (size_t)dlen : 0;
    struct mb_item *it = malloc(sizeof(*it) + sl + 1 + (reply ? rl + 1 : 0) + len + 1);
    if (!it) {
        mbox_count_drop(mb);
        natsMsg_Destroy(msg);
        return;
    }
    it->kind = MB_MSG;
    it->no_responders = false;
    it->sid = natsSubscription_GetID(sub);
    it->req_id = 0;
    it->cost = sl + rl + len;
    char *p = it->buf;
    memcpy(p, subj, sl + 1);
    it->subject = p;
    p += sl + 1;
    it->reply = NULL;
    if (reply) {
        memcpy(p, reply, rl + 1);
        it->reply = p;
        p += rl + 1;
    }
    if (len)
        memcpy(p, data, len);
    p[len] = '\0';
    it->data = p;
    it->len = len;
    natsMsg_Destroy(msg);
    mbox_push(mb, it);
}

/* "<prefix>.<decimal id>" → id; 0 when malformed. */
static uint64_t parse_reply_id(const char *subj, size_t prefix_len)
{
    if (strlen(subj) <= prefix_len + 1 || subj[prefix_len] != '.')
        return 0;
    uint64_t id = 0;
    const char *s = subj + prefix_len + 1;
    if (*s == '0')
        return 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9' || id > (UINT64_MAX - 9) / 10)
            return 0;
        id = id * 10 + (uint64_t)(*s - '0');
    }
    return id;
}

static void on_nats_reply(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    (void)nc;
    (void)sub;
    struct mbox *mb = closure;
    const char *data = natsMsg_GetData(msg);
    int dlen = natsMsg_GetDataLength(msg);
    size_t len = dlen > 0 ? (size_t)dlen : 0;
    struct mb_item *it = malloc(sizeof(*it) + len + 1);
    if (!it) {
        mbox_count_drop(mb);
        natsMsg_Destroy(msg);
        return;
    }
    it->kind = MB_REPLY;
    it->no_responders = natsMsg_IsNoResponders(msg);
    it->sid = 0;
    /* prefix_len is immutable after natsc_new: no lock needed */
    it->req_id = parse_reply_id(natsMsg_GetSubject(msg), mb->prefix_len);
    it->cost = len;
    it->subject = it->reply = NULL;
    if (len)
        memcpy(it->buf, data, len);
    it->buf[len] = '\0';
    it->data = it->buf;
    it->len = len;
    natsMsg_Destroy(msg);
    mbox_push(mb, it);
}

static void set_state(struct mbox *mb, bool up, bool reconnected)
{
    pthread_mutex_lock(&mb->mu);
    if (!up && mb->up)
        mb->went_down = true;
    mb->up = up;
    mb->reconnects += reconnected;
    mb->conn_events++;
    mbox_signal_locked(mb);
    pthread_mutex_unlock(&mb->mu);
}

static void on_nats_connected(natsConnection *nc, void *closure)
{
    (void)nc;
    set_state(closure, true, false);
}

static void on_nats_disconnected(natsConnection *nc, void *closure)
{
    (void)nc;
    set_state(closure, false, false);
}

static void on_nats_reconnected(natsConnection *nc, void *closure)
{
    (void)nc;
    set_state(closure, true, true);
}

/* The last handler NATS.c calls for a connection. */
static void on_nats_closed(natsConnection *nc, void *closure)
{
    (void)nc;
    set_state(closure, false, false);
    mbox_release(closure);
}

static void on_nats_sub_complete(void *closure)
{
    mbox_release(closure);
}

/* Backoff: min · 2^attempts capped at max, ± 25 % so that a fleet of workers spreads out. */
static int64_t on_nats_reconnect_delay(natsConnection *nc, int attempts, void *closure)
{
    (void)nc;
    struct mbox *mb = closure;
    pthread_mutex_lock(&mb->mu);
    uint64_t d = mb->rc_min_ms;
    for (int i = 0; i < attempts && d < mb->rc_max_ms; i++)
        d *= 2;
    if (d > mb->rc_max_ms)
        d = mb->rc_max_ms;
    mb->rng ^= mb->rng << 13;
    mb->rng ^= mb->rng >> 7;
    mb->rng ^= mb->rng << 17;
    uint64_t r = mb->rng;
    pthread_mutex_unlock(&mb->mu);
    uint64_t span = d / 2;
    if (span)
        d = d - d / 4 + r % (span + 1);
    return (int64_t)(d ? d : 1);
}

/* ---- loop side ---- */

/* Intrusive chained hash map keyed by u64; grows and shrinks by powers of two. A failed resize
 * keeps the old table (longer chains, still correct). */
struct hnode {
    struct hnode *next;
    uint64_t key;
};

struct hmap {
    struct hnode **b;
    unsigned bits;
    size_t n;
};

static size_t hslot(uint64_t key, unsigned bits)
{
    return (size_t)((key * 0x9E3779B97F4A7C15ull) >> (64 - bits));
}

static bool hmap_init(struct hmap *m)
{
    m->bits = HMAP_MIN_BITS;
    m->n = 0;
    m->b = calloc((size_t)1 << m->bits, sizeof(*m->b));
    return m->b != NULL;
}

static void hmap_resize(struct hmap *m, unsigned bits)
{
    struct hnode **nb = calloc((size_t)1 << bits, sizeof(*nb));
    if (!nb)
        return;
    for (size_t i = 0; i < (size_t)1 << m->bits; i++) {
        struct hnode *h = m->b[i];
        while (h) {
            struct hnode *next = h->next;
            size_t s = hslot(h->key, bits);
            h->next = nb[s];
            nb[s] = h;
            h = next;
        }
    }
    free(m->b);
    m->b = nb;
    m->bits = bits;
}

static void hmap_put(struct hmap *m, struct hnode *h)
{
    if (m->n >= (size_t)1 << m->bits && m->bits < 40)
        hmap_resize(m, m->bits + 1);
    size_t s = hslot(h->key, m->bits);
    h->next = m->b[s];
    m->b[s] = h;
    m->n++;
}

static struct hnode *hmap_get(const struct hmap *m, uint64_t key)
{
    struct hnode *h = m->b[hslot(key, m->bits)];
    while (h && h->key != key)
        h = h->next;
    return h;
}

static void hmap_del(struct hmap *m, struct hnode *h)
{
    struct hnode **pp = &m->b[hslot(h->key, m->bits)];
    while (*pp != h)
        pp = &(*pp)->next;
    *pp = h->next;
    m->n--;
    if (m->bits > HMAP_MIN_BITS && m->n < ((size_t)1 << m->bits) / 8)
        hmap_resize(m, m->bits - 1);
}

enum { REQ_INFLIGHT, REQ_DOWN };

struct req {
    struct hnode h; /* key: the request id */
    struct req *prev, *next; /* in c->inflight (deadline order) or c->due (FIFO) */
    uint64_t deadline_ms;
    natsc_reply_cb cb;
    void *arg;
    uint8_t state;
};

struct req_list {
    struct req *head, *tail;
    size_t n;
};

struct natsc_sub {
    struct hnode h; /* key: the NATS subscription id */
    struct natsc *c;
    natsSubscription *ns;
    natsc_msg_cb cb;
    void *arg;
};

struct natsc {
    struct event_base *base;
    natsConnection *nc;
    struct mbox *mb;
    struct event *wake_ev;
    struct event *tmo_ev;
    uint64_t tmo_at; /* deadline tmo_ev is armed for; 0: not armed */
    natsSubscription *reply_ns;
    char prefix[NATSC_MAX_PREFIX + 1];
    size_t prefix_len;
    uint64_t next_id;
    struct hmap reqs;
    struct hmap subs;
    struct req_list inflight; /* sorted by deadline */
    struct req_list due;      /* NATSC_DOWN results to report on the next loop turn */
    bool connected;
    natsc_conn_cb conn_cb;
    void *conn_arg;
    bool *dead; /* set while natsc runs callbacks: natsc_free marks it */
    struct natsc_stats stats;
};

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void list_unlink(struct req_list *l, struct req *r)
{
    if (r->prev)
        r->prev->next = r->next;
    else
        l->head = r->next;
    if (r->next)
        r->next->prev = r->prev;
    else
        l->tail = r->prev;
    r->prev = r->next = NULL;
    l->n--;
}

static void list_append(struct req_list *l, struct req *r)
{
    r->next = NULL;
    r->prev = l->tail;
    if (l->tail)
        l->tail->next = r;
    else
        l->head = r;
    l->tail = r;
    l->n++;
}

/* Requests of one worker mostly share a timeout, so the new one usually goes last: scanning
 * from the tail makes that O(1) while any mix of timeouts stays correctly ordered. */
static void list_insert_by_deadline(struct req_list *l, struct req *r)
{
    struct req *after = l->tail;
    while (after && after->deadline_ms > r->deadline_ms)
        after = after->prev;
    r->prev = after;
    r->next = after ? after->next : l->head;
    if (r->next)
        r->next->prev = r;
    else
        l->tail = r;
    if (after)
        after->next = r;
    else
        l->head = r;
    l->n++;
}

static void arm_timer(struct natsc *c, uint64_t deadline, uint64_t now)
{
    if (c->tmo_at && c->tmo_at <= deadline)
        return; /* fires earlier than needed and re-arms itself */
    uint64_t d = deadline > now ? deadline - now : 0;
    struct timeval tv = { (time_t)(d / 1000), (suseconds_t)(d % 1000) * 1000 };
    event_add(c->tmo_ev, &tv);
    c->tmo_at = deadline ? deadline : 1;
}

/* Forgets r and reports its result. r is freed before the callback so the callback may issue
 * requests of its own. */
static void req_finish(struct natsc *c, struct req *r, enum natsc_result res, struct span data)
{
    hmap_del(&c->reqs, &r->h);
    list_unlink(r->state == REQ_DOWN ? &c->due : &c->inflight, r);
    natsc_reply_cb cb = r->cb;
    void *arg = r->arg;
    free(r);
    switch (res) {
    case NATSC_OK:
        c->stats.replies++;
        break;
    case NATSC_TIMEOUT:
        c->stats.timeouts++;
        break;
    case NATSC_NO_RESPONDERS:
        c->stats.no_responders++;
        break;
    case NATSC_DOWN:
        c->stats.down++;
        break;
    }
    cb(arg, res, data);
}

static void on_timeout(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct natsc *c = arg;
    bool dead = false;
    c->dead = &dead;
    c->tmo_at = 0;
    uint64_t now = mono_ms();
    struct req *r;
    while ((r = c->inflight.head) && r->deadline_ms <= now) {
        req_finish(c, r, NATSC_TIMEOUT, (struct span){ "", 0 });
        if (dead)
            return;
    }
    c->dead = NULL;
    if (c->inflight.head)
        arm_timer(c, c->inflight.head->deadline_ms, now);
}

/* Makes the loop come back to on_wake on its next turn, after polling for I/O (event_active
 * would run it again in this turn, before any socket is read). */
static void wake_self(struct natsc *c)
{
    uint64_t one = 1;
    ssize_t r = write(c->mb->efd, &one, sizeof(one));
    (void)r; /* EAGAIN only if the counter is near 2^64: already readable */
}

static void deliver_item(struct natsc *c, struct mb_item *it)
{
    struct span data = { it->data, it->len };
    if (it->kind == MB_MSG) {
        struct hnode *h = hmap_get(&c->subs, (uint64_t)it->sid);
        if (!h)
            return; /* unsubscribed since */
        struct natsc_sub *s = container_of(h, struct natsc_sub, h);
        struct natsc_msg m = { it->subject, data, it->reply };
        s->cb(s->arg, &m);
        return;
    }
    struct hnode *h = it->req_id ? hmap_get(&c->reqs, it->req_id) : NULL;
    struct req *r = h ? container_of(h, struct req, h) : NULL;
    if (!r || r->state != REQ_INFLIGHT) {
        c->stats.stale_replies++;
        return;
    }
    if (it->no_responders)
        req_finish(c, r, NATSC_NO_RESPONDERS, (struct span){ "", 0 });
    else
        req_finish(c, r, NATSC_OK, data);
}

static void on_wake(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    struct natsc *c = arg;
    struct mbox *mb = c->mb;
    uint64_t v;
    ssize_t rd = read(fd, &v, sizeof(v));
    (void)rd;

    pthread_mutex_lock(&mb->mu);
    bool up = mb->up, went_down = mb->went_down;
    mb->went_down = false;
    c->stats.reconnects = mb->reconnects;
    c->stats.dropped_inbound = mb->dropped;
    struct mb_item *batch = mb->head, *last = NULL;
    size_t k = 0;
    for (struct mb_item *it = batch; it && k < DRAIN_BATCH; it = it->next, k++) {
        last = it;
        mb->count--;
        mb->bytes -= it->cost;
    }
    if (last) {
        mb->head = last->next;
        if (!mb->head)
            mb->tail = NULL;
        last->next = NULL;
    } else {
        batch = NULL;
    }
    bool more = mb->head != NULL;
    if (!more)
        mb->signaled = false;
    pthread_mutex_unlock(&mb->mu);

    bool dead = false;
    c->dead = &dead;

    /* Only the reports queued before this turn: a callback that requests again while down is
     * answered on the next turn, never in a loop inside this one. */
    for (size_t n = c->due.n; n > 0 && c->due.head; n--) {
        req_finish(c, c->due.head, NATSC_DOWN, (struct span){ "", 0 });
        if (dead)
            goto out_dead;
    }

    if (went_down && c->connected) {
        c->connected = false;
        if (c->conn_cb)
            c->conn_cb(c->conn_arg, false);
        if (dead)
            goto out_dead;
    }
    if (up != c->connected) {
        c->connected = up;
        if (c->conn_cb)
            c->conn_cb(c->conn_arg, up);
        if (dead)
            goto out_dead;
    }

    while (batch) {
        struct mb_item *it = batch;
        batch = it->next;
        deliver_item(c, it);
        free(it);
        if (dead)
            goto out_dead;
    }
    c->dead = NULL;
    if (more || c->due.n)
        wake_self(c);
    return;

out_dead:
    mbox_free_items(batch);
}

/* ---- API ---- */

static bool valid_prefix(const char *p)
{
    size_t n = strlen(p);
    if (n == 0 || n > NATSC_MAX_PREFIX || p[0] == '.' || p[n - 1] == '.')
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)p[i];
        if (ch <= ' ' || ch == '*' || ch == '>' || ch == 0x7f || (ch == '.' && p[i + 1] == '.'))
            return false;
    }
    return true;
}

/* natsOptions_SetServers wants an array; natsc_opts.urls is one comma-separated string. */
static natsStatus set_servers(natsOptions *no, const char *urls)
{
    char *copy = strdup(urls);
    if (!copy)
        return NATS_NO_MEMORY;
    const char *list[MAX_URLS];
    int n = 0;
    char *save = NULL;
    for (char *t = strtok_r(copy, ", ", &save); t && n < MAX_URLS; t = strtok_r(NULL, ", ", &save))
        list[n++] = t;
    natsStatus s = n ? natsOptions_SetServers(no, list, n) : NATS_INVALID_ARG;
    free(copy);
    return s;
}

static struct mbox *mbox_new(const struct natsc_opts *o, size_t prefix_len)
{
    struct mbox *mb = calloc(1, sizeof(*mb));
    if (!mb)
        return NULL;
    mb->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (mb->efd < 0 || pthread_mutex_init(&mb->mu, NULL) != 0) {
        if (mb->efd >= 0)
            close(mb->efd);
        free(mb);
        return NULL;
    }
    atomic_fetch_add(&live_mailboxes, 1);
    mb->refs = 1;
    mb->max_count = o->max_pending ? o->max_pending : DEFAULT_MAX_PENDING;
    mb->max_bytes = o->max_pending_bytes ? o->max_pending_bytes : DEFAULT_MAX_PENDING_BYTES;
    mb->prefix_len = prefix_len;
    mb->rc_min_ms = o->reconnect_min_ms ? o->reconnect_min_ms : DEFAULT_RECONNECT_MIN_MS;
    mb->rc_max_ms = o->reconnect_max_ms ? o->reconnect_max_ms : DEFAULT_RECONNECT_MAX_MS;
    if (mb->rc_max_ms < mb->rc_min_ms)
        mb->rc_max_ms = mb->rc_min_ms;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    mb->rng = ((uint64_t)ts.tv_nsec << 20) ^ (uint64_t)getpid() ^ (uint64_t)(uintptr_t)mb;
    if (!mb->rng)
        mb->rng = 1;
    return mb;
}

static natsOptions *make_options(const struct natsc_opts *o, struct mbox *mb)
{
    natsOptions *no = NULL;
    if (natsOptions_Create(&no) != NATS_OK)
        return NULL;
    uint32_t ct = o->connect_timeout_ms ? o->connect_timeout_ms : DEFAULT_CONNECT_TIMEOUT_MS;
    natsStatus s = set_servers(no, o->urls);
    if (s == NATS_OK && o->name)
        s = natsOptions_SetName(no, o->name);
    if (s == NATS_OK)
        s = natsOptions_SetTimeout(no, ct);
    if (s == NATS_OK)
        s = natsOptions_SetMaxReconnect(no, -1);
    if (s == NATS_OK)
        s = natsOptions_SetCustomReconnectDelay(no, on_nats_reconnect_delay, mb);
    if (s == NATS_OK)
        s = natsOptions_SetPingInterval(no, PING_INTERVAL_MS);
    if (s == NATS_OK)
        s = natsOptions_SetMaxPingsOut(no, MAX_PINGS_OUT);
    /* one delivery thread for all subscriptions instead of one thread per subscription */
    if (s == NATS_OK)
        s = natsOptions_UseGlobalMessageDelivery(no, true);
    if (s == NATS_OK)
        s = natsOptions_SetDisconnectedCB(no, on_nats_disconnected, mb);
    if (s == NATS_OK)
        s = natsOptions_SetReconnectedCB(no, on_nats_reconnected, mb);
    if (s == NATS_OK)
        s = natsOptions_SetClosedCB(no, on_nats_closed, mb);
    /* with a connected callback the first failed attempt returns at once and retries in the
     * background; without one natsConnection_Connect would block through all the retries */
    if (s == NATS_OK)
        s = natsOptions_SetRetryOnFailedConnect(no, true, on_nats_connected, mb);
    if (s != NATS_OK) {
        natsOptions_Destroy(no);
        return NULL;
    }
    return no;
}

struct natsc *natsc_new(struct event_base *base, const struct natsc_opts *o)
{
    if (!o->urls || !o->reply_prefix || !valid_prefix(o->reply_prefix))
        return NULL;
    struct natsc *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->base = base;
    c->prefix_len = strlen(o->reply_prefix);
    memcpy(c->prefix, o->reply_prefix, c->prefix_len + 1);
    c->mb = mbox_new(o, c->prefix_len);
    if (!c->mb) {
        free(c);
        return NULL;
    }
    c->wake_ev = event_new(base, c->mb->efd, EV_READ | EV_PERSIST, on_wake, c);
    c->tmo_ev = evtimer_new(base, on_timeout, c);
    natsOptions *no = NULL;
    if (!c->wake_ev || !c->tmo_ev || event_add(c->wake_ev, NULL) != 0 || !hmap_init(&c->reqs) ||
        !hmap_init(&c->subs) || !(no = make_options(o, c->mb)))
        goto fail;

    mbox_retain(c->mb); /* the connection's, until on_nats_closed */
    natsStatus s = natsConnection_Connect(&c->nc, no);
    natsOptions_Destroy(no);
    if (s != NATS_OK && s != NATS_NOT_YET_CONNECTED) {
        c->nc = NULL;
        mbox_release(c->mb);
        goto fail;
    }
    if (s == NATS_OK) {
        /* The connected handler only reports connects after a failed first attempt. If a
         * handler already ran, the connection dropped meanwhile and the handlers' account is
         * the current one; otherwise any later drop is reported after this. */
        pthread_mutex_lock(&c->mb->mu);
        if (c->mb->conn_events == 0) {
            c->mb->up = true;
            mbox_signal_locked(c->mb);
        }
        pthread_mutex_unlock(&c->mb->mu);
    }

    char wild[NATSC_MAX_PREFIX + 3];
    snprintf(wild, sizeof(wild), "%s.*", c->prefix);
    mbox_retain(c->mb); /* the reply subscription's, until on_nats_sub_complete */
    if (natsConnection_Subscribe(&c->reply_ns, c->nc, wild, on_nats_reply, c->mb) != NATS_OK) {
        c->reply_ns = NULL;
        mbox_release(c->mb);
        goto fail;
    }
    if (natsSubscription_SetOnCompleteCB(c->reply_ns, on_nats_sub_complete, c->mb) != NATS_OK) {
        /* cannot happen on a fresh subscription; if it did, NATS.c may still be calling
         * on_nats_reply later, so the mailbox must stay: its reference is kept, not released */
    }
    return c;

fail:
    natsc_free(c);
    return NULL;
}

void natsc_free(struct natsc *c)
{
    if (!c)
        return;
    if (c->dead)
        *c->dead = true;
    struct mbox *mb = c->mb;
    pthread_mutex_lock(&mb->mu);
    mb->closing = true;
    struct mb_item *queued = mb->head;
    mb->head = mb->tail = NULL;
    mb->count = 0;
    mb->bytes = 0;
    pthread_mutex_unlock(&mb->mu);
    mbox_free_items(queued);

    if (c->wake_ev)
        event_free(c->wake_ev);
    if (c->tmo_ev)
        event_free(c->tmo_ev);
    /* Closing first closes every subscription at once; destroying each afterwards only drops
     * our handle (no UNSUB per subscription on the wire). */
    if (c->nc)
        natsConnection_Close(c->nc);
    if (c->subs.b) {
        for (size_t i = 0; i < (size_t)1 << c->subs.bits; i++) {
            struct hnode *h = c->subs.b[i];
            while (h) {
                struct hnode *next = h->next;
                struct natsc_sub *s = container_of(h, struct natsc_sub, h);
                natsSubscription_Destroy(s->ns);
                free(s);
                h = next;
            }
        }
        free(c->subs.b);
    }
    if (c->reply_ns)
        natsSubscription_Destroy(c->reply_ns);
    if (c->nc)
        natsConnection_Destroy(c->nc);
    struct req_list *lists[] = { &c->inflight, &c->due };
    for (size_t i = 0; i < ARRAY_SIZE(lists); i++) {
        struct req *r = lists[i]->head;
        while (r) {
            struct req *next = r->next;
            free(r);
            r = next;
        }
    }
    free(c->reqs.b);
    mbox_release(mb);
    free(c);
}

bool natsc_connected(const struct natsc *c)
{
    return c->connected;
}

void natsc_set_conn_cb(struct natsc *c, natsc_conn_cb cb, void *arg)
{
    c->conn_cb = cb;
    c->conn_arg = arg;
}

/* The loop's view and NATS.c's must agree: while NATS.c reconnects it would buffer. */
static bool sendable(const struct natsc *c)
{
    return c->connected && natsConnection_Status(c->nc) == NATS_CONN_STATUS_CONNECTED;
}

struct natsc_sub *natsc_subscribe(struct natsc *c, const char *subject, natsc_msg_cb cb, void *arg)
{
    if (!subject || !cb)
        return NULL;
    struct natsc_sub *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    mbox_retain(c->mb); /* the subscription's, until on_nats_sub_complete */
    if (natsConnection_Subscribe(&s->ns, c->nc, subject, on_nats_msg, c->mb) != NATS_OK) {
        mbox_release(c->mb);
        free(s);
        return NULL;
    }
    if (natsSubscription_SetOnCompleteCB(s->ns, on_nats_sub_complete, c->mb) != NATS_OK) {
        /* only if already closed, which natsc_free alone does; keep the reference (see
         * natsc_new) */
    }
    s->c = c;
    s->cb = cb;
    s->arg = arg;
    s->h.key = (uint64_t)natsSubscription_GetID(s->ns);
    /* no message for it can be delivered before this: deliveries happen on this thread */
    hmap_put(&c->subs, &s->h);
    return s;
}

void natsc_unsubscribe(struct natsc_sub *s)
{
    if (!s)
        return;
    hmap_del(&s->c->subs, &s->h);
    natsSubscription_Unsubscribe(s->ns);
    natsSubscription_Destroy(s->ns);
    free(s);
}

int natsc_publish(struct natsc *c, const char *subject, const void *p, size_t n, const char *reply)
{
    if (!sendable(c) || n > INT_MAX || !subject)
        return -1;
    natsStatus s = reply ? natsConnection_PublishRequest(c->nc, subject, reply, p, (int)n)
                         : natsConnection_Publish(c->nc, subject, p, (int)n);
    if (s != NATS_OK)
        return -1;
    c->stats.published++;
    return 0;
}

uint64_t natsc_request(struct natsc *c, const char *subject, const void *p, size_t n,
                       uint32_t timeout_ms, natsc_reply_cb cb, void *arg)
{
    struct req *r = calloc(1, sizeof(*r));
    if (!r)
        return 0;
    r->h.key = ++c->next_id;
    r->cb = cb;
    r->arg = arg;
    hmap_put(&c->reqs, &r->h);
    c->stats.requests++;

    bool sent = false;
    if (sendable(c) && n <= INT_MAX && subject) {
        char reply[NATSC_MAX_PREFIX + 24];
        snprintf(reply, sizeof(reply), "%s.%" PRIu64, c->prefix, r->h.key);
        sent = natsConnection_PublishRequest(c->nc, subject, reply, p, (int)n) == NATS_OK;
    }
    if (!sent) {
        r->state = REQ_DOWN;
        list_append(&c->due, r);
        wake_self(c);
        return r->h.key;
    }
    uint64_t now = mono_ms();
    r->state = REQ_INFLIGHT;
    r->deadline_ms = now + (timeout_ms ? timeout_ms : 1);
    list_insert_by_deadline(&c->inflight, r);
    arm_timer(c, r->deadline_ms, now);
    return r->h.key;
}

void natsc_cancel(struct natsc *c, uint64_t id)
{
    struct hnode *h = id ? hmap_get(&c->reqs, id) : NULL;
    if (!h)
        return;
    struct req *r = container_of(h, struct req, h);
    hmap_del(&c->reqs, h);
    list_unlink(r->state == REQ_DOWN ? &c->due : &c->inflight, r);
    free(r);
}

size_t natsc_pending(const struct natsc *c)
{
    return c->reqs.n;
}

uint32_t natsc_inbound_queued(const struct natsc *c)
{
    pthread_mutex_lock(&c->mb->mu);
    uint32_t n = c->mb->count;
    pthread_mutex_unlock(&c->mb->mu);
    return n;
}

const struct natsc_stats *natsc_stats(const struct natsc *c)
{
    return &c->stats;
}

size_t natsc_live_mailboxes(void)
{
    return atomic_load(&live_mailboxes);
}
