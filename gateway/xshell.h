/* The local shell's scrollback (proto/LINK.md §9.1): what the platform asks the gateway to hold
 * for a device's `local_shell` extension through the effects `scrollback_append`,
 * `scrollback_clear` and `scrollback_replay` on the `extensions` channel. NervesHub keeps it in
 * the device's connection process; here it lives with the session, the platform stays stateless.
 *
 * Memory: a session holds one pointer, NULL until the first append; the scrollback is bounded by
 * SB_MAX_LINES and --console-scrollback-bytes (scrollback.h), whatever the platform appends, and
 * is freed by `scrollback_clear`, when the extensions channel ends, and with the connection.
 * The worker's stats follow (stats.h): scrollbacks held and their ring bytes as gauges, updated
 * on every append and clear; replays counted by result. */
#ifndef NHGW_XSHELL_H
#define NHGW_XSHELL_H

#include "common.h"

struct sb;
struct worker;

/* Appends `data` (terminal output, any bytes), allocating the scrollback on first use.
 * Returns 0, or -1 when memory could not be had (the data is dropped; the rest is kept). */
int xshell_append(struct worker *w, struct sb **sb, struct span data);

/* Frees the scrollback (*sb becomes NULL); no-op when there is none. */
void xshell_clear(struct sb **sb);

/* Publishes the scrollback as it is now on `subject` (its form already validated by the codec)
 * as {v: 1, ev: "scrollback", p: {data: bin}} — empty data when there is none, so the receiver
 * always learns that the replay happened. Returns 0, or -1 when not sent (among others: a
 * subject over 256 bytes, which nats-server could refuse by closing the connection). */
int xshell_replay(struct worker *w, struct sb *sb, struct span subject);

#endif
