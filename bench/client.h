/* nhbench's simulated devices: one worker process runs one libevent loop driving many client
 * connections through TCP connect (from a 127.0.0.0/8 source address of its own), a BoringSSL
 * mutual-TLS handshake with the device's own certificate, and — in WebSocket mode — the upgrade,
 * the `device` and `extensions` joins and Phoenix heartbeats, the way nerves_hub_link does.
 * Results go to a shared-memory slot (counters, errors by kind, histograms) that the parent reads;
 * nothing else is shared between workers. Not here: option parsing, /proc accounting, reports. */
#ifndef NHBENCH_CLIENT_H
#define NHBENCH_CLIENT_H

#include <stdbool.h>
#include <stdint.h>
#include <netinet/in.h>

#include "hist.h"
#include "timeline.h"

enum cl_mode {
    CL_MODE_WS,  /* TLS + WebSocket upgrade + Phoenix (device joins, heartbeats) */
    CL_MODE_TLS, /* TLS only: the handshake and nothing else, for a plain TLS terminator */
};

enum cl_pattern {
    CL_HOLD,  /* ramp to `sessions`, keep them open until told to stop (storm: drop and reconnect) */
    CL_CYCLE, /* connect, handshake (and upgrade in WS mode), close, repeat */
};

struct cl_fan;

struct cl_cfg {
    enum cl_mode mode;
    enum cl_pattern pattern;
    struct sockaddr_in target;
    char host[80];              /* Host header value */
    char path[64];              /* socket path, "/socket/websocket" */
    char sni[80];               /* SNI server name; empty: none (link's default) */
    char server_ca[512];        /* verify the server against this PEM bundle; empty: no verification */
    char groups[64];            /* TLS groups, e.g. "X25519:P-256"; empty: BoringSSL's default */
    char pool_path[512];        /* device identities (devpool.h) */
    uint32_t sessions;          /* CL_HOLD: sessions over all workers */
    uint32_t devices;           /* identities in use: pool indices [device_base, device_base + devices) */
    uint32_t device_base;
    double rate;                /* new connections per second over all workers; 0 = as fast as possible */
    uint32_t concurrency;       /* CL_CYCLE: connections in flight over all workers (closed loop); 0 = open loop at `rate` */
    uint32_t max_pending;       /* setups in flight over all workers (connect .. joined) */
    int vsn;                    /* 2 (JSON), 3 (msgpack) or 0 = alternate per session */
    int deflate;                /* 1 offer permessage-deflate, 0 do not, -1 alternate (in step with vsn pairs) */
    uint32_t hb_interval_ms;    /* Phoenix heartbeat period (link: 30000) */
    uint32_t timeout_ms;        /* deadline for connect .. joined */
    int tls_max;                /* highest TLS version: TLS1_2_VERSION (link's only one) or TLS1_3_VERSION */
    bool resume;                /* offer the device's previous session (ticket) */
    bool resume_id;             /* with resume: offer no ticket, resume by TLS 1.2 session ID (Erlang's ssl) */
    bool strict;                /* compare replies byte for byte and require what nhgw must answer */
    bool extensions;            /* join `extensions` after `device` */
    bool console;               /* then join `console` and echo every `dn` back as `up` (a shell echoing) */
    bool report_iface;          /* send report_network_interface after the device join, like link */
    bool linger0;               /* close with RST (SO_LINGER 0) instead of close_notify + FIN */
    int workers;                /* worker processes in this run */
    uint32_t src_base;          /* first source-address index, so consecutive runs use fresh addresses */
    bool storm;                 /* CL_HOLD: on CL_PHASE_DROP close every session, then reconnect every device */
    int backoff;                /* storm: CL_BACKOFF_LINK or CL_BACKOFF_NONE */
    uint32_t backoff_unit_ms;   /* CL_BACKOFF_LINK: the first delay (link: 1000 ms; backoff.h) */
    uint64_t epoch_us;          /* CLOCK_MONOTONIC µs of the run's start: timeline bucket 0 */
    uint32_t bucket_ms;         /* timeline bucket width */
    const volatile struct cl_fan *fan; /* fanout: the parent's current trigger (shared memory); NULL otherwise */
};

