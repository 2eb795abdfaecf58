/* The admin port: a deliberately tiny HTTP/1.1 server on the master's event loop for /metrics,
 * /healthz and /readyz. One request per connection (answered, then closed); the request head is
 * bounded (4 KiB), every connection has a deadline (5 s) and the number of connections is capped,
 * so a slow or hostile client can neither block the master nor make it grow. */
#ifndef NHGW_ADMIN_H
#define NHGW_ADMIN_H

#include "stats.h"

struct event_base;
struct admin;

/* Fills `body` for a GET of `path` (query removed) and returns the HTTP status, or 404 for an
 * unknown path; *ctype is a static content type. */
typedef int (*admin_handler)(void *arg, const char *path, struct sbuf *body, const char **ctype);

/* Binds `listen` ("host:port") now so a taken port fails start-up. NULL with err on failure. */
struct admin *admin_new(struct event_base *base, const char *listen, admin_handler h, void *arg, char *err,
                        size_t errlen);

/* In a freshly forked child: close every admin descriptor without touching the event base the
 * child shares with the master (an epoll_ctl from the child would change the master's set). */
void admin_close_in_child(struct admin *a);

/* The bound address as "ip:port" (the port chosen by the kernel when the configured one is 0). */
void admin_address(const struct admin *a, char *out, size_t cap);

void admin_free(struct admin *a);

#endif
