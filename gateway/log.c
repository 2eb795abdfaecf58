/* Structured logging (see log.h). Writes whole lines with one write(2) so lines from several
 * processes sharing stderr do not interleave. */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

int log_min_level = LOG_INFO;
static bool log_json;
static char log_role[16] = "master";
static int log_worker = -1;

static const char *const level_names[] = { "debug", "info", "warn", "error" };

#define PEER_BURST 20
static int64_t peer_window;
static int peer_count;
static uint64_t peer_suppressed;

void log_init(int min_level, bool json, const char *role, int worker)
{
    log_min_level = min_level;
    log_json = json;
    snprintf(log_role, sizeof(log_role), "%s", role);
    log_worker = worker;
}

/* Converts "a=1 b=x" pairs (values may be "quoted") into JSON members; values are emitted as strings. */
static size_t kv_to_json(char *out, size_t cap, const char *kv)
{
    size_t n = 0;
    const char *s = kv;
    while (*s && n + 8 < cap) {
        while (*s == ' ')
            s++;
        if (!*s)
            break;
        const char *eq = strchr(s, '=');
        if (!eq)
            break;
        n += (size_t)snprintf(out + n, cap - n, ",\"%.*s\":\"", (int)(eq - s), s);
        s = eq + 1;
        bool quoted = *s == '"';
        if (quoted)
            s++;
        while (*s && n + 4 < cap) {
            if (quoted ? *s == '"' : *s == ' ')
                break;
            if (*s == '\\' && quoted && s[1]) {
                out[n++] = *s++;
            }
            out[n++] = *s++;
        }
        if (quoted && *s == '"')
            s++;
        if (n + 1 < cap)
            out[n++] = '"';
    }
    return n < cap ? n : cap - 1;
}

static void vlog(int level, const char *event, const char *fmt, va_list ap)
{
    char kv[1536] = "";
    if (fmt && *fmt)
        vsnprintf(kv, sizeof(kv), fmt, ap);
    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);
    char ts[64];
    snprintf(ts, sizeof(ts), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
             tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(tv.tv_usec / 1000));
    /* who wrote it, then the event's own fields: one key=value list for both formats */
    char fields[1700];
    int k = snprintf(fields, sizeof(fields), "role=%s", log_role);
    if (log_worker >= 0)
        k += snprintf(fields + k, sizeof(fields) - (size_t)k, " worker=%d", log_worker);
    snprintf(fields + k, sizeof(fields) - (size_t)k, " pid=%d%s%s", (int)getpid(), *kv ? " " : "", kv);

    char line[2048];
    int n;
    if (log_json) {
        char members[1900];
        size_t m = kv_to_json(members, sizeof(members), fields);
        members[m] = 0;
        n = snprintf(line, sizeof(line), "{\"ts\":\"%s\",\"level\":\"%s\",\"event\":\"%s\"%s}\n", ts,
                     level_names[level], event, members);
    } else {
        n = snprintf(line, sizeof(line), "ts=%s level=%s event=%s %s\n", ts, level_names[level], event, fields);
    }
    if (n < 0)
        return;
    if ((size_t)n >= sizeof(line)) {
        n = sizeof(line) - 1;
        line[n - 1] = '\n';
    }
    ssize_t w = write(STDERR_FILENO, line, (size_t)n);
    (void)w;
}

void log_event(int level, const char *event, const char *fmt, ...)
{
    if (level < log_min_level)
        return;
    va_list ap;
    va_start(ap, fmt);
    vlog(level, event, fmt, ap);
    va_end(ap);
}

void log_peer(const char *event, const char *fmt, ...)
{
    if (LOG_INFO < log_min_level)
        return;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &now);
    if (now.tv_sec != peer_window) {
        peer_window = now.tv_sec;
        peer_count = 0;
    }
    if (++peer_count > PEER_BURST) {
        peer_suppressed++;
        return;
    }
    if (peer_suppressed) {
        log_event(LOG_INFO, "log_suppressed", "count=%llu", (unsigned long long)peer_suppressed);
        peer_suppressed = 0;
    }
    va_list ap;
    va_start(ap, fmt);
    vlog(LOG_INFO, event, fmt, ap);
    va_end(ap);
}
