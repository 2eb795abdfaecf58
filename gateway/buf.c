/* Growable byte buffer with a hard cap (see buf.h). */
#include "buf.h"

#include <stdlib.h>
#include <string.h>

int buf_try_reserve(struct buf *b, size_t extra, size_t limit)
{
    if (extra > limit || b->len > limit - extra)
        return -1;
    size_t need = b->len + extra;
    if (need <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    if (cap > limit)
        cap = limit;
    uint8_t *p = realloc(b->p, cap);
    if (!p)
        return -1;
    b->p = p;
    b->cap = cap;
    return 0;
}

int buf_try_append(struct buf *b, const void *data, size_t n, size_t limit)
{
    if (buf_try_reserve(b, n, limit) != 0)
        return -1;
    if (n)
        memcpy(b->p + b->len, data, n);
    b->len += n;
    return 0;
}

void buf_consume(struct buf *b, size_t n)
{
    if (n >= b->len) {
        b->len = 0;
        return;
    }
    memmove(b->p, b->p + n, b->len - n);
    b->len -= n;
}

void buf_free(struct buf *b)
{
    free(b->p);
    *b = BUF_INIT;
}
