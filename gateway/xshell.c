/* The local shell's scrollback (see xshell.h, proto/LINK.md §9.1). */
#include "xshell.h"

#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "link.h"
#include "lp.h"
#include "scrollback.h"
#include "stats.h"
#include "worker.h"

/* A replay subject longer than this is not published: nats-server's control line (the whole
 * "PUB <subject> <size>" line) is 4 KiB by default, and a longer one would make the server close
 * the worker's connection, and with it every device's link. Operators' subjects are short. */
#define XSHELL_MAX_SUBJECT 256

/* Counted through stats_w rather than w->stats: xshell_clear is called where no worker is at
 * hand. The gauges follow every allocation and release, so they return to 0 with the sessions. */

/* Encode buffers, reused: a worker is one thread. */
static struct lp_out payload_out, msg_out;

int xshell_append(struct worker *w, struct sb **sb, struct span data)
{
    if (!*sb) {
        if (data.len == 0)
            return 0; /* nothing to hold: stay unallocated */
        *sb = malloc(sizeof(**sb));
        if (!*sb)
            return -1;
        sb_init(*sb, SB_MAX_LINES, (size_t)w->cfg->console_scrollback_bytes);
        stats_w->xshell_sbs++;
    }
    size_t had = sb_alloc_bytes(*sb);
    int r = sb_append(*sb, (const uint8_t *)data.p, data.len);
    stats_w->xshell_sb_bytes += sb_alloc_bytes(*sb) - had; /* sb_append never shrinks the ring */
    return r;
}

void xshell_clear(struct sb **sb)
{
    if (!*sb)
        return;
    stats_w->xshell_sbs--;
    stats_w->xshell_sb_bytes -= sb_alloc_bytes(*sb);
    sb_free(*sb);
    free(*sb);
    *sb = NULL;
}

static int replay(struct worker *w, struct sb *sb, struct span subject)
{
    if (!w->link->ops->publish || subject.len == 0 || subject.len > XSHELL_MAX_SUBJECT)
        return -1;
    char subj[XSHELL_MAX_SUBJECT + 1];
    memcpy(subj, subject.p, subject.len);
    subj[subject.len] = 0;
    size_t n = 0;
    const uint8_t *p = sb ? sb_view(sb, &n) : NULL;
    /* the scrollback is at most 512 KiB (--console-scrollback-bytes): one message always fits */
    lp_out_reset(&payload_out);
    lp_mp_map(&payload_out, 1);
    lp_mp_cstr(&payload_out, "data");
    lp_mp_bin(&payload_out, p, n);
    if (payload_out.failed)
        return -1;
    struct lp_console_out m = {lp_cspan("scrollback"), {payload_out.p, payload_out.n}};
    lp_out_reset(&msg_out);
    if (lp_encode_console_out(&msg_out, &m) != 0)
        return -1;
    return w->link->ops->publish(w->link, subj, msg_out.p, msg_out.n);
}

int xshell_replay(struct worker *w, struct sb *sb, struct span subject)
{
    int r = replay(w, sb, subject);
    stats_w->xshell_replays[r == 0 ? ST_XSHELL_OK : ST_XSHELL_FAILED]++;
    return r;
}