#define CL_FAN_MAX 8 /* fanout rounds in one run */

/* The firmware every simulated device runs (its `device` join's nerves_fw_uuid and version). */
#define CL_DEVICE_FW_UUID "8a8b902c-d1a9-58aa-6111-04ab57c2f2a8"
#define CL_DEVICE_FW_VERSION "1.0.0"

/* The fanout trigger the parent publishes to the workers (shared memory, single writer). It
 * writes uuid and t0_us, then increments round (release); a worker that sees round r (acquire)
 * counts a `device` push `update` whose payload carries uuid as that round's delivery. Round 0
 * means no trigger yet. */
struct cl_fan {
    volatile uint32_t round;    /* 1 .. CL_FAN_MAX */
    volatile uint64_t t0_us;    /* CLOCK_MONOTONIC µs just before the operator request was sent */
    char uuid[40];              /* the firmware uuid this round pushes */
};

enum {
    CL_BACKOFF_LINK, /* nerves_hub_link's delays (device-protocol.md §5.6), jittered per device */
    CL_BACKOFF_NONE, /* reconnect at once; 100 ms after a failed attempt */
};

enum cl_counter {
    C_STARTED,      /* connections started */
    C_TCP,          /* TCP connected */
    C_TLS,          /* TLS handshakes completed */
    C_TLS_FULL,     /* ... of which full */
    C_TLS_RESUMED,  /* ... of which resumed */
    C_TLS13,        /* ... of which TLS 1.3 */
    C_UPGRADED,     /* 101 received */
    C_PMD,          /* permessage-deflate negotiated */
    C_JOINED,       /* `device` join answered ok */
    C_EXT_JOINED,   /* `extensions` join answered ok */
    C_READY,        /* sessions fully set up (CL_HOLD) */
    C_ACTIVE,       /* gauge: sessions ready and still open */
    C_PENDING,      /* gauge: setups in flight */
    C_HB_SENT,
    C_HB_OK,        /* heartbeats answered ok */
    C_HB_SESSIONS,  /* sessions that had at least one heartbeat answered */
    C_MSGS_IN,      /* Phoenix messages received */
    C_MSGS_OUT,     /* Phoenix messages sent */
    C_PUSHES,       /* server pushes (messages that are not replies) */
    C_INFLATED,     /* compressed messages received */
    C_CYCLES,       /* CL_CYCLE: connections completed and closed */
    C_RECONNECTS,   /* storm: connection attempts started after the drop */
    C_RECOVERED,    /* storm: devices joined again after the drop (each counted once) */
    C_UPDATES,      /* `update` pushes received on `device` (any round, any firmware) */
    C_CON_JOINED,   /* `console` join answered ok */
    C_CON_DN,       /* console `dn` pushes received */
    C_CON_UP,       /* console `up` echoes sent */
    C_COUNT
};

enum cl_error {
    E_FD,            /* socket(): out of descriptors */
    E_BIND,          /* bind to the source address failed */
    E_CONNECT,       /* connect refused or failed */
    E_CONNECT_TIMEOUT,
    E_TLS,           /* handshake failed (alert, verification, protocol) */
    E_TLS_EOF,       /* peer closed during the handshake */
    E_TLS_TIMEOUT,
    E_HTTP_STATUS,   /* upgrade answered with something other than 101 */
    E_HTTP_BAD,      /* malformed answer, wrong Sec-WebSocket-Accept, missing Upgrade/Connection */
    E_UPGRADE_TIMEOUT,
    E_PMD,           /* bad or missing permessage-deflate answer */
    E_WS_PROTOCOL,   /* bad frame from the server */
    E_INFLATE,       /* undecodable compressed message */
    E_FRAME_TYPE,    /* text frame on msgpack or binary on JSON */
    E_PHX_DECODE,    /* message is not a Phoenix envelope */
    E_BAD_REPLY,     /* reply with an unexpected ref, topic, status or response */
    E_STRICT,        /* reply not byte-identical to what NervesHub sends */
    E_JOIN_REFUSED,  /* join answered with status error */
    E_JOIN_TIMEOUT,
    E_CHANNEL_CLOSED,/* phx_close / phx_error pushed by the server */
    E_HB_TIMEOUT,    /* heartbeat not answered within one interval (link then reconnects) */
    E_SERVER_CLOSE,  /* WebSocket close frame from the server */
    E_EOF,           /* connection closed by the server after setup */
    E_IO,            /* read/write error after setup */
    E_COUNT
};

