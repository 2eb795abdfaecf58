/* See rmap.h. */
#include "rmap.h"

#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

static uint64_t seed;

static uint64_t hash_of(const char *key, size_t len)
{
    if (!seed) {
        uint64_t s = 0;
        if (getrandom(&s, sizeof(s), 0) != (ssize_t)sizeof(s))
            s = (uint64_t)(uintptr_t)&s;
        seed = s | 1;
    }
    /* FNV-1a over the seed and key, finished with a 64-bit mixer (splitmix64) */
    uint64_t h = 0xcbf29ce484222325ULL ^ seed;
    for (size_t i = 0; i < len; i++) {
        h ^= (uint8_t)key[i];
        h *= 0x100000001b3ULL;
    }
    h ^= h >> 30;
    h *= 0xbf58476d1ce4e5b9ULL;
    h ^= h >> 27;
    h *= 0x94d049bb133111ebULL;
    h ^= h >> 31;
    return h;
}

static void grow(struct rmap *m)
{
    size_t nb = m->nb ? m->nb * 2 : 64;
    struct rnode **b = calloc(nb, sizeof(*b));
    if (!b)
        return;
    for (size_t i = 0; i < m->nb; i++) {
        struct rnode *n = m->b[i];
        while (n) {
            struct rnode *next = n->next;
            size_t j = n->hash & (nb - 1);
            n->next = b[j];
            b[j] = n;
            n = next;
        }
    }
    free(m->b);
    m->b = b;
    m->nb = nb;
}

int rmap_put(struct rmap *m, struct rnode *n)
{
    if (m->n >= m->nb)
        grow(m);
    if (!m->nb)
        return -1;
    n->hash = hash_of(n->key, n->len);
    size_t i = n->hash & (m->nb - 1);
    n->next = m->b[i];
    m->b[i] = n;
    m->n++;
    return 0;
}

struct rnode *rmap_get(const struct rmap *m, const char *key, size_t len)
{
    if (!m->nb)
        return NULL;
    uint64_t h = hash_of(key, len);
    for (struct rnode *n = m->b[h & (m->nb - 1)]; n; n = n->next)
        if (n->hash == h && n->len == len && memcmp(n->key, key, len) == 0)
            return n;
    return NULL;
}

void rmap_del(struct rmap *m, struct rnode *n)
{
    struct rnode **pp = &m->b[n->hash & (m->nb - 1)];
    while (*pp && *pp != n)
        pp = &(*pp)->next;
    if (*pp) {
        *pp = n->next;
        m->n--;
    }
    n->next = NULL;
}

struct rnode *rmap_bucket(const struct rmap *m, size_t i)
{
    return i < m->nb ? m->b[i] : NULL;
}

void rmap_free(struct rmap *m)
{
    free(m->b);
    memset(m, 0, sizeof(*m));
}
