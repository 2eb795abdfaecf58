/* A run's event counts over time, for ramp and storm curves: fixed-width buckets (e.g. 100 ms)
 * counted from the run's epoch, one counter per kind of event. Fixed size and allocation-free, so a
 * worker's timeline lives in the shared results slot and the parent adds them up. Events later than
 * the last bucket are counted in it (tl_index clamps), so a too-long run is visible as a spike at
 * the end rather than lost. Header-only and pure. */
#ifndef NHBENCH_TIMELINE_H
#define NHBENCH_TIMELINE_H

#include <stdint.h>

#define TL_BUCKETS 8192 /* 13.6 minutes at 100 ms */

enum tl_kind {
    TL_STARTED, /* connection attempts started */
    TL_TLS,     /* TLS handshakes completed */
    TL_READY,   /* sessions fully set up (joined) */
    TL_FAILED,  /* attempts or sessions that ended in an error */
    TL_KINDS
};

struct tl {
    uint32_t n[TL_BUCKETS][TL_KINDS];
};

/* Bucket of time t (µs, same clock as epoch) for buckets of bucket_us (> 0): times before the
 * epoch go to bucket 0, times past the end to the last bucket. */
static inline uint32_t tl_index(uint64_t t, uint64_t epoch, uint64_t bucket_us)
{
    if (t <= epoch)
        return 0;
    uint64_t i = (t - epoch) / bucket_us;
    return i < TL_BUCKETS ? (uint32_t)i : TL_BUCKETS - 1;
}

static inline void tl_add(struct tl *t, uint32_t index, enum tl_kind k)
{
    t->n[index][k]++;
}

/* dst += src, bucket by bucket. */
static inline void tl_merge(struct tl *dst, const struct tl *src)
{
    for (uint32_t i = 0; i < TL_BUCKETS; i++)
        for (int k = 0; k < TL_KINDS; k++)
            dst->n[i][k] += src->n[i][k];
}

/* One past the last bucket holding any event (0 if none). */
static inline uint32_t tl_used(const struct tl *t)
{
    for (uint32_t i = TL_BUCKETS; i > 0; i--)
        for (int k = 0; k < TL_KINDS; k++)
            if (t->n[i - 1][k])
                return i;
    return 0;
}

#endif
