/* The console scrollback (see scrollback.h). Appends are processed one line piece at a time
 * (the data up to and including each "\n", then the rest), applying the caps after each piece;
 * every byte is copied at most once into the ring and scanned at most twice (once to split,
 * once when its line is dropped), so the cost is linear in the output whatever its shape. */
#include "scrollback.h"

#include <stdlib.h>
#include <string.h>

#define SB_MIN_ALLOC 256

void sb_init(struct sb *b, uint32_t max_lines, size_t max_bytes)
{
    memset(b, 0, sizeof(*b));
    b->max_lines = max_lines ? max_lines : 1;
    b->max_bytes = max_bytes < 4 ? 4 : max_bytes;
}

void sb_clear(struct sb *b)
{
    free(b->p);
    b->p = NULL;
    b->alloc = b->head = b->len = b->plen = 0;
    b->lines = 0;
}

size_t sb_alloc_bytes(const struct sb *b)
{
    return b->alloc;
}

/* ---- ring primitives ---- */

static void ring_drop(struct sb *b, size_t k)
{
    b->head = (b->head + k) % b->alloc;
    b->len -= k;
    if (b->len == 0)
        b->head = 0;
}

/* Requires len + k <= alloc. */
static void ring_push(struct sb *b, const uint8_t *p, size_t k)
{
    size_t tail = (b->head + b->len) % b->alloc;
    size_t first = b->alloc - tail < k ? b->alloc - tail : k;
    memcpy(b->p + tail, p, first);
    memcpy(b->p, p + first, k - first);
    b->len += k;
}

static uint8_t ring_at(const struct sb *b, size_t i)
{
    return b->p[(b->head + i) % b->alloc];
}

/* Offset of the first "\n" from the oldest byte; the caller knows there is one. */
static size_t ring_first_nl(const struct sb *b)
{
    size_t n1 = b->alloc - b->head < b->len ? b->alloc - b->head : b->len;
    const uint8_t *q = memchr(b->p + b->head, '\n', n1);
    if (q)
        return (size_t)(q - (b->p + b->head));
    q = memchr(b->p, '\n', b->len - n1);
    return n1 + (size_t)(q - b->p);
}

static void drop_oldest_line(struct sb *b)
{
    ring_drop(b, ring_first_nl(b) + 1);
    b->lines--;
}

/* Grows the ring towards `want` bytes (capped at max_bytes), keeping the content. Returns the
 * capacity available afterwards, which is less than asked only when memory ran out. */
static size_t ring_reserve(struct sb *b, size_t want)
{
    if (want > b->max_bytes)
        want = b->max_bytes;
    if (want <= b->alloc)
        return b->alloc;
    size_t n = b->alloc ? b->alloc : SB_MIN_ALLOC;
    while (n < want)
        n *= 2;
    if (n > b->max_bytes)
        n = b->max_bytes;
    uint8_t *p = malloc(n);
    if (!p)
        return b->alloc;
    if (b->len) {
        size_t n1 = b->alloc - b->head < b->len ? b->alloc - b->head : b->len;
        memcpy(p, b->p + b->head, n1);
        memcpy(p + n1, b->p, b->len - n1);
    }
    free(b->p);
    b->p = p;
    b->alloc = n;
    b->head = 0;
    return n;
}

/* ---- append ---- */

/* One piece: bytes with at most one "\n", which is then the last byte. */
static void append_piece(struct sb *b, const uint8_t *p, size_t k, size_t cap)
{
    int nl = p[k - 1] == '\n';
    if (b->plen + k > cap) {
        /* the line being written alone is over the cap: everything older goes, and the line
         * keeps its last `cap` bytes */
        if (k >= cap) {
            ring_drop(b, b->len);
            ring_push(b, p + (k - cap), cap);
        } else {
            ring_drop(b, b->len - b->plen);
            ring_drop(b, b->plen + k - cap);
            ring_push(b, p, k);
        }
        for (int i = 0; i < 3 && b->len && (ring_at(b, 0) & 0xc0) == 0x80; i++)
            ring_drop(b, 1);
        b->lines = nl ? 1 : 0;
        b->plen = nl ? 0 : b->len;
        return;
    }
    /* plen + k <= cap < len + k means len > plen: there is a completed line to drop */
    while (b->len + k > cap)
        drop_oldest_line(b);
    ring_push(b, p, k);
    if (nl) {
        b->lines++;
        b->plen = 0;
        if (b->lines > b->max_lines)
            drop_oldest_line(b);
    } else {
        b->plen += k;
    }
}

int sb_append(struct sb *b, const uint8_t *p, size_t n)
{
    if (n == 0)
        return 0;
    size_t cap = ring_reserve(b, b->len + n);
    if (cap == 0)
        return -1;
    while (n) {
        const uint8_t *q = memchr(p, '\n', n);
        size_t k = q ? (size_t)(q - p) + 1 : n;
        append_piece(b, p, k, cap);
        p += k;
        n -= k;
    }
    return 0;
}

/* ---- view ---- */

static void reverse(uint8_t *p, size_t n)
{
    for (size_t i = 0, j = n; i + 1 < j; i++, j--) {
        uint8_t t = p[i];
        p[i] = p[j - 1];
        p[j - 1] = t;
    }
}

const uint8_t *sb_view(struct sb *b, size_t *n)
{
    *n = b->len;
    if (b->len == 0)
        return b->p;
    if (b->head + b->len > b->alloc) {
        /* rotate the whole ring left by head: the oldest byte lands at 0 */
        reverse(b->p, b->head);
        reverse(b->p + b->head, b->alloc - b->head);
        reverse(b->p, b->alloc);
        b->head = 0;
    }
    return b->p + b->head;
}
