/* sesscache: the shared-memory TLS session store (bounds, expiry, eviction, hostile ids, use
 * from several processes, and a process that dies holding a lock). */
#include "../lib/test.h"

#include <errno.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "config.h"
#include "sesscache.h"

#define NOW 1700000000

static void make_id(uint8_t *id, size_t len, uint32_t tag)
{
    for (size_t i = 0; i < len; i++)
        id[i] = (uint8_t)(tag * 31u + i * 7u + (tag >> 8));
    memcpy(id, &tag, len < sizeof(tag) ? len : sizeof(tag));
}

/* A value whose every byte depends on the id and position, so a torn or misplaced copy shows. */
static size_t make_val(uint8_t *out, size_t len, uint32_t tag)
{
    for (size_t i = 0; i < len; i++)
        out[i] = (uint8_t)((tag * 2654435761u) >> (i % 24)) ^ (uint8_t)i;
    return len;
}

static struct scache_stats stats(struct scache *c)
{
    struct scache_stats s;
    scache_get_stats(c, &s);
    return s;
}

/* A store of exactly one set (8 slots) of 64-byte values. */
static struct scache *one_set(void)
{
    for (size_t bytes = 1024; bytes < 65536; bytes += 64) {
        struct scache *c = scache_new(bytes, 64);
        if (c) {
            ASSERT_EQ(scache_capacity(c), SCACHE_WAYS);
            return c;
        }
    }
    TEST_FAIL("no size gives a one-set store");
}

TEST(sesscache_put_get_replace_remove)
{
    struct scache *c = scache_new(1 << 20, 3008);
    ASSERT(c != NULL);
    ASSERT(scache_mapped_bytes(c) <= (size_t)1 << 20);
    ASSERT(scache_capacity(c) >= 300);
    ASSERT_EQ(scache_max_value(c), 3008);
    uint8_t id[32], v[3008], out[3008];
    make_id(id, 32, 1);
    ASSERT_EQ(scache_entries(c), 0);
    ASSERT_EQ(scache_get(c, id, 32, NOW, out, sizeof(out)), -1);
    make_val(v, 1000, 1);
    ASSERT(scache_put(c, id, 32, v, 1000, NOW + 7200, NOW));
    ASSERT_EQ(scache_entries(c), 1);
    ASSERT_EQ(scache_get(c, id, 32, NOW, out, sizeof(out)), 1000);
    ASSERT_MEM_EQ(out, 1000, v, 1000);
    /* a buffer too small for the value: a miss, never a partial copy */
    ASSERT_EQ(scache_get(c, id, 32, NOW, out, 999), -1);
    /* the same id again replaces the value */
    make_val(v, 500, 2);
    ASSERT(scache_put(c, id, 32, v, 500, NOW + 7200, NOW));
    ASSERT_EQ(scache_entries(c), 1); /* replaced in place, not a second entry */
    ASSERT_EQ(scache_get(c, id, 32, NOW, out, sizeof(out)), 500);
    ASSERT_MEM_EQ(out, 500, v, 500);
    /* a prefix of an id is another id */
    ASSERT_EQ(scache_get(c, id, 31, NOW, out, sizeof(out)), -1);
    /* removing an id that is not there changes nothing */
    scache_remove(c, id, 31);
    ASSERT_EQ(scache_entries(c), 1);
    scache_remove(c, id, 32);
    ASSERT_EQ(scache_entries(c), 0);
    scache_remove(c, id, 32); /* twice: no underflow */
    ASSERT_EQ(scache_entries(c), 0);
    ASSERT_EQ(scache_get(c, id, 32, NOW, out, sizeof(out)), -1);
    struct scache_stats s = stats(c);
    ASSERT_EQ(s.stores, 2);
    ASSERT_EQ(s.hits, 2);
    ASSERT_EQ(s.misses, 4);
    ASSERT_EQ(s.evictions + s.expired + s.rejected + s.too_large + s.recovered, 0);
    scache_free(c);
}

