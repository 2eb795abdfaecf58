/* nerves_hub_link's reconnect delay (device-protocol.md §5.6), for nhbench's storm scenario:
 * attempt n (0-based, reset after each successful connect) waits list[min(n, 6)] with
 * list = unit × [1, 2, 4, 8, 16, 32, 60] and each entry multiplied by (1 + 0.5·U), U uniform in
 * [0, 1). link's unit is 1 s: the first reconnect after a drop comes 1.0–1.5 s later, the seventh
 * and every later one 60–90 s. Header-only and pure: the caller supplies the random number. */
#ifndef NHBENCH_BACKOFF_H
#define NHBENCH_BACKOFF_H

#include <stdint.h>

#define BO_STEPS 7

/* Delay in µs before attempt `attempt`, for a unit of `unit_ms` (link: 1000) and a random value
 * `r` (any 64-bit value; its residue picks the jitter, so the result lies in [base, 1.5 base]). */
static inline uint64_t bo_link_delay_us(uint32_t attempt, uint32_t unit_ms, uint64_t r)
{
    static const uint8_t mult[BO_STEPS] = { 1, 2, 4, 8, 16, 32, 60 };
    uint64_t base = (uint64_t)unit_ms * 1000u * mult[attempt < BO_STEPS - 1 ? attempt : BO_STEPS - 1];
    return base + r % (base / 2 + 1);
}

#endif
