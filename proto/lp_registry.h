/* lpr: the session registry's Redis contract (proto/LINK.md §8): the Lua scripts every program
 * runs against the registry, and builders for its key names. Pure strings: no Redis client, no
 * I/O, no other project module, so the gateway, the platform and nhctl all link it alone.
 *
 * Keys (`<p>` = the link prefix):
 *   <p>:dev:<dev>          hash  gw, w, cref, at, peer[, fw]; TTL refreshed by the holding worker
 *   <p>:gw:<gw>:devs       set   device ids gateway <gw> holds (no TTL: `reap` removes it)
 *   <p>:gw:<gw>:alive      str   unix ms of the gateway's last liveness refresh, short TTL
 *   <p>:gws                set   gateway ids that have registered
 *
 * Every script is atomic (Redis runs a script to completion before any other command), which is
 * what makes claim/release/resync correct under concurrent connects of the same device.
 * Numbers travel as canonical decimal strings (`w`, `cref`, `at`, `ttl`): scripts compare `gw`
 * and `cref` as strings, so a cref must always be formatted the same way (PRIu64, no padding).
 * A script derives the device id from its `<p>:dev:<dev>` key (the prefix holds no ':'), so the
 * ARGV lists stay as LINK.md §8 gives them. Requires Redis >= 5 (effects replication, HSET with
 * several fields). Cluster: claim/release/resync/setfw declare every key they touch, but the
 * device hash and the gateway set hash to different slots; `reap` builds device keys from set
 * members and is not cluster-safe at all. The registry is meant for one Redis (or a replicated
 * primary), not a cluster. */
#ifndef NHGW_LP_REGISTRY_H
#define NHGW_LP_REGISTRY_H

#include <stdbool.h>
#include <stddef.h>

#define LPR_MAX_PREFIX 32
#define LPR_MAX_GW 64
#define LPR_MAX_DEV 128
/* Room for any key built below from valid names, with its NUL ("<p>:gw:<gw>:alive" is the
 * longest gateway key, "<p>:dev:<dev>" the longest overall). */
#define LPR_KEY_MAX (LPR_MAX_PREFIX + sizeof(":dev:") - 1 + LPR_MAX_DEV + 1)
/* The alive key's TTL and the period its owner refreshes it at (LINK.md §8). */
#define LPR_ALIVE_TTL_MS 15000
#define LPR_ALIVE_EVERY_MS 5000

/* ---- scripts ----
 * Common error: a key that is not `<p>:dev:<dev>` where one is expected is answered with an
 * error reply ("ERR lpr: ..."), as is a key of the wrong type (Redis's WRONGTYPE). */

/* claim — a new connection of `dev` is established; last writer wins.
 * KEYS[1] = <p>:dev:<dev>   KEYS[2] = <p>:gw:<gw>:devs
 * ARGV = gw, w, cref, at (unix ms), peer, ttl (ms, > 0)
 * Replaces the whole hash with the new holder (dropping fields of the previous one, e.g. fw),
 * sets its TTL and adds dev to the gateway's set.
 * Returns nil when there was no holder, else the previous holder as {gw, w, cref} (strings; the
 * caller compares gw and cref with its own to tell "it was us" from another connection). */
#define LPR_SCRIPT_CLAIM                                                                        \
    "local s = string.find(KEYS[1], ':dev:', 1, true)\n"                                        \
    "if not s then return redis.error_reply('ERR lpr: not a device key') end\n"                 \
    "local prev = redis.call('HMGET', KEYS[1], 'gw', 'w', 'cref')\n"                            \
    "redis.call('DEL', KEYS[1])\n"                                                              \
    "redis.call('HSET', KEYS[1], 'gw', ARGV[1], 'w', ARGV[2], 'cref', ARGV[3], 'at', ARGV[4],"  \
    " 'peer', ARGV[5])\n"                                                                       \
    "redis.call('PEXPIRE', KEYS[1], ARGV[6])\n"                                                 \
    "redis.call('SADD', KEYS[2], string.sub(KEYS[1], s + 5))\n"                                 \
    "if not prev[1] then return false end\n"                                                    \
    "return {prev[1], prev[2] or '', prev[3] or ''}\n"

