/* The option table and its parsers (see config.h). Deliberately no reload logic here: a reload
 * builds a new struct cfg with cfg_load and swaps it. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "common.h"
#include "log.h"

enum opt_type { OPT_STR, OPT_STR_LIST, OPT_INT, OPT_BOOL, OPT_SIZE, OPT_DURATION, OPT_DOUBLE, OPT_ENUM,
                OPT_FIXSTR };

struct opt {
    const char *name;
    enum opt_type type;
    size_t off;            /* field offset in struct cfg */
    size_t count_off;      /* OPT_STR_LIST: offset of the int counter */
    const char *def;       /* default, parsed like user input; NULL = none */
    double min, max;       /* numeric bounds (inclusive) */
    const char *const *choices; /* OPT_ENUM */
    const char *help;
};

static const char *const expired_choices[] = { "accept", "reject", NULL };
static const char *const level_choices[] = { "debug", "info", "warn", "error", NULL };
static const char *const format_choices[] = { "kv", "json", NULL };
static const char *const link_choices[] = { "local", "nats", NULL };
static const char *const store_choices[] = { "local", "redis", NULL };

#define F(field) offsetof(struct cfg, field)
static const struct opt opts[] = {
    { "listen", OPT_FIXSTR, F(listen), 0, "0.0.0.0:4443", 0, 0, NULL, "device listener host:port" },
    { "workers", OPT_INT, F(workers), 0, "0", 0, 256, NULL, "worker processes (0 = one per CPU)" },
    { "cert", OPT_STR_LIST, F(certs), F(n_certs), NULL, 0, CFG_MAX_CERTS, NULL,
      "server certificate chain (PEM); repeat for ECDSA + RSA" },
    { "key", OPT_STR_LIST, F(keys), F(n_keys), NULL, 0, CFG_MAX_CERTS, NULL,
      "private key for the --cert of the same position" },
    { "device-ca", OPT_STR, F(device_ca), 0, NULL, 0, 0, NULL, "device CA bundle (PEM, several CAs)" },
    { "crl", OPT_STR, F(crl), 0, NULL, 0, 0, NULL, "certificate revocation list for device certs (PEM)" },
    { "ticket-key-file", OPT_STR, F(ticket_key_file), 0, NULL, 0, 0, NULL,
      "TLS session-ticket keys (80 or 48 bytes each), shared by workers and pods" },
    { "session-cache-size", OPT_SIZE, F(session_cache_size), 0, "64MiB", 0, 64.0 * (1 << 30), NULL,
      "shared memory for TLS 1.2 session-ID resumption, 3 KiB per session (0 = off, else >= 1MiB)" },
    { "session-store", OPT_ENUM, F(session_store), 0, "local", 0, 0, store_choices,
      "TLS 1.2 sessions by ID: local (this node's store) or redis (also in --redis, sealed, shared by pods)" },
    { "session-store-timeout", OPT_DURATION, F(session_store_timeout_ms), 0, "50ms", 1, 1000, NULL,
      "a handshake waits at most this for --session-store redis, then goes on without the session" },
    { "expired-certs", OPT_ENUM, F(expired_certs), 0, "accept", 0, 0, expired_choices,
      "expired device certificates: accept (NervesHub behaviour, counted) or reject" },
    { "tls13", OPT_BOOL, F(tls13), 0, "true", 0, 0, NULL, "allow TLS 1.3 besides TLS 1.2" },
    { "handshake-timeout", OPT_DURATION, F(handshake_timeout_ms), 0, "10s", 100, 3600e3, NULL,
      "TLS handshake must finish within this" },
    { "upgrade-timeout", OPT_DURATION, F(upgrade_timeout_ms), 0, "10s", 100, 3600e3, NULL,
      "HTTP upgrade request must arrive within this after the handshake" },
    { "idle-timeout", OPT_DURATION, F(idle_timeout_ms), 0, "180s", 500, 86400e3, NULL,
      "close a WebSocket with no inbound data for this long (1002)" },
    { "close-timeout", OPT_DURATION, F(close_timeout_ms), 0, "5s", 100, 600e3, NULL,
      "after sending a close frame, wait this long for the peer's" },
    { "max-frame", OPT_SIZE, F(max_frame), 0, "1MiB", 126, 1 << 30, NULL, "WebSocket frame payload limit (1009)" },
    { "max-message", OPT_SIZE, F(max_message), 0, "1MiB", 126, 1 << 30, NULL,
      "reassembled WebSocket message limit (1009)" },
    { "max-inflated", OPT_SIZE, F(max_inflated), 0, "1MiB", 126, 1 << 30, NULL,
      "a message's size after permessage-deflate inflation (1009)" },
    { "max-header-bytes", OPT_SIZE, F(max_header_bytes), 0, "8KiB", 256, 1 << 20, NULL,
      "HTTP upgrade request head limit (431)" },
    { "max-output", OPT_SIZE, F(max_output), 0, "4MiB", 4096, 1 << 30, NULL,
      "bytes queued to a slow device before it is closed (1008)" },
    { "max-channels", OPT_INT, F(max_channels), 0, "100", 1, 100000, NULL, "joined channels per socket" },
    { "max-session", OPT_SIZE, F(max_session), 0, "16KiB", 64, 1 << 24, NULL, "platform session blob limit" },
    { "deflate", OPT_BOOL, F(deflate), 0, "true", 0, 0, NULL, "negotiate permessage-deflate when offered" },
    { "deflate-level", OPT_INT, F(deflate_level), 0, "6", 1, 9, NULL, "zlib level for outbound messages" },
    { "deflate-min", OPT_SIZE, F(deflate_min), 0, "128", 0, 1 << 30, NULL,
      "outbound messages shorter than this are sent uncompressed" },
    { "accept-rate", OPT_DOUBLE, F(accept_rate), 0, "5000", 1, 1e7, NULL,
      "new connections per second per worker (token bucket)" },
    { "accept-burst", OPT_INT, F(accept_burst), 0, "1000", 1, 10000000, NULL, "token bucket depth" },
    { "backlog", OPT_INT, F(backlog), 0, "4096", 16, 1 << 20, NULL, "listen backlog per worker" },
    { "log-level", OPT_ENUM, F(log_level), 0, "info", 0, 0, level_choices, "debug, info, warn or error" },
    { "log-format", OPT_ENUM, F(log_format), 0, "kv", 0, 0, format_choices, "kv (key=value) or json" },
    { "pid-file", OPT_STR, F(pid_file), 0, NULL, 0, 0, NULL, "write the master's pid here" },
    { "gateway-id", OPT_STR, F(gateway_id), 0, NULL, 0, 0, NULL,
      "this gateway's id, [A-Za-z0-9_-]{1,64} (default: the host name, other characters as -)" },
    { "link", OPT_ENUM, F(link), 0, "local", 0, 0, link_choices,
      "platform link: local (in-process default policy) or nats (proto/LINK.md)" },
    { "nats-url", OPT_STR, F(nats_url), 0, "nats://127.0.0.1:4222", 0, 0, NULL,
      "NATS server URLs, comma-separated (--link nats)" },
    { "link-prefix", OPT_STR, F(link_prefix), 0, "nh", 0, 0, NULL, "NATS subject and Redis key prefix" },
    { "link-timeout", OPT_DURATION, F(link_timeout_ms), 0, "5s", 10, 600e3, NULL, "platform call timeout" },
    { "link-max-inflight", OPT_INT, F(link_max_inflight), 0, "10000", 1, 10000000, NULL,
      "platform calls in flight per worker; beyond it upgrades get 503 and devices wait" },
    { "link-heartbeat", OPT_DURATION, F(link_heartbeat_ms), 0, "15m", 1000, 86400e3, NULL,
      "last-seen heartbeat to the platform per active device (batched, jittered)" },
    { "redis", OPT_STR, F(redis), 0, NULL, 0, 0, NULL, "registry Redis host:port (unset: no registry)" },
    { "registry-ttl", OPT_DURATION, F(registry_ttl_ms), 0, "90s", 3000, 86400e3, NULL,
      "registry entry TTL, refreshed every third of it" },
    { "max-timers", OPT_INT, F(max_timers), 0, "16", 1, 1024, NULL, "platform timers filed per channel" },
    { "max-follows", OPT_INT, F(max_follows), 0, "16", 1, 1024, NULL, "shared topics followed per channel" },
    { "max-queued-notifies", OPT_INT, F(max_queued_notifies), 0, "32", 1, 4096, NULL,
      "platform notifies queued behind a call per connection (beyond: dropped, counted)" },
    { "console-scrollback-bytes", OPT_SIZE, F(console_scrollback_bytes), 0, "64KiB", 1024, 512 << 10, NULL,
      "byte cap of a console's scrollback (besides its 1024 lines); memory is taken as output arrives" },
    { "admin-listen", OPT_FIXSTR, F(admin_listen), 0, "127.0.0.1:9090", 0, 0, NULL,
      "admin HTTP host:port (/metrics, /healthz, /readyz), served by the master" },
    { "drain-rate", OPT_DOUBLE, F(drain_rate), 0, "500", 0.1, 1e7, NULL,
      "after SIGTERM, sessions closed with 1012 per second per worker" },
    { "drain-timeout", OPT_DURATION, F(drain_timeout_ms), 0, "25s", 0, 3600e3, NULL,
      "after SIGTERM, close the remaining sessions at once and exit after this" },
};
#undef F
_Static_assert(sizeof(((struct cfg *)0)->admin_listen) == sizeof(((struct cfg *)0)->listen),
               "OPT_FIXSTR fields share one size");

