/* Listening sockets: parse host:port, bind with SO_REUSEPORT so every worker owns its own accept
 * queue, and accept with a spare descriptor kept for running out of descriptors. */
#ifndef NHGW_LISTENER_H
#define NHGW_LISTENER_H

#include <stddef.h>
#include <sys/socket.h>

/* Parse "host:port" / "[v6]:port" into addr. Returns 0 or -1. */
int lsn_parse_addr(const char *s, struct sockaddr_storage *addr, socklen_t *len);

/* A non-blocking listening socket with SO_REUSEADDR, SO_REUSEPORT and TCP_NODELAY (which accepted
 * sockets inherit on Linux, so they need no setsockopt of their own). Returns fd or -errno. */
int lsn_open(const struct sockaddr_storage *addr, socklen_t len, int backlog);

/* Format an address as "ip:port". */
void lsn_format(const struct sockaddr_storage *addr, char *out, size_t cap);

#endif
