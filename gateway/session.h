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

/* Start a session once auth succeeded: `device_id` is copied. Issues the link's connect call.
 * Returns NULL on allocation failure. */
struct sess *sess_new(struct conn *c, struct span device_id);

/* Handle one complete WebSocket data message (already inflated and UTF-8 checked). Returns 0, or
 * a WebSocket close code when the message is unacceptable (the caller closes). */
int sess_on_message(struct conn *c, const uint8_t *msg, size_t len);

/* The connection is going away: tells the platform (disconnect) and frees the session. */
void sess_free(struct conn *c, const char *reason);

const char *sess_device_id(const struct sess *s);

#endif