/* Names that become NATS subject tokens and Redis key parts (proto/LINK.md §1). */
static bool is_name_char(char ch)
{
    return isalnum((unsigned char)ch) || ch == '_' || ch == '-';
}

static bool is_name(const char *s, size_t max)
{
    size_t n = 0;
    for (; s[n]; n++)
        if (!is_name_char(s[n]))
            return false;
    return n >= 1 && n <= max;
}

static int fail(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

static int parse_scaled(const char *s, uint64_t *out, const char *const *units, const uint64_t *scales,
                        size_t nunits)
{
    errno = 0;
    char *end;
    double v = strtod(s, &end);
    if (end == s || errno || v < 0)
        return -1;
    while (*end == ' ')
        end++;
    for (size_t i = 0; i < nunits; i++) {
        if (strcasecmp(end, units[i]) == 0) {
            double r = v * (double)scales[i];
            if (r > 1.8e19)
                return -1;
            *out = (uint64_t)(r + 0.5);
            return 0;
        }
    }
    return -1;
}

int cfg_parse_duration_ms(const char *s, uint64_t *out)
{
    static const char *const units[] = { "ms", "s", "", "m", "min", "h" };
    static const uint64_t scales[] = { 1, 1000, 1000, 60000, 60000, 3600000 };
    return parse_scaled(s, out, units, scales, ARRAY_SIZE(units));
}

int cfg_parse_size(const char *s, uint64_t *out)
{
    static const char *const units[] = { "", "b", "k", "kb", "kib", "m", "mb", "mib", "g", "gb", "gib" };
    static const uint64_t scales[] = { 1, 1, 1024, 1024, 1024, 1 << 20, 1 << 20, 1 << 20, 1 << 30, 1 << 30,
                                       1 << 30 };
    return parse_scaled(s, out, units, scales, ARRAY_SIZE(units));
}

static int set_opt(struct cfg *c, const struct opt *o, const char *v, char *err, size_t errlen)
{
    char *field = (char *)c + o->off;
    char *end;
    uint64_t u;
    switch (o->type) {
    case OPT_FIXSTR: /* every fixed string field is char[128] like listen */
        if (strlen(v) >= sizeof(c->listen))
            return fail(err, errlen, "--%s: value too long", o->name);
        strcpy(field, v);
        return 0;
    case OPT_STR: {
        char **p = (char **)field;
        free(*p);
        *p = *v ? xstrdup(v) : NULL;
        return 0;
    }
    case OPT_STR_LIST: {
        int *n = (int *)((char *)c + o->count_off);
        if (*n >= (int)o->max)
            return fail(err, errlen, "--%s: at most %d values", o->name, (int)o->max);
        ((char **)field)[(*n)++] = xstrdup(v);
        return 0;
    }
    case OPT_INT: {
        errno = 0;
        long l = strtol(v, &end, 10);
        if (end == v || *end || errno || l < o->min || l > o->max)
            return fail(err, errlen, "--%s: expected an integer in [%.0f, %.0f], got '%s'", o->name, o->min,
                        o->max, v);
        *(int *)field = (int)l;
        return 0;
    }
    case OPT_DOUBLE: {
        errno = 0;
        double d = strtod(v, &end);
        if (end == v || *end || errno || d < o->min || d > o->max)
            return fail(err, errlen, "--%s: expected a number in [%g, %g], got '%s'", o->name, o->min, o->max,
                        v);
        *(double *)field = d;
        return 0;
    }
    case OPT_BOOL:
        if (!strcmp(v, "true") || !strcmp(v, "1") || !strcmp(v, "yes") || !strcmp(v, "on"))
            *(bool *)field = true;
        else if (!strcmp(v, "false") || !strcmp(v, "0") || !strcmp(v, "no") || !strcmp(v, "off"))
            *(bool *)field = false;
        else
            return fail(err, errlen, "--%s: expected true or false, got '%s'", o->name, v);
        return 0;
    case OPT_SIZE:
    case OPT_DURATION:
        if ((o->type == OPT_SIZE ? cfg_parse_size(v, &u) : cfg_parse_duration_ms(v, &u)) != 0 ||
            (double)u < o->min || (double)u > o->max)
            return fail(err, errlen, "--%s: expected a %s in [%.0f, %.0f]%s, got '%s'", o->name,
                        o->type == OPT_SIZE ? "size" : "duration", o->min, o->max,
                        o->type == OPT_SIZE ? " bytes" : " ms", v);
        *(uint64_t *)field = u;
        return 0;
    case OPT_ENUM:
        for (int i = 0; o->choices[i]; i++) {
            if (!strcmp(v, o->choices[i])) {
                *(int *)field = i;
                return 0;
            }
        }
        return fail(err, errlen, "--%s: unknown value '%s'", o->name, v);
    }
    return -1;
}

static const struct opt *find_opt(const char *name, size_t len)
{
    for (size_t i = 0; i < ARRAY_SIZE(opts); i++)
        if (strlen(opts[i].name) == len && !strncmp(opts[i].name, name, len))
            return &opts[i];
    return NULL;
}

static void env_name(const struct opt *o, char *out, size_t cap)
{
    size_t n = (size_t)snprintf(out, cap, "NHGW_%s", o->name);
    for (size_t i = 5; i < n && i < cap; i++)
        out[i] = out[i] == '-' ? '_' : (char)toupper((unsigned char)out[i]);
}

static void usage(FILE *out)
{
    fprintf(out, "usage: nhgw [--config FILE] [-t] [--OPTION VALUE ...]\n\noptions (env NHGW_<OPTION>):\n");
    for (size_t i = 0; i < ARRAY_SIZE(opts); i++)
        fprintf(out, "  --%-18s %s%s%s%s\n", opts[i].name, opts[i].help, opts[i].def ? " [" : "",
                opts[i].def ? opts[i].def : "", opts[i].def ? "]" : "");
}

static int load_file(struct cfg *c, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return fail(err, errlen, "--config %s: %s", path, strerror(errno));
    char line[4096];
    int lineno = 0, rc = 0;
    while (rc == 0 && fgets(line, sizeof(line), f)) {
        lineno++;
        char *s = line;
        while (isspace((unsigned char)*s))
            s++;
        if (!*s || *s == '#')
            continue;
        char *eq = strchr(s, '=');
        if (!eq) {
            rc = fail(err, errlen, "%s:%d: expected name = value", path, lineno);
            break;
        }
        char *ne = eq;
        while (ne > s && isspace((unsigned char)ne[-1]))
            ne--;
        char *v = eq + 1;
        while (isspace((unsigned char)*v))
            v++;
        size_t vl = strlen(v);
        while (vl && isspace((unsigned char)v[vl - 1]))
            v[--vl] = 0;
        const struct opt *o = find_opt(s, (size_t)(ne - s));
        if (!o)
            rc = fail(err, errlen, "%s:%d: unknown option '%.*s'", path, lineno, (int)(ne - s), s);
        else
            rc = set_opt(c, o, v, err, errlen);
    }
    fclose(f);
    return rc;
}

static void reset_list(struct cfg *c, const struct opt *o)
{
    int *n = (int *)((char *)c + o->count_off);
    char **list = (char **)((char *)c + o->off);
    for (int i = 0; i < *n; i++) {
        free(list[i]);
        list[i] = NULL;
    }
    *n = 0;
}

int cfg_load(struct cfg *c, int argc, char **argv, char *err, size_t errlen)
{
    memset(c, 0, sizeof(*c));
    for (size_t i = 0; i < ARRAY_SIZE(opts); i++)
        if (opts[i].def && set_opt(c, &opts[i], opts[i].def, err, errlen) != 0)
            return -1;

    bool print_only = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 1;
        }
        if (!strcmp(argv[i], "-t"))
            print_only = true;
        if (!strcmp(argv[i], "--config")) {
            if (i + 1 >= argc)
                return fail(err, errlen, "--config needs a value");
            if (load_file(c, argv[i + 1], err, errlen) != 0)
                return -1;
        }
    }
    for (size_t i = 0; i < ARRAY_SIZE(opts); i++) {
        char name[64];
        env_name(&opts[i], name, sizeof(name));
        const char *v = getenv(name);
        if (!v)
            continue;
        if (opts[i].type == OPT_STR_LIST) {
            reset_list(c, &opts[i]);
            /* a list in the environment is comma-separated */
            char *copy = xstrdup(v), *save = NULL;
            for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
                if (set_opt(c, &opts[i], t, err, errlen) != 0) {
                    free(copy);
                    return -1;
                }
            }
            free(copy);
        } else if (set_opt(c, &opts[i], v, err, errlen) != 0) {
            return -1;
        }
    }
    bool list_seen[ARRAY_SIZE(opts)] = { false };
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-t"))
            continue;
        if (!strcmp(a, "--config")) {
            i++;
            continue;
        }
        if (strncmp(a, "--", 2) != 0)
            return fail(err, errlen, "unexpected argument '%s' (see --help)", a);
        a += 2;
        const char *eq = strchr(a, '=');
        size_t nl = eq ? (size_t)(eq - a) : strlen(a);
        const struct opt *o = find_opt(a, nl);
        if (!o)
            return fail(err, errlen, "unknown option '--%.*s' (see --help)", (int)nl, a);
        const char *v;
        if (eq) {
            v = eq + 1;
        } else if (o->type == OPT_BOOL && (i + 1 >= argc || !strncmp(argv[i + 1], "--", 2))) {
            v = "true";
        } else {
            if (i + 1 >= argc)
                return fail(err, errlen, "--%s needs a value", o->name);
            v = argv[++i];
        }
        /* argv replaces lists from the file or environment rather than appending to them */
        if (o->type == OPT_STR_LIST && !list_seen[o - opts]) {
            reset_list(c, o);
            list_seen[o - opts] = true;
        }
        if (set_opt(c, o, v, err, errlen) != 0)
            return -1;
    }

    if (c->n_certs == 0)
        return fail(err, errlen, "--cert is required (server certificate chain)");
    if (c->n_certs != c->n_keys)
        return fail(err, errlen, "every --cert needs a --key (%d certs, %d keys)", c->n_certs, c->n_keys);
    if (!c->device_ca)
        return fail(err, errlen, "--device-ca is required (device CA bundle)");
    if (c->session_cache_size != 0 && c->session_cache_size < (1 << 20))
        return fail(err, errlen, "--session-cache-size must be 0 (off) or at least 1MiB");
    if (c->session_store == CFG_STORE_REDIS &&
        (!c->redis || !c->ticket_key_file || c->session_cache_size == 0))
        return fail(err, errlen, "--session-store redis needs --redis, --ticket-key-file (its key is "
                                 "derived from it) and --session-cache-size other than 0");
    if (c->max_message < c->max_frame)
        c->max_message = c->max_frame;
    if (!c->gateway_id) {
        char host[256] = "nhgw";
        gethostname(host, sizeof(host) - 1);
        host[64] = 0;
        for (char *h = host; *h; h++)
            if (!is_name_char(*h))
                *h = '-';
        c->gateway_id = xstrdup(host[0] ? host : "nhgw");
    }
    if (!is_name(c->gateway_id, 64))
        return fail(err, errlen, "--gateway-id must be 1 to 64 of [A-Za-z0-9_-] (it names NATS subjects)");
    if (!is_name(c->link_prefix, 32))
        return fail(err, errlen, "--link-prefix must be 1 to 32 of [A-Za-z0-9_-]");
    if (print_only) {
        cfg_print(c, stdout);
        return 1;
    }
    return 0;
}

