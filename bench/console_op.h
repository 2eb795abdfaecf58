/* nhbench's operator side for the `console` scenario: one console operator per simulated device,
 * speaking the link's msgpack over NATS as `nhctl console` does (proto/LINK.md §9): find the
 * device's gateway worker through the platform's operator API (`devices.list`, else
 * `devices.show`), subscribe to the console output, `console_attach`, then type `dn` inbox pushes
 * that the device (client.c with cfg->console) echoes as `up`, and time each one until its echo
 * arrives on `<prefix>.console.<dev>.out`.
 *
 * Load: open loop at `rate` pushes per second per console, each timed from its *intended* send
 * time (so a stalled sender shows as latency, not as fewer samples: no coordinated omission), or,
 * rate 0, closed loop with one push in flight per console (the echo's arrival sends the next),
 * corrected afterwards like nhbench's handshake cycles. Every push's data carries its sequence
 * number, so losses, duplicates, reordering and output for the wrong device are counted.
 *
 * Threads: NATS.c's (the subscription callback records receipts, and in the closed loop sends
 * the next push) and, open loop, one sender thread. Single writer per field; read the result
 * after co_stop. co_close waits for the NATS library's threads, so the caller may fork again. */
#ifndef NHBENCH_CONSOLE_OP_H
#define NHBENCH_CONSOLE_OP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hist.h"

#define CO_MIN_BYTES 20 /* a push's data: sequence number, padding, "\r\n" */
#define CO_MAX_BYTES 65536
#define CO_LEASE_MS 600000 /* the longest lease (LINK.md §9): no renewal during a run */

struct co_cfg {
    const char *nats_url, *prefix;
    uint32_t consoles; /* devices nhbench-<device_base + i>, i < consoles */
    uint32_t device_base;
    double rate;    /* pushes per second per console; 0 = closed loop, one in flight each */
    uint32_t bytes; /* data bytes per push (CO_MIN_BYTES .. CO_MAX_BYTES) */
};

struct co_result {
    uint32_t attached;      /* consoles whose attach was answered ok */
    uint32_t attach_failed; /* gone, not_joined, full, not found or no answer */
    char attach_error[160]; /* the first attach failure */
    uint64_t sent;          /* pushes published */
    uint64_t send_failed;   /* publishes NATS refused */
    uint64_t received;      /* echoes of a push, each counted once */
    uint64_t lost;          /* pushes never echoed (by co_stop's end) */
    uint64_t dup;           /* echoes of a push already echoed */
    uint64_t reordered;     /* echoes of an earlier push after a later one */
    uint64_t foreign;       /* output that is not an echo of ours (or on another device's subject) */
    uint64_t closed;        /* `closed` messages: a console ended during the run */
    uint64_t data_bytes;    /* echoed data bytes received */
    uint64_t msg_bytes;     /* NATS message bodies received on the output subjects */
    /* the measured window (co_window_begin .. co_window_end): receipts in it */
    double window_s;
    uint64_t win_received, win_data_bytes, win_msg_bytes;
    uint64_t max_lag_us;     /* open loop: the sender's worst delay behind its schedule */
    uint64_t co_interval_us; /* closed loop: the expected interval used for the correction */
    struct hist h;           /* round trip of echoes whose push was intended in the window (µs) */
    struct hist h_corrected; /* closed loop: h corrected for coordinated omission; open loop: = h */
};

struct co;

/* Connect, locate every console's gateway worker, subscribe and attach each. NULL with the reason
 * in err when nothing could be attached; otherwise the result's attach counts say how many. */
struct co *co_open(const struct co_cfg *cfg, struct co_result *res, char *err, size_t cap);

/* Start typing (open loop: the sender thread; closed loop: the first push per console). */
int co_start(struct co *o, char *err, size_t cap);

/* Mark the measured window: receipts between these two calls are its throughput, and echoes of
 * pushes intended in it make the latency histogram. */
void co_window_begin(struct co *o);
void co_window_end(struct co *o);

/* Stop typing and wait up to grace_s for the echoes still outstanding; then the result is final. */
void co_stop(struct co *o, double grace_s);

/* Detach every console, disconnect, and wait for the NATS library's threads. */
void co_close(struct co *o);

#endif