extern const char *const cl_counter_names[C_COUNT];
extern const char *const cl_error_names[E_COUNT];

#define CL_SAMPLE_LEN 96

/* One worker's results, in memory shared with the parent; single writer (the worker). */
struct cl_slot {
    volatile int state;                 /* CL_ST_* */
    volatile uint64_t c[C_COUNT];       /* enum cl_counter */
    volatile uint64_t e[E_COUNT];       /* enum cl_error */
    volatile uint64_t close_codes[17];  /* WebSocket close codes 1000..1015 received; [16] others */
    char sample[E_COUNT][CL_SAMPLE_LEN];/* first detail seen per error kind */
    struct hist h_connect;              /* TCP connect, from the actual start */
    struct hist h_tls;                  /* TLS done, from the intended start (open loop) or actual start */
    struct hist h_upgrade;              /* 101, from TLS done */
    struct hist h_join;                 /* `device` join reply, from sending it */
    struct hist h_ext_join;             /* `extensions` join reply, from sending it */
    struct hist h_con_join;             /* `console` join reply, from sending it */
    struct hist h_setup;                /* session ready (all joins), from the intended start */
    struct hist h_hb;                   /* heartbeat reply, from the intended heartbeat time */
    struct hist h_hb_hold;              /* ... only those sent while the parent measured (CL_PHASE_MEASURE) */
    struct hist h_cycle;                /* CL_CYCLE: connection done, from its (intended) start */
    struct hist h_recover;              /* storm: device joined again, from this worker's drop */
    volatile uint64_t drop_us;          /* storm: CLOCK_MONOTONIC µs when this worker began to drop its sessions */
    volatile uint64_t drop_end_us;      /* ... and when it had closed the last one */
    struct tl tl;                       /* events over time from cfg->epoch_us; read after the worker ended */
    /* fanout, per round (index round - 1) */
    struct hist h_fan[CL_FAN_MAX];      /* first `update` of the round per device, from the trigger */
    volatile uint64_t fan_first[CL_FAN_MAX];    /* devices that received the round's update */
    volatile uint64_t fan_dup[CL_FAN_MAX];      /* further copies of it received */
    volatile uint64_t fan_dup_devs[CL_FAN_MAX]; /* devices that received it more than once */
    volatile uint64_t fan_stale;        /* updates of an earlier round or an unknown firmware */
};

#define CL_ST_STARTING 0
#define CL_ST_RUNNING 1
#define CL_ST_RAMPED 2  /* CL_HOLD: every session started and none pending */
#define CL_ST_RECOVERED 3 /* storm: every device of this worker joined again after the drop */
#define CL_ST_DONE 4

#define CL_PHASE_RUN 0
#define CL_PHASE_STOP 1
#define CL_PHASE_MEASURE 2 /* running, and the parent is in its measured phase (hold after the ramp) */
#define CL_PHASE_DROP 3    /* storm: close every session at once, then reconnect with cfg->backoff */

/* Run worker `index` (0 .. cfg->workers - 1) of a run until *phase becomes CL_PHASE_STOP, then
 * close every connection and return (0, or 1 if the worker could not start: the reason is on
 * stderr). The slot must be zeroed with its histograms initialised by the caller; cfg and phase are
 * borrowed for the whole call. Call in a fresh child process: it installs its own libevent base. */
int cl_worker_run(const struct cl_cfg *cfg, int index, struct cl_slot *slot, volatile int *phase);

/* Zero a slot and initialise its histograms. */
void cl_slot_init(struct cl_slot *s);

#endif