TEST(sesscache_id_length_limits)
{
    struct scache *c = scache_new(1 << 20, 256);
    ASSERT(c != NULL);
    uint8_t id[SCACHE_ID_MAX + 1], v[16] = "value", out[256];
    make_id(id, sizeof(id), 9);
    /* the longest id a TLS session can have is stored and found */
    ASSERT(scache_put(c, id, SCACHE_ID_MAX, v, sizeof(v), NOW + 10, NOW));
    ASSERT_EQ(scache_get(c, id, SCACHE_ID_MAX, NOW, out, sizeof(out)), (ssize_t)sizeof(v));
    /* one byte more is refused by put and misses on get (peer-supplied ids reach get) */
    ASSERT(!scache_put(c, id, SCACHE_ID_MAX + 1, v, sizeof(v), NOW + 10, NOW));
    ASSERT_EQ(scache_get(c, id, SCACHE_ID_MAX + 1, NOW, out, sizeof(out)), -1);
    ASSERT_EQ(scache_get(c, id, 255, NOW, out, sizeof(out)), -1);
    /* so is the empty id */
    ASSERT(!scache_put(c, id, 0, v, sizeof(v), NOW + 10, NOW));
    ASSERT_EQ(scache_get(c, id, 0, NOW, out, sizeof(out)), -1);
    scache_remove(c, id, SCACHE_ID_MAX + 1); /* harmless */
    /* a one-byte id works */
    ASSERT(scache_put(c, id, 1, v, 3, NOW + 10, NOW));
    ASSERT_EQ(scache_get(c, id, 1, NOW, out, sizeof(out)), 3);
    ASSERT_EQ(scache_get(c, id, SCACHE_ID_MAX, NOW, out, sizeof(out)), (ssize_t)sizeof(v));
    ASSERT_EQ(stats(c).rejected, 2);
    ASSERT_EQ(stats(c).too_large, 0); /* refused for the id, not the size */
    ASSERT_EQ(scache_entries(c), 2);
    scache_free(c);
}

TEST(sesscache_oversize_values_not_stored)
{
    struct scache *c = scache_new(1 << 20, 3008);
    ASSERT(c != NULL);
    size_t max = scache_max_value(c);
    uint8_t *v = malloc(max + 1), *out = malloc(max + 1), id[32];
    make_val(v, max + 1, 5);
    make_id(id, 32, 5);
    ASSERT(!scache_put(c, id, 32, v, max + 1, NOW + 10, NOW));
    ASSERT_EQ(scache_get(c, id, 32, NOW, out, max + 1), -1);
    ASSERT_EQ(scache_entries(c), 0);
    ASSERT(scache_put(c, id, 32, v, max, NOW + 10, NOW));
    ASSERT_EQ(scache_get(c, id, 32, NOW, out, max + 1), (ssize_t)max);
    ASSERT_MEM_EQ(out, max, v, max);
    /* a larger value for the same id does not clobber the stored one */
    ASSERT(!scache_put(c, id, 32, v, max + 1, NOW + 10, NOW));
    ASSERT_EQ(scache_get(c, id, 32, NOW, out, max + 1), (ssize_t)max);
    ASSERT_EQ(stats(c).rejected, 2);
    ASSERT_EQ(stats(c).too_large, 2);
    ASSERT_EQ(scache_entries(c), 1);
    free(v);
    free(out);
    scache_free(c);
}

TEST(sesscache_expiry)
{
    struct scache *c = scache_new(1 << 20, 256);
    ASSERT(c != NULL);
    uint8_t id[32], v[100], out[256];
    make_id(id, 32, 3);
    make_val(v, sizeof(v), 3);
    ASSERT(scache_put(c, id, 32, v, sizeof(v), NOW + 10, NOW));
    ASSERT_EQ(scache_get(c, id, 32, NOW + 9, out, sizeof(out)), (ssize_t)sizeof(v));
    ASSERT_EQ(scache_entries(c), 1);
    ASSERT_EQ(scache_get(c, id, 32, NOW + 10, out, sizeof(out)), -1);
    ASSERT_EQ(stats(c).expired, 1);
    ASSERT_EQ(scache_entries(c), 0);
    /* dropped, not merely hidden: an earlier clock does not bring it back */
    ASSERT_EQ(scache_get(c, id, 32, NOW, out, sizeof(out)), -1);
    /* a value that is already expired is not stored */
    ASSERT(!scache_put(c, id, 32, v, sizeof(v), NOW, NOW));
    ASSERT(!scache_put(c, id, 32, v, sizeof(v), NOW - 1, NOW));
    ASSERT_EQ(scache_get(c, id, 32, NOW - 5, out, sizeof(out)), -1);
    ASSERT_EQ(scache_entries(c), 0);
    ASSERT_EQ(stats(c).rejected, 2);
    ASSERT_EQ(stats(c).too_large, 0);
    ASSERT_EQ(stats(c).expired, 1);
    scache_free(c);
}

