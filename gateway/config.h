/* Configuration: one declarative option table (name, type, bounds, default, env var, help) is the
 * single source for parsing argv/env/file, validation, --help and `-t` (print effective config).
 * The resulting struct cfg is read-only once workers start. */
#ifndef NHGW_CONFIG_H
#define NHGW_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define CFG_MAX_CERTS 4

enum cfg_expired { CFG_EXPIRED_ACCEPT, CFG_EXPIRED_REJECT };
enum cfg_log_format { CFG_LOG_KV, CFG_LOG_JSON };
enum cfg_session_store { CFG_STORE_LOCAL, CFG_STORE_REDIS };

struct cfg {
    char listen[128];              /* host:port of the device listener */
    int workers;                   /* worker processes; 0 = one per CPU */
    char *certs[CFG_MAX_CERTS];    /* server certificate chain files (PEM), owned */
    char *keys[CFG_MAX_CERTS];     /* matching private keys, owned */
    int n_certs;
    int n_keys;
    char *device_ca;               /* device CA bundle (PEM, several CAs), owned */
    char *crl;                     /* optional CRL file (PEM), owned */
    char *ticket_key_file;         /* session-ticket keys shared by workers and pods, owned */
    uint64_t session_cache_size;   /* bytes of the shared TLS session-ID store; 0 = off */
    int session_store;             /* enum cfg_session_store */
    uint64_t session_store_timeout_ms; /* a handshake's wait for the Redis store */
    int expired_certs;             /* enum cfg_expired */
    bool tls13;                    /* allow TLS 1.3 besides 1.2 */
    uint64_t handshake_timeout_ms;
    uint64_t upgrade_timeout_ms;
    uint64_t idle_timeout_ms;
    uint64_t close_timeout_ms;     /* wait for the peer's close frame after ours */
    uint64_t max_frame;            /* bytes, WebSocket frame payload */
    uint64_t max_message;          /* bytes, reassembled WebSocket message */
    uint64_t max_inflated;         /* bytes, a message after permessage-deflate inflation */
    uint64_t max_header_bytes;     /* bytes, HTTP upgrade request head */
    uint64_t max_output;           /* bytes queued to a slow device before it is closed */
    int max_channels;              /* joined Phoenix channels per socket */
    uint64_t max_session;          /* bytes, opaque platform session blob */
    bool deflate;                  /* negotiate permessage-deflate when offered */
    int deflate_level;
    uint64_t deflate_min;          /* messages shorter than this are sent uncompressed */
    double accept_rate;            /* new connections per second per worker (token bucket) */
    int accept_burst;
    int backlog;
    int log_level;                 /* LOG_DEBUG..LOG_ERROR from log.h */
    int log_format;                /* enum cfg_log_format */
    char *pid_file;                /* owned, optional */
    char *gateway_id;              /* this gateway's id in the fleet (default: hostname), owned */
    /* the link to the platform (proto/LINK.md) and the registry */
    int link;                      /* enum cfg_link */
    char *nats_url;                /* comma-separated NATS server URLs, owned */
    char *link_prefix;             /* subject and key prefix, owned */
    uint64_t link_timeout_ms;      /* a platform call's deadline */
    int link_max_inflight;         /* platform calls in flight per worker */
    uint64_t link_heartbeat_ms;    /* last-seen heartbeat interval per device */
    char *redis;                   /* host:port of the registry's Redis; NULL = no registry, owned */
    uint64_t registry_ttl_ms;
    int max_timers;                /* platform timers filed per channel */
    int max_follows;               /* shared topics followed per channel */
    int max_queued_notifies;       /* notifies waiting behind a call per connection */
    uint64_t console_scrollback_bytes; /* byte cap of each console's scrollback (proto/LINK.md §9) */
    /* operating (README "Operating") */
    char admin_listen[128];        /* host:port of the master's /metrics, /healthz, /readyz */
    double drain_rate;             /* sessions closed per second per worker after SIGTERM */
    uint64_t drain_timeout_ms;     /* after SIGTERM, close what is left and exit after this */
};

enum cfg_link { CFG_LINK_LOCAL, CFG_LINK_NATS };

/* Fill *c with defaults, then apply an optional file (--config), environment (NHGW_*) and argv,
 * in that order of precedence (argv wins). Returns 0, 1 when the program should exit successfully
 * (--help, -t printed), or -1 with a message in err. */
int cfg_load(struct cfg *c, int argc, char **argv, char *err, size_t errlen);

/* Print the effective configuration as `name = value` lines (key material by path only). */
void cfg_print(const struct cfg *c, FILE *out);

void cfg_free(struct cfg *c);

/* Parse "10s", "250ms", "3m", "1h" into milliseconds, "64KiB", "1MiB", "1k" into bytes. 0 or -1. */
int cfg_parse_duration_ms(const char *s, uint64_t *out);
int cfg_parse_size(const char *s, uint64_t *out);

#endif
