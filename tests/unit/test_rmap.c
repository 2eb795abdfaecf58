/* rmap: the intrusive string map behind the worker's device and topic tables. */
#include "../lib/test.h"

#include <stdio.h>
#include <stdlib.h>

#include "rmap.h"

struct item {
    struct rnode node;
    char key[32];
    int value;
};

static void item_init(struct item *it, int i)
{
    snprintf(it->key, sizeof(it->key), "device-%d", i);
    it->node.key = it->key;
    it->node.len = strlen(it->key);
    it->value = i;
}

TEST(rmap_put_get_del_many)
{
    enum { N = 20000 };
    struct item *items = calloc(N, sizeof(*items));
    struct rmap m = { 0 };
    ASSERT(rmap_get(&m, "x", 1) == NULL);
    for (int i = 0; i < N; i++) {
        item_init(&items[i], i);
        ASSERT_EQ(rmap_put(&m, &items[i].node), 0);
    }
    ASSERT_EQ(m.n, (size_t)N);
    ASSERT(m.nb >= (size_t)N); /* grew with the load */
    for (int i = 0; i < N; i++) {
        char k[32];
        snprintf(k, sizeof(k), "device-%d", i);
        struct item *it = (struct item *)rmap_get(&m, k, strlen(k));
        ASSERT(it == &items[i]);
    }
    /* a prefix or extension of a key is a different key */
    ASSERT(rmap_get(&m, "device-1", 7) == NULL);
    ASSERT(rmap_get(&m, "device-10000x", 13) == NULL);
    for (int i = 0; i < N; i += 2)
        rmap_del(&m, &items[i].node);
    ASSERT_EQ(m.n, (size_t)N / 2);
    for (int i = 0; i < N; i++) {
        struct item *it = (struct item *)rmap_get(&m, items[i].key, items[i].node.len);
        ASSERT(i % 2 ? it == &items[i] : it == NULL);
    }
    /* every remaining node is reachable by sweeping the buckets exactly once */
    size_t seen = 0;
    for (size_t b = 0; b < m.nb; b++)
        for (struct rnode *n = rmap_bucket(&m, b); n; n = n->next)
            seen++;
    ASSERT_EQ(seen, (size_t)N / 2);
    ASSERT(rmap_bucket(&m, m.nb) == NULL);
    rmap_free(&m);
    free(items);
}

TEST(rmap_keys_with_nul_bytes_and_duplicates)
{
    struct rmap m = { 0 };
    struct item a, b;
    memcpy(a.key, "a\0b", 3);
    memcpy(b.key, "a\0c", 3);
    a.node.key = a.key;
    a.node.len = 3;
    b.node.key = b.key;
    b.node.len = 3;
    ASSERT_EQ(rmap_put(&m, &a.node), 0);
    ASSERT_EQ(rmap_put(&m, &b.node), 0);
    ASSERT(rmap_get(&m, "a\0b", 3) == &a.node);
    ASSERT(rmap_get(&m, "a\0c", 3) == &b.node);
    ASSERT(rmap_get(&m, "a", 1) == NULL);
    rmap_del(&m, &a.node);
    ASSERT(rmap_get(&m, "a\0b", 3) == NULL);
    ASSERT(rmap_get(&m, "a\0c", 3) == &b.node);
    rmap_free(&m);
}