TEST(sesscache_eviction_lru_within_a_set)
{
    struct scache *c = one_set();
    uint8_t id[32], v[64], out[64];
    for (uint32_t i = 0; i < SCACHE_WAYS; i++) {
        make_id(id, 32, i);
        ASSERT(scache_put(c, id, 32, v, make_val(v, 64, i), NOW + 100, NOW));
        ASSERT_EQ(scache_entries(c), i + 1);
    }
    ASSERT_EQ(stats(c).evictions, 0);
    /* touch 0: now 1 is the least recently used */
    make_id(id, 32, 0);
    ASSERT_EQ(scache_get(c, id, 32, NOW, out, sizeof(out)), 64);
    make_id(id, 32, 100);
    ASSERT(scache_put(c, id, 32, v, make_val(v, 64, 100), NOW + 100, NOW));
    ASSERT_EQ(stats(c).evictions, 1);
    ASSERT_EQ(scache_entries(c), SCACHE_WAYS); /* one replaced another: never more than the slots */
    for (uint32_t i = 0; i < SCACHE_WAYS; i++) {
        make_id(id, 32, i);
        ssize_t n = scache_get(c, id, 32, NOW, out, sizeof(out));
        if (i == 1) {
            ASSERT_EQ(n, -1);
        } else {
            ASSERT_EQ(n, 64);
            make_val(v, 64, i);
            ASSERT_MEM_EQ(out, 64, v, 64);
        }
    }
    /* an expired slot is reused before any live one is evicted */
    make_id(id, 32, 200);
    ASSERT(scache_put(c, id, 32, v, make_val(v, 64, 200), NOW + 5, NOW));
    ASSERT_EQ(stats(c).evictions, 2); /* the least recently used was 100: the lookups touched the rest */
    make_id(id, 32, 201);
    ASSERT_EQ(stats(c).expired, 0);
    ASSERT(scache_put(c, id, 32, v, make_val(v, 64, 201), NOW + 100, NOW + 6));
    ASSERT_EQ(stats(c).evictions, 2);
    ASSERT_EQ(stats(c).expired, 1); /* 200's slot, reused: an expiry, not an eviction */
    ASSERT_EQ(scache_entries(c), SCACHE_WAYS);
    make_id(id, 32, 200);
    ASSERT_EQ(scache_get(c, id, 32, NOW + 6, out, sizeof(out)), -1);
    make_id(id, 32, 100);
    ASSERT_EQ(scache_get(c, id, 32, NOW + 6, out, sizeof(out)), -1);
    make_id(id, 32, 201);
    ASSERT_EQ(scache_get(c, id, 32, NOW + 6, out, sizeof(out)), 64);
    /* the lookups of the gone ids dropped nothing: the count is still the full set */
    ASSERT_EQ(scache_entries(c), SCACHE_WAYS);
    ASSERT_EQ(stats(c).expired, 1);
    /* removing every id brings it back to zero (gone ones included: nothing to remove) */
    for (uint32_t i = 0; i < SCACHE_WAYS; i++) {
        make_id(id, 32, i);
        scache_remove(c, id, 32);
    }
    make_id(id, 32, 100);
    scache_remove(c, id, 32);
    make_id(id, 32, 201);
    scache_remove(c, id, 32);
    ASSERT_EQ(scache_entries(c), 0);
    scache_free(c);
}

