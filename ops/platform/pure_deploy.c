/* Platform decisions without I/O (pure_deploy.h). */
#include "pure_deploy.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "pure_semver.h"

static const char *const meta_keys[] = {"architecture", "author",         "description",
                                        "misc",         "platform",       "product",
                                        "uuid",         "vcs_identifier", "version"};

static int fail(char *err, size_t cap, const char *fmt, const char *arg)
{
    if (err && cap)
        snprintf(err, cap, fmt, arg);
    return -1;
}

static bool str_ok(const json_t *v, size_t max)
{
    return json_is_string(v) && json_string_length(v) > 0 && json_string_length(v) <= max;
}

/* Uppercases a hex string in place; -1 when it is not hex or not `want` chars (0: any). */
static int upper_hex(json_t *s, size_t want)
{
    size_t n = json_string_length(s);
    if (n == 0 || (want && n != want) || n > 256)
        return -1;
    char buf[257];
    memcpy(buf, json_string_value(s), n);
    for (size_t i = 0; i < n; i++) {
        if (!isxdigit((unsigned char)buf[i]))
            return -1;
        buf[i] = (char)toupper((unsigned char)buf[i]);
    }
    return json_string_setn(s, buf, n);
}

int pd_firmware_check(json_t *fw, char *err, size_t cap)
{
    if (!json_is_object(fw))
        return fail(err, cap, "%s", "firmware must be an object");
    static const char *const required[] = {"uuid", "version", "url"};
    for (size_t i = 0; i < 3; i++) {
        json_t *v = json_object_get(fw, required[i]);
        if (!str_ok(v, strcmp(required[i], "url") == 0 ? PD_MAX_URL : PD_MAX_FIELD))
            return fail(err, cap, "firmware.%s must be a non-empty string", required[i]);
    }
    const char *version = json_string_value(json_object_get(fw, "version"));
    struct sv_version sv;
    if (sv_parse(version, strlen(version), &sv) < 0)
        return fail(err, cap, "firmware.version %s is not a semantic version", version);
    for (size_t i = 0; i < sizeof(meta_keys) / sizeof(meta_keys[0]); i++) {
        json_t *v = json_object_get(fw, meta_keys[i]);
        if (v && !json_is_null(v) && !(json_is_string(v) && json_string_length(v) <= PD_MAX_FIELD))
            return fail(err, cap, "firmware.%s must be a string", meta_keys[i]);
    }
    json_t *size = json_object_get(fw, "size");
    if (size && !json_is_null(size) && !(json_is_integer(size) && json_integer_value(size) >= 0))
        return fail(err, cap, "%s", "firmware.size must be a non-negative integer");
    json_t *sum = json_object_get(fw, "checksum");
    if (sum && !json_is_null(sum) && (!json_is_string(sum) || upper_hex(sum, 64) < 0))
        return fail(err, cap, "%s", "firmware.checksum must be 64 hex digits (SHA-256)");
    json_t *parts = json_object_get(fw, "partials_checksums");
    if (parts && !json_is_null(parts)) {
        if (!json_is_array(parts) || json_array_size(parts) > PD_MAX_PARTIALS)
            return fail(err, cap, "%s", "firmware.partials_checksums must be an array of checksums");
        size_t i;
        json_t *p;
        json_array_foreach(parts, i, p)
        {
            if (!json_is_string(p) || upper_hex(p, 64) < 0)
                return fail(err, cap, "%s", "firmware.partials_checksums must hold 64-hex-digit checksums");
        }
    }
    return 0;
}

static void mp_json_str_or_nil(struct lp_out *o, const json_t *v)
{
    if (json_is_string(v))
        lp_mp_str(o, json_string_value(v), json_string_length(v));
    else
        lp_mp_nil(o);
}

