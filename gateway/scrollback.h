/* A console's scrollback: the last output of a device's terminal, bounded in lines and in bytes.
 *
 * Lines: NervesHub's algorithm (devicelink-contract.md §3 "Scrollback"): at most `max_lines`
 * completed lines (each with its "\n") plus the partial line being written.
 * Bytes (NervesHub has none): the whole text stays within `max_bytes`. When an append would go
 * over, whole lines are dropped, oldest first; when one line alone (the partial line, or a
 * completed line longer than the cap) exceeds the cap, only its last `max_bytes` bytes are kept,
 * moved forward past any UTF-8 continuation bytes so the text starts on a character boundary.
 *
 * Storage is a ring buffer allocated on the first append and grown by doubling up to
 * `max_bytes`, so a console that never prints costs nothing and one that printed a prompt costs
 * little. Free of I/O. */
#ifndef NHGW_SCROLLBACK_H
#define NHGW_SCROLLBACK_H

#include <stddef.h>
#include <stdint.h>

#define SB_MAX_LINES 1024

struct sb {
    uint8_t *p; /* ring of `alloc` bytes; NULL until the first append */
    size_t alloc;
    size_t head;        /* index of the oldest byte */
    size_t len;         /* bytes held */
    size_t plen;        /* bytes of the trailing partial line (after the last "\n") */
    uint32_t lines;     /* completed lines held */
    uint32_t max_lines; /* ≥ 1 */
    size_t max_bytes;   /* ≥ 4 */
};

/* An empty scrollback; allocates nothing. */
void sb_init(struct sb *b, uint32_t max_lines, size_t max_bytes);

/* Appends terminal output. Returns 0, or -1 when memory could not be had at all (the data is
 * then dropped; what was held is kept). A failed growth is not an error: the scrollback then
 * keeps within what it has. */
int sb_append(struct sb *b, const uint8_t *p, size_t n);

/* The text held, made contiguous in place; valid until the next sb_append / sb_clear / sb_free.
 * *n = 0 (and possibly NULL) when empty. */
const uint8_t *sb_view(struct sb *b, size_t *n);

/* Empties the scrollback and releases its memory (it may be used again). */
void sb_clear(struct sb *b);
#define sb_free sb_clear

/* Bytes of memory held (for tests and accounting). */
size_t sb_alloc_bytes(const struct sb *b);

#endif
