/* Log-linear latency histogram (see hist.h). Pure computation, no I/O. */
#include "hist.h"

#include <string.h>

void hist_init(struct hist *h)
{
    memset(h, 0, sizeof(*h));
    h->min = UINT64_MAX;
}

/* Bucket index: v < 2^S is its own bucket; otherwise with e = floor(log2 v) >= S the bucket is
 * (e - S + 1) * HALF + (v >> (e - S + 1)), the top S bits of v selecting one of HALF sub-buckets. */
static unsigned bucket_of(uint64_t v)
{
    if (v < (1u << HIST_SUB_BITS))
        return (unsigned)v;
    unsigned e = 63u - (unsigned)__builtin_clzll(v);
    unsigned shift = e - HIST_SUB_BITS + 1;
    return shift * HIST_HALF + (unsigned)(v >> shift);
}

/* Lowest and highest value that map to bucket i. */
static uint64_t bucket_low(unsigned i)
{
    if (i < (1u << HIST_SUB_BITS))
        return i;
    unsigned shift = i / HIST_HALF - 1;
    uint64_t sub = i - shift * HIST_HALF;
    return sub << shift;
}

static uint64_t bucket_high(unsigned i)
{
    if (i < (1u << HIST_SUB_BITS))
        return i;
    unsigned shift = i / HIST_HALF - 1;
    return bucket_low(i) + ((uint64_t)1 << shift) - 1;
}

void hist_record_n(struct hist *h, uint64_t v, uint64_t n)
{
    if (n == 0)
        return;
    if (v >= ((uint64_t)1 << HIST_MAX_EXP))
        v = ((uint64_t)1 << HIST_MAX_EXP) - 1;
    h->b[bucket_of(v)] += n;
    h->count += n;
    h->sum += v * n;
    if (v < h->min)
        h->min = v;
    if (v > h->max)
        h->max = v;
}

void hist_merge(struct hist *dst, const struct hist *src)
{
    if (src->count == 0)
        return;
    for (unsigned i = 0; i < HIST_BUCKETS; i++)
        dst->b[i] += src->b[i];
    dst->count += src->count;
    dst->sum += src->sum;
    if (src->min < dst->min)
        dst->min = src->min;
    if (src->max > dst->max)
        dst->max = src->max;
}

void hist_correct(struct hist *h, uint64_t expected)
{
    if (expected == 0)
        return;
    /* Walk upwards: synthetic values land in this or lower buckets, which are never visited
     * again, so nothing is corrected twice. */
    for (unsigned i = 0; i < HIST_BUCKETS; i++) {
        uint64_t n = h->b[i];
        if (n == 0)
            continue;
        uint64_t v = (bucket_low(i) + bucket_high(i)) / 2;
        if (v > h->max)
            v = h->max;
        for (uint64_t m = v; m >= 2 * expected; m -= expected) {
            uint64_t s = m - expected;
            h->b[bucket_of(s)] += n;
            h->count += n;
            h->sum += s * n;
        }
    }
}

uint64_t hist_percentile(const struct hist *h, double p)
{
    if (h->count == 0)
        return 0;
    if (p <= 0)
        return h->min;
    uint64_t rank = (uint64_t)((p / 100.0) * (double)h->count + 0.5);
    if (rank < 1)
        rank = 1;
    if (rank > h->count)
        rank = h->count;
    uint64_t seen = 0;
    for (unsigned i = 0; i < HIST_BUCKETS; i++) {
        seen += h->b[i];
        if (seen >= rank) {
            uint64_t v = bucket_high(i);
            if (v > h->max)
                v = h->max;
            if (v < h->min)
                v = h->min;
            return v;
        }
    }
    return h->max;
}

double hist_mean(const struct hist *h)
{
    return h->count ? (double)h->sum / (double)h->count : 0.0;
}
