/* The remote console (architecture.md §8, proto/LINK.md §9): the gateway's own implementation of
 * the device's `console` topic, as NervesHub's ConsoleChannel is outside DeviceLink. One per
 * joined console channel. Device output (`up`) goes into a scrollback bounded in lines and bytes
 * (scrollback.h) and, with the file-transfer events, is published on
 * `<prefix>.console.<dev>.out` while at least one operator holds an attach lease; operators
 * attach and detach through the worker inbox. Operator input reaches the device as inbox pushes
 * (session.c), not through here.
 *
 * Memory: a joined console that never printed costs this small struct; the scrollback is taken
 * as output arrives; the lease table only while someone is attached. Idle consoles publish
 * nothing. */
#ifndef NHGW_CONSOLE_H
#define NHGW_CONSOLE_H

#include "common.h"

struct console;
struct lp_inbox;
struct lp_out;
struct worker;

/* The device joined `console` with `join_payload` (msgpack): keeps its console_version.
 * NULL when out of memory. */
struct console *console_open(struct worker *w, struct span join_payload);

/* The device pushed `event` on its joined console channel. */
void console_device_event(struct worker *w, const char *dev, struct console *k, struct span event,
                          struct span payload);

/* An operator's console_attach or console_detach (LINK.md §9). Returns an lp_inbox_status; an
 * attach encodes its own reply (scrollback, version) into `reply`. */
int console_inbox(struct worker *w, const char *dev, struct console *k, const struct lp_inbox *m,
                  struct lp_out *reply);

/* The channel ends (left, rejoined, or the connection closed): operators still attached get
 * `closed {reason, detail}`; k is freed. `detail` may be NULL. */
void console_close(struct worker *w, const char *dev, struct console *k, const char *reason,
                   const char *detail);

/* Counts operator input for /metrics: call for each inbox push delivered on a device's `console`
 * channel (session.c); only `dn` is counted (its data bytes). */
void console_note_input(struct worker *w, const struct lp_inbox *m);

#endif