TEST(sesscache_memory_is_bounded)
{
    ASSERT(scache_new(1000, 3008) == NULL);
    ASSERT_EQ(errno, EINVAL);
    struct scache *c = scache_new(1 << 20, 256);
    ASSERT(c != NULL);
    ASSERT(scache_mapped_bytes(c) <= (size_t)1 << 20);
    size_t cap = scache_capacity(c);
    uint8_t id[32], v[256], out[256];
    uint32_t n = (uint32_t)cap * 10;
    for (uint32_t i = 0; i < n; i++) {
        make_id(id, 32, i);
        ASSERT(scache_put(c, id, 32, v, make_val(v, 200, i), NOW + 100, NOW));
    }
    size_t found = 0;
    for (uint32_t i = 0; i < n; i++) {
        make_id(id, 32, i);
        found += scache_get(c, id, 32, NOW, out, sizeof(out)) == 200;
    }
    /* every slot holds one of them (ten times the capacity went in), and no more fit */
    ASSERT_EQ(found, cap);
    ASSERT_EQ(stats(c).evictions, n - cap);
    ASSERT_EQ(scache_entries(c), cap);
    scache_free(c);
}

/* Several processes store, look up and remove at once; every hit must be exactly the value that
 * was stored under that id (a torn or crossed copy fails). */
TEST(sesscache_concurrent_processes)
{
    enum { PROCS = 4, OPS = 20000, IDS = 2000 };
    struct scache *c = scache_new(1 << 20, 512);
    ASSERT(c != NULL);
    pid_t pids[PROCS];
    for (int p = 0; p < PROCS; p++) {
        pids[p] = fork();
        ASSERT(pids[p] >= 0);
        if (pids[p] == 0) {
            uint32_t r = 12345u + (uint32_t)p * 7919u;
            uint8_t id[32], v[512], out[512];
            int bad = 0;
            for (int i = 0; i < OPS; i++) {
                r = r * 1103515245u + 12345u;
                uint32_t tag = (r >> 8) % IDS;
                make_id(id, 32, tag);
                size_t len = 64 + tag % 400;
                switch ((r >> 4) % 4) {
                case 0:
                    scache_put(c, id, 32, v, make_val(v, len, tag), NOW + 100, NOW);
                    break;
                case 1:
                    scache_remove(c, id, 32);
                    break;
                default: {
                    ssize_t n = scache_get(c, id, 32, NOW, out, sizeof(out));
                    make_val(v, len, tag);
                    if (n >= 0 && ((size_t)n != len || memcmp(out, v, len) != 0))
                        bad++;
                }
                }
            }
            _exit(bad ? 1 : 0);
        }
    }
    for (int p = 0; p < PROCS; p++) {
        int st;
        ASSERT_EQ(waitpid(pids[p], &st, 0), pids[p]);
        ASSERT(WIFEXITED(st));
        ASSERT_EQ(WEXITSTATUS(st), 0);
    }
    struct scache_stats s = stats(c);
    ASSERT(s.hits > 1000);
    ASSERT(s.stores > 1000);
    ASSERT_EQ(s.recovered, 0);
    /* the count kept by every process's stores and removes matches what the store holds */
    uint8_t id[32], out[512];
    size_t held = 0;
    for (uint32_t tag = 0; tag < IDS; tag++) {
        make_id(id, 32, tag);
        held += scache_get(c, id, 32, NOW, out, sizeof(out)) >= 0;
    }
    ASSERT(held > 0);
    ASSERT_EQ(scache_entries(c), held);
    ASSERT(held <= scache_capacity(c));
    scache_free(c);
}

/* A worker killed while it holds a stripe's lock must not wedge the others: the next locker
 * recovers the lock and drops what that stripe held (it may be half-written). */
