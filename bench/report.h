/* nhbench results: one `struct run` per executed scenario (its configuration, counter snapshots,
 * merged histograms, /proc samples of the gateway, of nhbench itself and of the kernel's socket
 * memory), the derived figures (memory per session, handshakes per gateway CPU second, rates),
 * the human summary and the JSON file. No I/O other than printing and writing the JSON file. */
#ifndef NHBENCH_REPORT_H
#define NHBENCH_REPORT_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "client.h"
#include "hist.h"
#include "procstat.h"
#include "timeline.h"

struct bench_counts {
    uint64_t c[C_COUNT];
    uint64_t e[E_COUNT];
    uint64_t close_codes[17];
};

enum { H_CONNECT, H_TLS, H_UPGRADE, H_JOIN, H_EXT_JOIN, H_SETUP, H_HB, H_HB_HOLD, H_CYCLE, H_RECOVER, H_COUNT };

#define REPORT_MAX_FAIL 8
#define REPORT_MAX_RUNS 12 /* runs in one invocation (smoke has 8) */
#define REPORT_SERIES 4096 /* once-a-second samples of the gateway kept per run */

/* One sample of the gateway's process tree, taken by the parent about once a second. */
struct series_point {
    double t;           /* seconds from the run's epoch */
    uint64_t cpu_ticks; /* cumulative utime + stime */
    uint64_t rss_kib;
    uint64_t self_ticks;          /* nhbench's own CPU time (parent + workers), cumulative */
    uint64_t sys_busy, sys_all;   /* the whole machine (ps_system_cpu), cumulative */
    uint32_t active;    /* sessions ready and open at that moment (nhbench's count) */
};

/* One fanout round: one operator request and the `update` it made the platform push. */
struct fan_round {
    char path[8];                   /* "scan" (deployment.create) or "topic" (deployment.update, firmware only) */
    char uuid[37];                  /* the firmware this round pushes */
    int64_t deployment;             /* its deployment id */
    int64_t matched, pushed;        /* scan: the platform's reply */
    char reply_path[8];             /* topic: the reply's `fanout` (the platform's choice) */
    double trigger_s;               /* from the run's epoch */
    double api_ms;                  /* request .. reply */
    uint64_t expected;              /* sessions open when the request was sent */
    uint64_t open_after;            /* ... and after the round */
    uint64_t first, dup, dup_devs;  /* devices that received it, further copies, devices with copies */
    uint64_t stale;                 /* updates of another firmware meanwhile */
    double waited_s;                /* trigger .. every device had it (or the timeout), then the grace */
    double gw_cpu_s;                /* gateway CPU over waited_s */
    bool complete;                  /* every expected device received it within the timeout */
    char error[200];                /* the request failed */
    struct hist h;                  /* first receipt per device, from the trigger */
};

struct run {
    char name[32];                  /* scenario */
    char label[128];
    struct cl_cfg cfg;
    double hold_s, duration_s;      /* requested, then measured */
    double warmup_s, settle_s;
    double ramp_s, total_s, hold_start;
    pid_t gw_pid;
    bool have_gw;                   /* the gateway could be sampled */
    struct ps_sample gw_before, gw_ramped, gw_end;       /* ramped = after ramp + settle, or window start */
    struct ps_sample self_before, self_ramped, self_end; /* nhbench and its workers */
    struct ps_sockstat sock_before, sock_ramped, sock_end;
    struct bench_counts at_ramp, at_end, win_start, win_end, final; /* at_end: end of hold, before stopping */
    /* storm (cfg.storm): the parent's drop command and what followed */
    double epoch_s;                 /* CLOCK_MONOTONIC seconds of cfg.epoch_us */
    double storm_timeout_s;         /* how long to wait for every device to come back */
    double ramp_end_s, drop_s, recovered_s, end_s; /* from the epoch */
    double storm_s;                 /* drop command .. every device back (or the timeout) */
    double drop_spread_s;           /* last worker's drop - first worker's drop */
    double drop_took_s;             /* first worker's drop .. last connection closed */
    struct bench_counts at_drop, at_recovered;
    struct ps_sample gw_dropped, gw_recovered;
    /* curves: events per bucket (workers merged) and the active-session gauge per bucket */
    struct tl tl;
    uint32_t active[TL_BUCKETS];
    uint32_t n_active;              /* buckets of `active` filled */
    struct series_point series[REPORT_SERIES];
    uint32_t n_series;
    struct hist h[H_COUNT];
    struct hist h_cycle_corrected;  /* closed loop: H_CYCLE corrected for coordinated omission */
    uint64_t co_interval_us;        /* the expected interval used for that correction */
    char sample[E_COUNT][CL_SAMPLE_LEN]; /* first detail per error kind, from any worker */
    /* fanout (scenario "fanout"): the operator side and the rounds */
    bool fanout;
    char nats_url[200], link_prefix[40], fan_paths[96];
    double fan_timeout_s, fan_grace_s;
    int64_t fan_base_deployment;    /* created before the ramp with the devices' own firmware */
    int n_fan;
    struct fan_round fan[CL_FAN_MAX];
    int n_fail;
    char fail[REPORT_MAX_FAIL][160];
};

/* Record a failure reason (kept up to REPORT_MAX_FAIL). */
void report_fail(struct run *r, const char *why);

/* Merge the workers' histograms into r->h, compute the corrected cycle histogram, and keep one
 * error detail per kind. */
void report_merge_hists(struct run *r, const struct cl_slot *slots, int n);

/* One line describing the run's configuration (static buffer). */
const char *report_describe(const struct run *r);

/* Human summary of one run. */
void report_print(FILE *f, const struct run *r);

/* Write all runs as JSON to path. Returns 0 or -1. */
int report_write_json(const char *path, const char *scenario, const struct run *runs, int n, bool pass,
                      bool smoke, int argc, char **argv);

#endif