/* release — the connection (gw, cref) ended: compare-and-delete.
 * KEYS[1] = <p>:dev:<dev>   KEYS[2] = <p>:gw:<gw>:devs
 * ARGV = gw, cref
 * Deletes the hash and removes dev from the set only if the hash still names (gw, cref).
 * Also removes dev from the set when no connection of this gateway holds it any more (hash
 * gone, or held by another gateway), so a kicked gateway's set does not keep stale members;
 * when another connection of the same gateway holds it, the set is left alone.
 * Returns 1 when the hash was deleted, else 0. */
#define LPR_SCRIPT_RELEASE                                                                      \
    "local s = string.find(KEYS[1], ':dev:', 1, true)\n"                                        \
    "if not s then return redis.error_reply('ERR lpr: not a device key') end\n"                 \
    "local h = redis.call('HMGET', KEYS[1], 'gw', 'cref')\n"                                    \
    "if h[1] == ARGV[1] and h[2] == ARGV[2] then\n"                                             \
    "  redis.call('DEL', KEYS[1])\n"                                                            \
    "  redis.call('SREM', KEYS[2], string.sub(KEYS[1], s + 5))\n"                               \
    "  return 1\n"                                                                              \
    "end\n"                                                                                     \
    "if h[1] ~= ARGV[1] then redis.call('SREM', KEYS[2], string.sub(KEYS[1], s + 5)) end\n"     \
    "return 0\n"

/* resync — rewrite a live session's entry after Redis came back (or the hash went missing).
 * KEYS[1] = <p>:dev:<dev>   KEYS[2] = <p>:gw:<gw>:devs
 * ARGV = gw, w, cref, at, peer, ttl, fw ("" = none)
 * Writes the entry (all fields, fw set or removed, TTL, set membership) only if the hash is
 * absent (or has no holder) or already names (gw, cref). Returns nil when written; otherwise
 * writes nothing and returns the other holder as {gw, w, cref}: that connection claimed the
 * device later, and the caller closes its own (LINK.md §8). */
#define LPR_SCRIPT_RESYNC                                                                       \
    "local s = string.find(KEYS[1], ':dev:', 1, true)\n"                                        \
    "if not s then return redis.error_reply('ERR lpr: not a device key') end\n"                 \
    "local h = redis.call('HMGET', KEYS[1], 'gw', 'w', 'cref')\n"                               \
    "if h[1] and not (h[1] == ARGV[1] and h[3] == ARGV[3]) then\n"                              \
    "  return {h[1], h[2] or '', h[3] or ''}\n"                                                 \
    "end\n"                                                                                     \
    "redis.call('HSET', KEYS[1], 'gw', ARGV[1], 'w', ARGV[2], 'cref', ARGV[3], 'at', ARGV[4],"  \
    " 'peer', ARGV[5])\n"                                                                       \
    "if ARGV[7] and ARGV[7] ~= '' then redis.call('HSET', KEYS[1], 'fw', ARGV[7])\n"            \
    "else redis.call('HDEL', KEYS[1], 'fw') end\n"                                              \
    "redis.call('PEXPIRE', KEYS[1], ARGV[6])\n"                                                 \
    "redis.call('SADD', KEYS[2], string.sub(KEYS[1], s + 5))\n"                                 \
    "return false\n"

/* setfw — record the device's firmware uuid (the `fw` of a join reply) on its own entry.
 * KEYS[1] = <p>:dev:<dev>
 * ARGV = gw, cref, fw ("" removes the field)
 * Writes only if the hash names (gw, cref), so a late write never lands on a newer holder's
 * entry. Returns 1 when written, else 0. */
#define LPR_SCRIPT_SETFW                                                                        \
    "local h = redis.call('HMGET', KEYS[1], 'gw', 'cref')\n"                                    \
    "if h[1] ~= ARGV[1] or h[2] ~= ARGV[2] then return 0 end\n"                                 \
    "if ARGV[3] ~= '' then redis.call('HSET', KEYS[1], 'fw', ARGV[3])\n"                        \
    "else redis.call('HDEL', KEYS[1], 'fw') end\n"                                              \
    "return 1\n"