void cfg_print(const struct cfg *c, FILE *out)
{
    for (size_t i = 0; i < ARRAY_SIZE(opts); i++) {
        const struct opt *o = &opts[i];
        const char *field = (const char *)c + o->off;
        fprintf(out, "%s = ", o->name);
        switch (o->type) {
        case OPT_FIXSTR:
            fprintf(out, "%s", field);
            break;
        case OPT_STR:
            fprintf(out, "%s", *(char *const *)field ? *(char *const *)field : "");
            break;
        case OPT_STR_LIST: {
            int n = *(const int *)((const char *)c + o->count_off);
            for (int k = 0; k < n; k++)
                fprintf(out, "%s%s", k ? "," : "", ((char *const *)field)[k]);
            break;
        }
        case OPT_INT:
            fprintf(out, "%d", *(const int *)field);
            break;
        case OPT_DOUBLE:
            fprintf(out, "%g", *(const double *)field);
            break;
        case OPT_BOOL:
            fprintf(out, "%s", *(const bool *)field ? "true" : "false");
            break;
        case OPT_SIZE:
            fprintf(out, "%" PRIu64, *(const uint64_t *)field);
            break;
        case OPT_DURATION:
            fprintf(out, "%" PRIu64 "ms", *(const uint64_t *)field);
            break;
        case OPT_ENUM:
            fprintf(out, "%s", o->choices[*(const int *)field]);
            break;
        }
        fputc('\n', out);
    }
}

void cfg_free(struct cfg *c)
{
    for (int i = 0; i < c->n_certs; i++)
        free(c->certs[i]);
    for (int i = 0; i < c->n_keys; i++)
        free(c->keys[i]);
    free(c->device_ca);
    free(c->crl);
    free(c->ticket_key_file);
    free(c->pid_file);
    free(c->gateway_id);
    free(c->nats_url);
    free(c->link_prefix);
    free(c->redis);
    memset(c, 0, sizeof(*c));
}
