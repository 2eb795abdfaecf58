/* HDR-style latency histogram for nhbench: log-linear buckets over microseconds (exact below 128 µs,
 * then 64 buckets per power of two, so every recorded value is kept within 1/64 ≈ 1.6 %), fixed
 * size, no allocation, so it can live in memory shared between processes and be merged.
 * Coordinated omission is handled in two ways: open-loop callers record from the *intended* start
 * time; closed-loop results are corrected afterwards with hist_correct (wrk's stats_correct idea).
 * Not thread-safe: one writer per histogram. */
#ifndef NHBENCH_HIST_H
#define NHBENCH_HIST_H

#include <stdint.h>

#define HIST_SUB_BITS 7                              /* values below 2^7 are exact */
#define HIST_HALF (1u << (HIST_SUB_BITS - 1))        /* buckets per power of two above that */
#define HIST_MAX_EXP 38                              /* values are clamped below 2^38 µs (~76 h) */
#define HIST_BUCKETS ((1u << HIST_SUB_BITS) + (HIST_MAX_EXP - HIST_SUB_BITS) * HIST_HALF)

struct hist {
    uint64_t count;                 /* values recorded */
    uint64_t sum;                   /* sum of the (clamped) values, for the mean */
    uint64_t min, max;              /* exact extremes; min is UINT64_MAX while empty */
    uint64_t b[HIST_BUCKETS];       /* counts per bucket */
};

/* Empty h (any storage, including shared memory). */
void hist_init(struct hist *h);

/* Record n occurrences of value v (µs). Values >= 2^HIST_MAX_EXP are clamped. */
void hist_record_n(struct hist *h, uint64_t v, uint64_t n);
static inline void hist_record(struct hist *h, uint64_t v)
{
    hist_record_n(h, v, 1);
}

/* Add every count of src to dst. */
void hist_merge(struct hist *dst, const struct hist *src);

/* Coordinated-omission correction for a closed loop whose requests should arrive every `expected`
 * µs: each value v > expected also stands for the requests that could not be sent while it was
 * outstanding, recorded as v - expected, v - 2*expected, ... down to expected (HdrHistogram's
 * copyCorrectedForCoordinatedOmission, wrk's stats_correct). expected == 0 does nothing. */
void hist_correct(struct hist *h, uint64_t expected);

/* The value at percentile p (0..100]: the highest value of the bucket holding that rank (never
 * more than max). 0 when empty. */
uint64_t hist_percentile(const struct hist *h, double p);

/* Mean in µs (0 when empty). */
double hist_mean(const struct hist *h);

#endif
