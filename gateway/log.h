/* One line per event on stderr, `key=value` (or JSON by switch). The level is checked before
 * anything is formatted. Peer-caused events go through log_peer(), which is rate-limited so a
 * misbehaving fleet cannot flood the log. Never pass payloads, tokens or key material. */
#ifndef NHGW_LOG_H
#define NHGW_LOG_H

#include <stdbool.h>
#include <stdint.h>

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };

extern int log_min_level;

/* Configure once per process; `role` is "master" or "worker", `worker` its index or -1. */
void log_init(int min_level, bool json, const char *role, int worker);

/* fields: a string of additional `key=value` pairs (already formatted, may be NULL). */
void log_event(int level, const char *event, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Like log_event at LOG_INFO, but at most `log_peer_burst` lines per second per process; the
 * number suppressed is reported on the next line that gets through. */
void log_peer(const char *event, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define LOG(level, event, ...)                                    \
    do {                                                          \
        if ((level) >= log_min_level)                             \
            log_event((level), (event), __VA_ARGS__);             \
    } while (0)

#endif
