/* The shared-memory session store (see sesscache.h). */
#include "sesscache.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>

#define SCACHE_MAGIC 0x6e68677773636831ULL /* "nhgwsch1" */
#define MAX_STRIPES 64u
#define LINE 64u

/* One slot's bookkeeping; its data lives in a separate array so a set's metadata shares a few
 * cache lines. */
struct slot_meta {
    uint8_t id[SCACHE_ID_MAX];
    int64_t expires; /* unix seconds */
    uint64_t used;   /* the stripe's tick at the last store or hit: least recently used goes */
    uint32_t len;
    uint8_t id_len; /* 0: the slot is empty */
    uint8_t pad[11];
};
_Static_assert(sizeof(struct slot_meta) == SCACHE_SLOT_META, "slot metadata is one cache line");

struct stripe {
    pthread_mutex_t lock; /* process-shared, robust */
    uint64_t tick;
    uint64_t entries; /* occupied slots in the stripe's sets: written under the lock, read without */
} __attribute__((aligned(LINE)));

/* The mapping starts with this header, then the stripes, the slot metadata and the slot data. */
struct scache {
    uint64_t magic;
    size_t mapped;
    size_t stride; /* bytes of data per slot (a multiple of LINE) */
    uint32_t nsets;
    uint32_t nstripes;
    uint64_t seed;
    size_t meta_off, data_off;
    struct scache_stats st; /* updated with relaxed atomics by every process */
} __attribute__((aligned(LINE)));

static size_t round_up(size_t n, size_t to)
{
    return (n + to - 1) / to * to;
}

static struct stripe *stripes(struct scache *c)
{
    return (struct stripe *)((char *)c + sizeof(struct scache));
}

static struct slot_meta *set_meta(struct scache *c, uint32_t set)
{
    return (struct slot_meta *)((char *)c + c->meta_off) + (size_t)set * SCACHE_WAYS;
}

static uint8_t *slot_data(struct scache *c, uint32_t set, unsigned way)
{
    return (uint8_t *)c + c->data_off + ((size_t)set * SCACHE_WAYS + way) * c->stride;
}

static void count(uint64_t *field)
{
    __atomic_fetch_add(field, 1, __ATOMIC_RELAXED);
}

/* The caller holds stripe si's lock, the only writer of its count. */
static void entries_add(struct scache *c, uint32_t si, int d)
{
    uint64_t *e = &stripes(c)[si].entries;
    __atomic_store_n(e, *e + (uint64_t)(int64_t)d, __ATOMIC_RELAXED);
}