TEST(sesscache_lock_holder_dies)
{
    struct scache *c = scache_new(1 << 20, 256);
    ASSERT(c != NULL);
    uint8_t id[32], v[100], out[256];
    make_id(id, 32, 42);
    /* others, most of them under other locks, which must keep theirs */
    for (uint32_t tag = 1000; tag < 1200; tag++) {
        make_id(id, 32, tag);
        ASSERT(scache_put(c, id, 32, v, make_val(v, sizeof(v), tag), NOW + 100, NOW));
    }
    make_id(id, 32, 42);
    make_val(v, sizeof(v), 42);
    ASSERT(scache_put(c, id, 32, v, sizeof(v), NOW + 100, NOW));
    ASSERT_EQ(scache_entries(c), 201);
    int fds[2];
    ASSERT_EQ(pipe(fds), 0);
    pid_t pid = fork();
    ASSERT(pid >= 0);
    if (pid == 0) {
        bool held = scache_test_hold_lock(c, id, 32);
        (void)!write(fds[1], held ? "1" : "0", 1);
        for (;;)
            pause();
    }
    char ok = 0;
    ASSERT_EQ(read(fds[0], &ok, 1), 1);
    ASSERT_EQ(ok, '1');
    ASSERT_EQ(kill(pid, SIGKILL), 0);
    int st;
    ASSERT_EQ(waitpid(pid, &st, 0), pid);
    ASSERT(WIFSIGNALED(st));
    close(fds[0]);
    close(fds[1]);
    /* returns (a plain mutex would block forever here) and misses: the stripe was dropped */
    ASSERT_EQ(scache_get(c, id, 32, NOW, out, sizeof(out)), -1);
    ASSERT_EQ(stats(c).recovered, 1);
    /* the count lost exactly the dropped stripe's entries (about 200/64 of the others) */
    size_t held = 0;
    for (uint32_t tag = 1000; tag < 1200; tag++) {
        make_id(id, 32, tag);
        held += scache_get(c, id, 32, NOW, out, sizeof(out)) >= 0;
    }
    ASSERT(held >= 150);
    ASSERT_EQ(scache_entries(c), held);
    /* and the stripe works again */
    make_id(id, 32, 42);
    ASSERT(scache_put(c, id, 32, v, sizeof(v), NOW + 100, NOW));
    ASSERT_EQ(scache_entries(c), held + 1);
    ASSERT_EQ(scache_get(c, id, 32, NOW, out, sizeof(out)), (ssize_t)sizeof(v));
    ASSERT_MEM_EQ(out, sizeof(v), v, sizeof(v));
    ASSERT_EQ(stats(c).recovered, 1);
    scache_free(c);
}

/* --session-cache-size: 0 turns it off, anything else must hold a useful number of sessions. */
static int load_size(const char *v, struct cfg *c, char *err, size_t errlen)
{
    char *argv[] = { "nhgw", "--cert", "c.pem", "--key", "k.pem", "--device-ca", "ca.pem",
                     "--session-cache-size", (char *)v, NULL };
    return cfg_load(c, v ? 9 : 7, argv, err, errlen);
}

TEST(sesscache_config_size)
{
    struct cfg c;
    char err[256];
    ASSERT_EQ(load_size(NULL, &c, err, sizeof(err)), 0);
    ASSERT_EQ(c.session_cache_size, 64ull << 20);
    cfg_free(&c);
    ASSERT_EQ(load_size("0", &c, err, sizeof(err)), 0);
    ASSERT_EQ(c.session_cache_size, 0);
    cfg_free(&c);
    ASSERT_EQ(load_size("1MiB", &c, err, sizeof(err)), 0);
    ASSERT_EQ(c.session_cache_size, 1 << 20);
    cfg_free(&c);
    ASSERT_EQ(load_size("1048575", &c, err, sizeof(err)), -1);
    ASSERT(strstr(err, "session-cache-size") != NULL);
    cfg_free(&c);
    ASSERT_EQ(load_size("64GiB", &c, err, sizeof(err)), 0);
    cfg_free(&c);
    ASSERT_EQ(load_size("65GiB", &c, err, sizeof(err)), -1);
    cfg_free(&c);
    /* the smallest accepted size makes a working store within that size */
    struct scache *sc = scache_new(1 << 20, 3008);
    ASSERT(sc != NULL);
    ASSERT(scache_capacity(sc) >= 300);
    scache_free(sc);
}
