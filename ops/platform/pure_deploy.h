/* The platform's decisions that need no I/O: firmware records and the `update` payload
 * (device-protocol.md §5.3), deployment conditions, the device join payload (§3.3.1), progress
 * and status rules (devicelink-contract.md §2.7), network-interface names, and the extensions'
 * join rules (devicelink-contract.md §6). Unit-tested in tests/unit/test_platform_deploy.c. */
#ifndef NHPF_DEPLOY_H
#define NHPF_DEPLOY_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lp.h"

#define PD_MAX_TAGS 64
#define PD_MAX_TAG 128
#define PD_MAX_FIELD 1024      /* any firmware string field */
#define PD_MAX_URL 4096
#define PD_MAX_PARTIALS 16384 /* 16 GiB of 1 MiB parts */

/* Checks an operator-supplied firmware object (api.md: uuid, version, url required; size,
 * checksum, partials_checksums, architecture, platform, product, author, description, misc,
 * vcs_identifier optional) and normalises it in place: checksums become uppercase hex. 0, or -1
 * with a message in err. */
int pd_firmware_check(json_t *fw, char *err, size_t cap);

/* Appends the 7-key `update` payload for a checked firmware object; deployment_id < 0 encodes
 * null (a manual push). Returns 0, or -1 when `o` failed. */
int pd_update_payload(struct lp_out *o, const json_t *fw, int64_t deployment_id);

/* Checks a conditions object {"tags": [str...]?, "version": requirement?}; 0 or -1 with err. */
int pd_conditions_check(const json_t *conditions, char *err, size_t cap);

/* True when a device with `tags` (a JSON array of strings, or NULL for none) and firmware
 * `version` (NULL/empty when unknown) satisfies checked `conditions`: its tags are a superset of
 * the condition tags and its version matches the requirement (a device of unknown or invalid
 * version matches only conditions without one). */
bool pd_conditions_match(const json_t *conditions, const json_t *tags, const char *version);

/* Checks a tags array (strings, 1..PD_MAX_TAG bytes, at most PD_MAX_TAGS). */
int pd_tags_check(const json_t *tags, char *err, size_t cap);

enum pd_validation { PD_VALID_UNKNOWN, PD_VALID_YES, PD_VALID_NO };

/* The keys of the device join payload the platform reads. Spans point into the payload. */
struct pd_join {
    struct lp_span uuid, product, version, architecture, platform, author, description,
        vcs_identifier, misc, fwup_version;
    struct lp_span api;         /* device_api_version, "1.0.0" when missing or invalid */
    struct lp_span downloading; /* currently_downloading_uuid; n == 0: null or empty */
    bool fwup_keys_on_connect, archive_keys_on_connect;
    enum pd_validation validated; /* meta.firmware_validated */
    bool auto_revert;             /* meta.firmware_auto_revert_detected */
};

/* 0, or -1 when the payload is not a map. Keys of the wrong type count as absent. */
int pd_join_parse(struct lp_span payload, struct pd_join *out);

/* fwup_progress/update_progress (device-protocol.md §3.3.4): the status and progress
 * (-1: none) for a report with `stage` (n == 0: none) and `value`. */
void pd_progress_status(struct lp_span stage, int64_t value, struct lp_span *status, int *progress);

enum pd_status_kind { PD_STATUS_UNKNOWN, PD_STATUS_KNOWN };

/* Normalises a status_update status into out (NUL-terminated): anything containing
 * "fwup error" (case-insensitively) is "failed". Returns whether it is a status the platform
 * knows (received, started, downloading, updating, completed, failed, ignored, rescheduled). */
enum pd_status_kind pd_status_normalize(struct lp_span status, char *out, size_t cap);

/* Statuses that end the in-flight update (failed, ignored, rescheduled). */
bool pd_status_clears_inflight(const char *status);

/* wlan* → wifi, eth*|en* → ethernet, wwan* → cellular, else unknown. */
const char *pd_humanize_iface(struct lp_span name);

/* Supported extensions (devicelink-contract.md §6), in the order of their bit. */
enum pd_ext { PD_EXT_GEO, PD_EXT_HEALTH, PD_EXT_LOCAL_SHELL, PD_EXT_LOGGING, PD_EXT_NETWORK_IDENTITY,
              PD_EXT_COUNT };
extern const char *const pd_ext_names[PD_EXT_COUNT];

/* The extension named `key`, or -1. */
int pd_ext_lookup(struct lp_span key);

/* Parses a comma-separated allow-list ("health,geo") into a bit mask; -1 on an unknown name. */
int pd_ext_parse_list(const char *list, uint32_t *mask);

/* Extension key `key` offered at `version` attaches iff supported, allowed by `mask` and its
 * version matches `~> 0.0.1`. */
bool pd_ext_attaches(struct lp_span key, struct lp_span version, uint32_t mask);

/* Splits "<key>:<event>" at the first ':'; -1 when there is none. */
int pd_ext_split(struct lp_span scoped, struct lp_span *key, struct lp_span *event);

#endif
