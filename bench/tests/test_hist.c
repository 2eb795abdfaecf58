/* Unit tests for bench/hist.c (log-linear latency histogram), through its public API. */
#include "../../tests/lib/test.h"
#include "hist.h"

static struct hist h, h2;

TEST(hist_empty)
{
    hist_init(&h);
    ASSERT_EQ(h.count, 0);
    ASSERT_EQ(hist_percentile(&h, 50), 0);
    ASSERT(hist_mean(&h) == 0.0);
}

TEST(hist_small_values_exact)
{
    hist_init(&h);
    for (uint64_t v = 1; v <= 100; v++)
        hist_record(&h, v);
    ASSERT_EQ(h.count, 100);
    ASSERT_EQ(h.min, 1);
    ASSERT_EQ(h.max, 100);
    ASSERT_EQ(hist_percentile(&h, 50), 50);
    ASSERT_EQ(hist_percentile(&h, 99), 99);
    ASSERT_EQ(hist_percentile(&h, 100), 100);
    ASSERT_EQ(hist_percentile(&h, 0), 1);
    ASSERT(hist_mean(&h) == 50.5);
}

TEST(hist_relative_precision)
{
    /* any single value comes back within 1/64 above it, and never above max */
    for (uint64_t v = 1; v < ((uint64_t)1 << 37); v = v * 3 + 1) {
        hist_init(&h);
        hist_record(&h, v);
        hist_record(&h, v + 1);
        uint64_t p = hist_percentile(&h, 50);
        ASSERT(p >= v);
        ASSERT(p - v <= v / 64 + 1);
        ASSERT_EQ(hist_percentile(&h, 100), v + 1);
    }
}

TEST(hist_uniform_percentiles)
{
    hist_init(&h);
    for (uint64_t v = 1; v <= 100000; v++)
        hist_record(&h, v);
    uint64_t p50 = hist_percentile(&h, 50), p99 = hist_percentile(&h, 99);
    ASSERT(p50 >= 50000 && p50 <= 50000 + 50000 / 64 + 1);
    ASSERT(p99 >= 99000 && p99 <= 99000 + 99000 / 64 + 1);
}

TEST(hist_clamp_at_limit)
{
    hist_init(&h);
    uint64_t top = ((uint64_t)1 << HIST_MAX_EXP) - 1;
    hist_record(&h, top);
    hist_record(&h, top + 1);
    hist_record(&h, UINT64_MAX);
    ASSERT_EQ(h.count, 3);
    ASSERT_EQ(h.max, top);
    ASSERT_EQ(hist_percentile(&h, 100), top);
}

TEST(hist_merge_adds)
{
    hist_init(&h);
    hist_init(&h2);
    hist_record_n(&h, 10, 3);
    hist_record_n(&h2, 1000, 1);
    hist_merge(&h, &h2);
    ASSERT_EQ(h.count, 4);
    ASSERT_EQ(h.min, 10);
    ASSERT_EQ(h.max, 1000);
    ASSERT_EQ(hist_percentile(&h, 75), 10);
    ASSERT(hist_percentile(&h, 100) == 1000);
}

TEST(hist_coordinated_omission_correction)
{
    /* one 10 ms stall with requests expected every 1 ms stands for 9 more: 9, 8, ..., 1 ms */
    hist_init(&h);
    for (int i = 0; i < 90; i++)
        hist_record(&h, 1000);
    hist_record(&h, 10000);
    hist_correct(&h, 1000);
    ASSERT_EQ(h.count, 100);
    ASSERT_EQ(h.max, 10000);
    uint64_t p95 = hist_percentile(&h, 95);
    ASSERT(p95 >= 5000 && p95 <= 5100);
    /* values at or below the interval are left alone; 0 disables */
    hist_init(&h);
    hist_record(&h, 1500);
    hist_correct(&h, 1000);
    ASSERT_EQ(h.count, 1);
    hist_correct(&h, 0);
    ASSERT_EQ(h.count, 1);
}