int pd_update_payload(struct lp_out *o, const json_t *fw, int64_t deployment_id)
{
    lp_mp_map(o, 7);
    lp_mp_cstr(o, "update_available");
    lp_mp_bool(o, true);
    lp_mp_cstr(o, "firmware_url");
    mp_json_str_or_nil(o, json_object_get(fw, "url"));
    lp_mp_cstr(o, "firmware_meta");
    lp_mp_map(o, (uint32_t)(sizeof(meta_keys) / sizeof(meta_keys[0])));
    for (size_t i = 0; i < sizeof(meta_keys) / sizeof(meta_keys[0]); i++) {
        lp_mp_cstr(o, meta_keys[i]);
        mp_json_str_or_nil(o, json_object_get(fw, meta_keys[i]));
    }
    lp_mp_cstr(o, "size");
    json_t *size = json_object_get(fw, "size");
    if (json_is_integer(size))
        lp_mp_int(o, json_integer_value(size));
    else
        lp_mp_nil(o);
    lp_mp_cstr(o, "checksum");
    mp_json_str_or_nil(o, json_object_get(fw, "checksum"));
    lp_mp_cstr(o, "partials_checksums");
    json_t *parts = json_object_get(fw, "partials_checksums");
    lp_mp_array(o, (uint32_t)json_array_size(parts)); /* 0 for null/absent */
    for (size_t i = 0; i < json_array_size(parts); i++)
        mp_json_str_or_nil(o, json_array_get(parts, i));
    lp_mp_cstr(o, "deployment_id");
    if (deployment_id >= 0)
        lp_mp_int(o, deployment_id);
    else
        lp_mp_nil(o);
    return o->failed ? -1 : 0;
}

int pd_tags_check(const json_t *tags, char *err, size_t cap)
{
    if (!json_is_array(tags) || json_array_size(tags) > PD_MAX_TAGS)
        return fail(err, cap, "tags must be an array of at most %s strings", "64");
    size_t i;
    json_t *t;
    json_array_foreach(tags, i, t)
    {
        if (!str_ok(t, PD_MAX_TAG))
            return fail(err, cap, "%s", "tags must be non-empty strings of at most 128 bytes");
    }
    return 0;
}

int pd_conditions_check(const json_t *c, char *err, size_t cap)
{
    if (!json_is_object(c))
        return fail(err, cap, "%s", "conditions must be an object");
    json_t *tags = json_object_get(c, "tags");
    if (tags && !json_is_null(tags) && pd_tags_check(tags, err, cap) < 0)
        return -1;
    json_t *req = json_object_get(c, "version");
    if (req && !json_is_null(req) && !(json_is_string(req) && json_string_length(req) == 0)) {
        if (!json_is_string(req) || !sv_req_valid(json_string_value(req), json_string_length(req)))
            return fail(err, cap, "conditions.version %s is not a version requirement",
                        json_is_string(req) ? json_string_value(req) : "(not a string)");
    }
    return 0;
}

static bool has_tag(const json_t *tags, const json_t *tag)
{
    size_t i;
    json_t *t;
    json_array_foreach(tags, i, t)
    {
        if (json_equal(t, tag))
            return true;
    }
    return false;
}

bool pd_conditions_match(const json_t *c, const json_t *tags, const char *version)
{
    json_t *want = json_object_get(c, "tags");
    size_t i;
    json_t *t;
    json_array_foreach(want, i, t)
    {
        if (!json_is_array(tags) || !has_tag(tags, t))
            return false;
    }
    json_t *req = json_object_get(c, "version");
    if (!json_is_string(req) || json_string_length(req) == 0)
        return true;
    if (!version || !*version)
        return false;
    return sv_match(json_string_value(req), json_string_length(req), version, strlen(version)) == 1;
}

static void get_str(struct lp_span map, const char *key, struct lp_span *out)
{
    struct lp_span v;
    out->p = NULL;
    out->n = 0;
    if (lp_mp_map_get(map, key, &v) == 1 && lp_mp_read_str(v, out) < 0) {
        out->p = NULL;
        out->n = 0;
    }
}

static bool span_eq(struct lp_span s, const char *c)
{
    size_t n = strlen(c);
    return s.n == n && memcmp(s.p, c, n) == 0;
}

int pd_join_parse(struct lp_span payload, struct pd_join *out)
{
    memset(out, 0, sizeof(*out));
    struct lp_span v;
    if (lp_mp_map_get(payload, "nerves_fw_uuid", &v) < 0)
        return -1;
    get_str(payload, "nerves_fw_uuid", &out->uuid);
    get_str(payload, "nerves_fw_product", &out->product);
    get_str(payload, "nerves_fw_version", &out->version);
    get_str(payload, "nerves_fw_architecture", &out->architecture);
    get_str(payload, "nerves_fw_platform", &out->platform);
    get_str(payload, "nerves_fw_author", &out->author);
    get_str(payload, "nerves_fw_description", &out->description);
    get_str(payload, "nerves_fw_vcs_identifier", &out->vcs_identifier);
    get_str(payload, "nerves_fw_misc", &out->misc);
    get_str(payload, "fwup_version", &out->fwup_version);
    get_str(payload, "device_api_version", &out->api);
    struct sv_version sv;
    if (out->api.n == 0 || sv_parse((const char *)out->api.p, out->api.n, &sv) < 0)
        out->api = lp_cspan("1.0.0");
    get_str(payload, "currently_downloading_uuid", &out->downloading);
    struct lp_span s;
    get_str(payload, "fwup_public_keys", &s);
    out->fwup_keys_on_connect = span_eq(s, "on_connect");
    get_str(payload, "archive_public_keys", &s);
    out->archive_keys_on_connect = span_eq(s, "on_connect");
    struct lp_span meta;
    if (lp_mp_map_get(payload, "meta", &meta) == 1) {
        bool b;
        if (lp_mp_map_get(meta, "firmware_validated", &v) == 1 && lp_mp_read_bool(v, &b) == 0)
            out->validated = b ? PD_VALID_YES : PD_VALID_NO;
        if (lp_mp_map_get(meta, "firmware_auto_revert_detected", &v) == 1 && lp_mp_read_bool(v, &b) == 0)
            out->auto_revert = b;
    }
    return 0;
}

