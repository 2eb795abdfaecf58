/* Growable byte buffer with a hard cap. Every growth is a try_ operation: a peer can
 * influence sizes, so failure is reported, never fatal. */
#ifndef NHGW_BUF_H
#define NHGW_BUF_H

#include <stddef.h>
#include <stdint.h>

#include "common.h"

struct buf {
    uint8_t *p;   /* owned; NULL while empty and never grown */
    size_t len;   /* bytes in use */
    size_t cap;   /* bytes allocated */
};

#define BUF_INIT ((struct buf){ NULL, 0, 0 })

/* Make room for at least `extra` more bytes. Returns 0, or -1 if that would exceed
 * `limit` total bytes or allocation fails (the buffer is then unchanged). */
int buf_try_reserve(struct buf *b, size_t extra, size_t limit) WARN_UNUSED;

/* Append bytes; same failure rules as buf_try_reserve. */
int buf_try_append(struct buf *b, const void *data, size_t n, size_t limit) WARN_UNUSED;

/* Drop the first n bytes (n <= len). */
void buf_consume(struct buf *b, size_t n);

/* Release the storage; the buffer is empty and reusable afterwards. */
void buf_free(struct buf *b);

#endif
