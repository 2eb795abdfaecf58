/* Phoenix channel semantics for one device socket (device-protocol.md §3): heartbeat, join,
 * leave, the pinned `device` topic, channel limits, and relaying device events to the platform
 * through the link and applying the effects it returns. Knows nothing of TLS or frames: it gets
 * whole messages from conn.c and hands encoded messages back to it. */
#ifndef NHGW_SESSION_H
#define NHGW_SESSION_H

#include <stddef.h>
#include <stdint.h>

#include "common.h"

struct conn;
struct link_reply;
struct reg_entry;
struct worker;

/* Start a session once auth succeeded: `device_id` and `info` (the platform's socket-level
 * info) are copied. An older connection of the same device on this worker is closed with 1001;
 * with a registry, the device is claimed fleet-wide (proto/LINK.md §8) and an older holder
 * elsewhere is kicked. Returns NULL on allocation failure. */
struct sess *sess_new(struct conn *c, struct span device_id, struct span info);

/* Handle one complete WebSocket data message (already inflated and UTF-8 checked). Returns 0, or
 * a WebSocket close code when the message is unacceptable (the caller closes). */
int sess_on_message(struct conn *c, const uint8_t *msg, size_t len);

/* The connection is going away: tells the platform (disconnect), releases the registry entry,
 * timers and follows, and frees the session. `reason` is used unless the gateway recorded a more
 * precise one (sess_set_close_reason). */
void sess_free(struct conn *c, const char *reason);

/* Record why the gateway is ending the session (a LINK.md §4.3 reason; static string). The
 * first one recorded wins. */
void sess_set_close_reason(struct conn *c, const char *reason);

const char *sess_device_id(const struct sess *s);

/* Route the worker link's inbox and shared-topic messages to sessions. */
void sess_attach_sink(struct worker *w);

/* Once a second: batched last-seen heartbeats to the platform. */
void sess_heartbeat_tick(struct worker *w);

/* The registry's resync found a newer holder of e's device: close that session (1001). */
void sess_on_registry_conflict(void *arg, struct reg_entry *e);

#endif
