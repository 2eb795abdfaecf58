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

struct bench_counts {
    uint64_t c[C_COUNT];
    uint64_t e[E_COUNT];
    uint64_t close_codes[17];
};

enum { H_CONNECT, H_TLS, H_UPGRADE, H_JOIN, H_SETUP, H_HB, H_HB_HOLD, H_CYCLE, H_COUNT };

#define REPORT_MAX_FAIL 8
#define REPORT_MAX_RUNS 12 /* runs in one invocation (smoke has 7) */

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
    struct hist h[H_COUNT];
    struct hist h_cycle_corrected;  /* closed loop: H_CYCLE corrected for coordinated omission */
    uint64_t co_interval_us;        /* the expected interval used for that correction */
    char sample[E_COUNT][CL_SAMPLE_LEN]; /* first detail per error kind, from any worker */
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
