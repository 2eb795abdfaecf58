/* Unit tests for the storm scenario's pure parts: link's reconnect delays (bench/backoff.h) and
 * the timeline buckets behind the rate curves (bench/timeline.h). */
#include "../../tests/lib/test.h"
#include "backoff.h"
#include "timeline.h"

TEST(backoff_link_table)
{
    /* device-protocol.md §5.6: attempt n waits [1,2,4,8,16,32,60] s [min(n,6)] x (1 + 0.5 U) */
    static const uint64_t base_s[] = { 1, 2, 4, 8, 16, 32, 60, 60, 60 };
    for (uint32_t n = 0; n < 9; n++) {
        uint64_t lo = base_s[n] * 1000000u;
        ASSERT_EQ(bo_link_delay_us(n, 1000, 0), lo);
        ASSERT_EQ(bo_link_delay_us(n, 1000, lo / 2), lo + lo / 2); /* the top of the range */
        ASSERT_EQ(bo_link_delay_us(n, 1000, lo / 2 + 1), lo);      /* ... and it wraps, never above */
    }
    ASSERT_EQ(bo_link_delay_us(UINT32_MAX, 1000, 0), 60000000u);
}

TEST(backoff_link_jitter_range)
{
    /* any random value stays within [base, 1.5 base]; a spread of values covers both ends */
    uint64_t r = 0x9e3779b97f4a7c15ULL, min = UINT64_MAX, max = 0;
    for (int i = 0; i < 100000; i++) {
        r = r * 6364136223846793005ULL + 1442695040888963407ULL;
        uint64_t d = bo_link_delay_us(0, 1000, r);
        ASSERT(d >= 1000000u && d <= 1500000u);
        min = d < min ? d : min;
        max = d > max ? d : max;
    }
    ASSERT(min < 1010000u);
    ASSERT(max > 1490000u);
}

TEST(backoff_unit_scales)
{
    ASSERT_EQ(bo_link_delay_us(0, 100, 0), 100000u);
    ASSERT_EQ(bo_link_delay_us(6, 100, 0), 6000000u);
    ASSERT_EQ(bo_link_delay_us(2, 1, 2000), 4000u + 2000u);
}

TEST(timeline_index_clamps)
{
    ASSERT_EQ(tl_index(1000, 5000, 100000), 0u);           /* before the epoch */
    ASSERT_EQ(tl_index(5000, 5000, 100000), 0u);
    ASSERT_EQ(tl_index(5000 + 99999, 5000, 100000), 0u);
    ASSERT_EQ(tl_index(5000 + 100000, 5000, 100000), 1u);
    ASSERT_EQ(tl_index(5000 + (uint64_t)(TL_BUCKETS - 1) * 100000, 5000, 100000), TL_BUCKETS - 1);
    ASSERT_EQ(tl_index(5000 + (uint64_t)TL_BUCKETS * 100000, 5000, 100000), TL_BUCKETS - 1); /* max + 1 */
    ASSERT_EQ(tl_index(UINT64_MAX, 0, 1), TL_BUCKETS - 1);
}

static struct tl a, b;

TEST(timeline_add_merge_used)
{
    memset(&a, 0, sizeof(a));
    memset(&b, 0, sizeof(b));
    ASSERT_EQ(tl_used(&a), 0u);
    tl_add(&a, 0, TL_STARTED);
    tl_add(&a, 3, TL_READY);
    tl_add(&b, 3, TL_READY);
    tl_add(&b, TL_BUCKETS - 1, TL_FAILED);
    ASSERT_EQ(tl_used(&a), 4u);
    tl_merge(&a, &b);
    ASSERT_EQ(a.n[0][TL_STARTED], 1u);
    ASSERT_EQ(a.n[3][TL_READY], 2u);
    ASSERT_EQ(a.n[3][TL_TLS], 0u);
    ASSERT_EQ(a.n[TL_BUCKETS - 1][TL_FAILED], 1u);
    ASSERT_EQ(tl_used(&a), (uint32_t)TL_BUCKETS);
}