struct scache *scache_new(size_t bytes, size_t slot_data_max)
{
    size_t stride = round_up(slot_data_max ? slot_data_max : 1, LINE);
    size_t per_set = SCACHE_WAYS * (SCACHE_SLOT_META + stride);
    size_t fixed = sizeof(struct scache) + MAX_STRIPES * sizeof(struct stripe);
    if (bytes < fixed + per_set || slot_data_max > UINT32_MAX) {
        errno = EINVAL;
        return NULL;
    }
    size_t nsets = (bytes - fixed) / per_set;
    if (nsets > UINT32_MAX / SCACHE_WAYS)
        nsets = UINT32_MAX / SCACHE_WAYS;
    uint32_t nstripes = nsets < MAX_STRIPES ? (uint32_t)nsets : MAX_STRIPES;
    size_t meta_off = sizeof(struct scache) + nstripes * sizeof(struct stripe);
    size_t data_off = meta_off + nsets * SCACHE_WAYS * SCACHE_SLOT_META;
    size_t mapped = data_off + nsets * SCACHE_WAYS * stride;
    void *p = mmap(NULL, mapped, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    struct scache *c = p;
    c->magic = SCACHE_MAGIC;
    c->mapped = mapped;
    c->stride = stride;
    c->nsets = (uint32_t)nsets;
    c->nstripes = nstripes;
    c->meta_off = meta_off;
    c->data_off = data_off;
    /* keys the set choice, so nobody can predict which ids share a set */
    if (getrandom(&c->seed, sizeof(c->seed), 0) != sizeof(c->seed))
        c->seed = (uint64_t)(uintptr_t)p ^ 0x9e3779b97f4a7c15ULL;
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    int r = pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
    if (r == 0)
        r = pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
    for (uint32_t i = 0; r == 0 && i < nstripes; i++)
        r = pthread_mutex_init(&stripes(c)[i].lock, &a);
    pthread_mutexattr_destroy(&a);
    if (r != 0) {
        munmap(p, mapped);
        errno = r;
        return NULL;
    }
    return c;
}

void scache_free(struct scache *c)
{
    if (c)
        munmap(c, c->mapped);
}

size_t scache_capacity(const struct scache *c)
{
    return (size_t)c->nsets * SCACHE_WAYS;
}

size_t scache_max_value(const struct scache *c)
{
    return c->stride;
}

size_t scache_mapped_bytes(const struct scache *c)
{
    return c->mapped;
}

/* FNV-1a over the id, seeded, then a 64-bit finaliser (splitmix64's) for the modulo. */
static uint32_t set_of(const struct scache *c, const uint8_t *id, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ULL ^ c->seed;
    for (size_t i = 0; i < n; i++) {
        h ^= id[i];
        h *= 0x100000001b3ULL;
    }
    h ^= h >> 30;
    h *= 0xbf58476d1ce4e5b9ULL;
    h ^= h >> 27;
    h *= 0x94d049bb133111ebULL;
    h ^= h >> 31;
    return (uint32_t)(h % c->nsets);
}

/* Empty every slot of a stripe: its previous holder died, possibly in the middle of a write. */
static void wipe_stripe(struct scache *c, uint32_t si)
{
    for (uint32_t set = si; set < c->nsets; set += c->nstripes) {
        struct slot_meta *m = set_meta(c, set);
        for (unsigned w = 0; w < SCACHE_WAYS; w++)
            m[w].id_len = 0;
    }
    /* whatever the count was (the holder may have died between a slot and its count) */
    __atomic_store_n(&stripes(c)[si].entries, 0, __ATOMIC_RELAXED);
}

static bool lock_stripe(struct scache *c, uint32_t si)
{
    struct stripe *s = &stripes(c)[si];
    int r = pthread_mutex_lock(&s->lock);
    if (r == EOWNERDEAD) {
        wipe_stripe(c, si);
        count(&c->st.recovered);
        if (pthread_mutex_consistent(&s->lock) != 0) {
            pthread_mutex_unlock(&s->lock);
            return false;
        }
        return true;
    }
    return r == 0;
}

static void unlock_stripe(struct scache *c, uint32_t si)
{
    pthread_mutex_unlock(&stripes(c)[si].lock);
}

static int find(struct slot_meta *m, const uint8_t *id, size_t id_len)
{
    for (unsigned w = 0; w < SCACHE_WAYS; w++)
        if (m[w].id_len == id_len && memcmp(m[w].id, id, id_len) == 0)
            return (int)w;
    return -1;
}

static bool id_ok(size_t id_len)
{
    return id_len >= 1 && id_len <= SCACHE_ID_MAX;
}

bool scache_put(struct scache *c, const uint8_t *id, size_t id_len, const void *val, size_t len,
                int64_t expires, int64_t now)
{
    if (!id_ok(id_len) || len > c->stride || expires <= now) {
        if (len > c->stride)
            count(&c->st.too_large);
        count(&c->st.rejected);
        return false;
    }
    uint32_t set = set_of(c, id, id_len);
    uint32_t si = set % c->nstripes;
    if (!lock_stripe(c, si)) {
        count(&c->st.rejected);
        return false;
    }
    struct slot_meta *m = set_meta(c, set);
    int w = find(m, id, id_len);
    if (w < 0) {
        /* an empty slot, else an expired one, else the least recently used */
        int expired = -1, lru = 0;
        for (unsigned i = 0; i < SCACHE_WAYS && w < 0; i++) {
            if (m[i].id_len == 0)
                w = (int)i;
            else if (m[i].expires <= now && expired < 0)
                expired = (int)i;
            else if (m[i].used < m[lru].used)
                lru = (int)i;
        }
        if (w < 0 && expired >= 0) {
            w = expired;
            count(&c->st.expired);
        }
        if (w < 0) {
            w = lru;
            count(&c->st.evictions);
        }
    }
    struct slot_meta *s = &m[w];
    if (s->id_len == 0)
        entries_add(c, si, 1);
    memcpy(slot_data(c, set, (unsigned)w), val, len);
    memcpy(s->id, id, id_len);
    s->id_len = (uint8_t)id_len;
    s->len = (uint32_t)len;
    s->expires = expires;
    s->used = ++stripes(c)[si].tick;
    unlock_stripe(c, si);
    count(&c->st.stores);
    return true;
}

ssize_t scache_get(struct scache *c, const uint8_t *id, size_t id_len, int64_t now, void *out, size_t cap)
{
    ssize_t r = -1;
    if (id_ok(id_len)) {
        uint32_t set = set_of(c, id, id_len);
        uint32_t si = set % c->nstripes;
        if (lock_stripe(c, si)) {
            struct slot_meta *m = set_meta(c, set);
            int w = find(m, id, id_len);
            if (w >= 0 && m[w].expires <= now) {
                m[w].id_len = 0;
                entries_add(c, si, -1);
                count(&c->st.expired);
            } else if (w >= 0 && m[w].len <= cap) {
                memcpy(out, slot_data(c, set, (unsigned)w), m[w].len);
                m[w].used = ++stripes(c)[si].tick;
                r = (ssize_t)m[w].len;
            }
            unlock_stripe(c, si);
        }
    }
    count(r >= 0 ? &c->st.hits : &c->st.misses);
    return r;
}

void scache_remove(struct scache *c, const uint8_t *id, size_t id_len)
{
    if (!id_ok(id_len))
        return;
    uint32_t set = set_of(c, id, id_len);
    uint32_t si = set % c->nstripes;
    if (!lock_stripe(c, si))
        return;
    struct slot_meta *m = set_meta(c, set);
    int w = find(m, id, id_len);
    if (w >= 0) {
        m[w].id_len = 0;
        entries_add(c, si, -1);
    }
    unlock_stripe(c, si);
}

void scache_get_stats(const struct scache *c, struct scache_stats *out)
{
    const uint64_t *s = (const uint64_t *)&c->st;
    uint64_t *d = (uint64_t *)out;
    for (size_t i = 0; i < sizeof(*out) / sizeof(uint64_t); i++)
        d[i] = __atomic_load_n(&s[i], __ATOMIC_RELAXED);
}

size_t scache_entries(const struct scache *c)
{
    const struct stripe *s = (const struct stripe *)((const char *)c + sizeof(struct scache));
    uint64_t n = 0;
    for (uint32_t i = 0; i < c->nstripes; i++)
        n += __atomic_load_n(&s[i].entries, __ATOMIC_RELAXED);
    return (size_t)n;
}

bool scache_test_hold_lock(struct scache *c, const uint8_t *id, size_t id_len)
{
    if (!id_ok(id_len))
        return false;
    return lock_stripe(c, set_of(c, id, id_len) % c->nstripes);
}