void pd_progress_status(struct lp_span stage, int64_t value, struct lp_span *status, int *progress)
{
    int pct = value < 0 ? 0 : value > 100 ? 100 : (int)value;
    if (stage.n) {
        *status = stage;
        *progress = pct;
    } else if (value == 100) {
        *status = lp_cspan("completed");
        *progress = -1;
    } else {
        *status = lp_cspan("updating");
        *progress = pct;
    }
}

static const char *const known_statuses[] = {"received", "started", "downloading", "updating",
                                             "completed", "failed", "ignored", "rescheduled"};

enum pd_status_kind pd_status_normalize(struct lp_span status, char *out, size_t cap)
{
    static const char needle[] = "fwup error";
    size_t nl = sizeof(needle) - 1;
    for (size_t i = 0; status.n >= nl && i + nl <= status.n; i++) {
        size_t j = 0;
        while (j < nl && tolower(status.p[i + j]) == needle[j])
            j++;
        if (j == nl) {
            snprintf(out, cap, "failed");
            return PD_STATUS_KNOWN;
        }
    }
    size_t n = status.n < cap - 1 ? status.n : cap - 1;
    memcpy(out, status.p, n);
    out[n] = 0;
    for (size_t i = 0; i < sizeof(known_statuses) / sizeof(known_statuses[0]); i++)
        if (n == status.n && strcmp(out, known_statuses[i]) == 0)
            return PD_STATUS_KNOWN;
    return PD_STATUS_UNKNOWN;
}

bool pd_status_clears_inflight(const char *s)
{
    return strcmp(s, "failed") == 0 || strcmp(s, "ignored") == 0 || strcmp(s, "rescheduled") == 0;
}

static bool has_prefix(struct lp_span s, const char *pre)
{
    size_t n = strlen(pre);
    return s.n >= n && memcmp(s.p, pre, n) == 0;
}

const char *pd_humanize_iface(struct lp_span name)
{
    if (has_prefix(name, "wlan"))
        return "wifi";
    if (has_prefix(name, "eth") || has_prefix(name, "en"))
        return "ethernet";
    if (has_prefix(name, "wwan"))
        return "cellular";
    return "unknown";
}

const char *const pd_ext_names[PD_EXT_COUNT] = {"geo", "health", "local_shell", "logging",
                                                "network_identity"};

int pd_ext_lookup(struct lp_span key)
{
    for (int i = 0; i < PD_EXT_COUNT; i++)
        if (span_eq(key, pd_ext_names[i]))
            return i;
    return -1;
}

int pd_ext_parse_list(const char *list, uint32_t *mask)
{
    *mask = 0;
    const char *p = list;
    while (*p) {
        const char *e = strchr(p, ',');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        if (n > 0) {
            struct lp_span k = {(const uint8_t *)p, n};
            int i = pd_ext_lookup(k);
            if (i < 0)
                return -1;
            *mask |= 1u << i;
        }
        p += n;
        if (*p == ',')
            p++;
    }
    return 0;
}

bool pd_ext_attaches(struct lp_span key, struct lp_span version, uint32_t mask)
{
    int i = pd_ext_lookup(key);
    if (i < 0 || !(mask & (1u << i)))
        return false;
    return sv_match("~> 0.0.1", 8, (const char *)version.p, version.n) == 1;
}

int pd_ext_split(struct lp_span scoped, struct lp_span *key, struct lp_span *event)
{
    const uint8_t *c = scoped.n ? memchr(scoped.p, ':', scoped.n) : NULL;
    if (!c)
        return -1;
    key->p = scoped.p;
    key->n = (size_t)(c - scoped.p);
    event->p = c + 1;
    event->n = scoped.n - key->n - 1;
    return 0;
}