/* reap — clean up after a dead gateway.
 * KEYS[1] = <p>:gw:<gw>:devs   KEYS[2] = <p>:gws   KEYS[3] = <p>:gw:<gw>:alive
 * ARGV = gw[, max] (max: members to process in this call; absent or "0" = all of them)
 * Does nothing and returns {0, -1} while the alive key exists (checked atomically here, so a
 * gateway that came back is never reaped). Otherwise takes up to `max` members out of the set,
 * deletes each member's hash if it still names this gateway (any worker; a hash since claimed by
 * another gateway is left alone), and returns {deleted, left}: hashes deleted by this call and
 * members still in the set. When left is 0 the set is gone and gw is removed from <p>:gws.
 * With `max`, call again until left is 0; each call blocks Redis for O(max) only. Not
 * cluster-safe (device keys are built from set members). */
#define LPR_SCRIPT_REAP                                                                         \
    "if #KEYS < 3 then return redis.error_reply('ERR lpr: reap needs 3 keys') end\n"            \
    "if redis.call('EXISTS', KEYS[3]) == 1 then return {0, -1} end\n"                           \
    "local e = string.find(KEYS[1], ':gw:', 1, true)\n"                                         \
    "if not e then return redis.error_reply('ERR lpr: not a gateway set key') end\n"            \
    "local p = string.sub(KEYS[1], 1, e - 1)\n"                                                 \
    "local max = tonumber(ARGV[2] or '0') or 0\n"                                               \
    "local devs\n"                                                                              \
    "if max > 0 then devs = redis.call('SPOP', KEYS[1], max)\n"                                 \
    "else devs = redis.call('SMEMBERS', KEYS[1]); redis.call('DEL', KEYS[1]) end\n"             \
    "local n = 0\n"                                                                             \
    "for _, d in ipairs(devs) do\n"                                                             \
    "  local k = p .. ':dev:' .. d\n"                                                           \
    "  if redis.call('HGET', k, 'gw') == ARGV[1] then redis.call('DEL', k); n = n + 1 end\n"    \
    "end\n"                                                                                     \
    "local left = redis.call('SCARD', KEYS[1])\n"                                               \
    "if left == 0 then redis.call('SREM', KEYS[2], ARGV[1]) end\n"                              \
    "return {n, left}\n"

enum lpr_script {
    LPR_CLAIM,
    LPR_RELEASE,
    LPR_RESYNC,
    LPR_SETFW,
    LPR_REAP,
    LPR_SCRIPT_COUNT
};

/* The script's text (one of the macros above); NULL for an out-of-range value. */
const char *lpr_script_text(enum lpr_script s);
/* "claim", "release", ...; NULL for an out-of-range value. */
const char *lpr_script_name(enum lpr_script s);

/* ---- names (LINK.md §1) ---- */

/* prefix: [A-Za-z0-9_-]{1,32} */
bool lpr_prefix_valid(const char *p, size_t n);
/* gateway id: [A-Za-z0-9_-]{1,64} */
bool lpr_gw_valid(const char *p, size_t n);
/* device id: valid UTF-8, 1..128 bytes, none of '.', '*', '>', whitespace or control chars */
bool lpr_dev_valid(const char *p, size_t n);

/* ---- keys ----
 * Each builder writes the key and a NUL into out[0..cap) and returns the key's length, or 0
 * (and out[0] = '\0' when cap > 0) when it does not fit. Names are not validated here; with
 * valid names, LPR_KEY_MAX bytes always suffice. */

/* <p>:dev:<dev> */
size_t lpr_key_dev(char *out, size_t cap, const char *prefix, size_t prefix_len, const char *dev,
                   size_t dev_len);
/* <p>:gw:<gw>:devs */
size_t lpr_key_gw_devs(char *out, size_t cap, const char *prefix, size_t prefix_len,
                       const char *gw, size_t gw_len);
/* <p>:gw:<gw>:alive */
size_t lpr_key_gw_alive(char *out, size_t cap, const char *prefix, size_t prefix_len,
                        const char *gw, size_t gw_len);
/* <p>:gws */
size_t lpr_key_gws(char *out, size_t cap, const char *prefix, size_t prefix_len);

#endif
