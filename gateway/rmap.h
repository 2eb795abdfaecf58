/* rmap: an intrusive string-keyed hash map (chained, power-of-two buckets). Nodes live inside the
 * caller's objects, so a map costs one pointer per bucket and nothing per entry. The hash is
 * seeded per process so keys chosen by peers cannot be lined up into one chain in advance. */
#ifndef NHGW_RMAP_H
#define NHGW_RMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct rnode {
    struct rnode *next;
    uint64_t hash;
    const char *key; /* owned by the caller; must stay valid while the node is in a map */
    size_t len;
};

struct rmap {
    struct rnode **b;
    size_t nb; /* buckets, a power of two (0 before the first insertion) */
    size_t n;  /* nodes */
};

/* Insert n (key/len set by the caller). Growing may fail silently: the map stays correct, only
 * its chains get longer. Returns -1 only when the very first bucket array cannot be allocated. */
int rmap_put(struct rmap *m, struct rnode *n);
struct rnode *rmap_get(const struct rmap *m, const char *key, size_t len);
/* Remove n, which must be in m. */
void rmap_del(struct rmap *m, struct rnode *n);
/* Bucket i's chain (i < nb), for incremental sweeps. */
struct rnode *rmap_bucket(const struct rmap *m, size_t i);
void rmap_free(struct rmap *m);

#endif
