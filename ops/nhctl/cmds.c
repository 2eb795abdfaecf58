/* nhctl commands (nhctl.h). Each builds the request body of api.md, calls one verb, and renders
 * the reply; --json prints the reply as received instead (rpc_call). */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../platform/pure_nh1.h"
#include "lp.h"
#include "nhctl.h"

/* ---- helpers ---- */

static json_t *jstr(const char *s)
{
    return json_string(s);
}

/* Any failure to build a request is memory exhaustion or invalid UTF-8 from the command line. */
static int build_failed(const char *cmd)
{
    return nhctl_usage(cmd, "arguments must be valid UTF-8");
}

static int set_str(json_t *o, const char *key, const char *v)
{
    json_t *s = jstr(v);
    return s ? json_object_set_new(o, key, s) : -1;
}

/* Unsigned decimal; -1 when invalid or > max. */
static int parse_u64(const char *s, uint64_t max, uint64_t *out)
{
    if (!s || !*s)
        return -1;
    uint64_t v = 0;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        if (v > (max - (uint64_t)(*p - '0')) / 10)
            return -1;
        v = v * 10 + (uint64_t)(*p - '0');
    }
    *out = v;
    return 0;
}

int64_t parse_duration(const char *s)
{
    if (!s || !*s || !(isdigit((unsigned char)*s) || *s == '.'))
        return -1;
    errno = 0;
    char *end;
    double v = strtod(s, &end);
    if (errno || end == s)
        return -1;
    double mult;
    if (*end == '\0' || strcmp(end, "s") == 0)
        mult = 1000;
    else if (strcmp(end, "ms") == 0)
        mult = 1;
    else if (strcmp(end, "m") == 0)
        mult = 60000;
    else
        return -1;
    double ms = v * mult;
    if (!(ms >= 1) || ms > 86400000.0)
        return -1;
    return (int64_t)ms;
}

/* A device id as the link names it (LINK.md §1): it becomes a NATS subject token for events. */
static bool valid_dev(const char *id)
{
    return lp_valid_dev(lp_cspan(id));
}

/* "ab:cd:…" / lowercase → 40 uppercase hex chars; -1 when it is not a SHA-1 fingerprint. */
static int normalize_fingerprint(const char *in, char out[41])
{
    size_t n = 0;
    for (const char *p = in; *p; p++) {
        if (*p == ':')
            continue;
        if (!isxdigit((unsigned char)*p) || n == 40)
            return -1;
        out[n++] = (char)toupper((unsigned char)*p);
    }
    out[n] = '\0';
    return n == 40 ? 0 : -1;
}

/* The firmware object of deployment.create and device.update from the shared flags. */
static int firmware_from_args(const char *cmd, const struct args *a, json_t **out)
{
    static const struct {
        const char *flag, *key;
    } OPTIONAL[] = {
        {"checksum", "checksum"}, {"architecture", "architecture"},
        {"platform", "platform"}, {"product", "product"},
        {"author", "author"},     {"description", "description"},
        {"misc", "misc"},         {"vcs-identifier", "vcs_identifier"},
    };
    *out = NULL;
    const char *uuid = args_get(a, "firmware-uuid"), *ver = args_get(a, "version"), *url = args_get(a, "url");
    if (!uuid || !*uuid)
        return nhctl_usage(cmd, "--firmware-uuid is required");
    if (!ver || !*ver)
        return nhctl_usage(cmd, "--version is required");
    if (!url || !*url)
        return nhctl_usage(cmd, "--url is required");
    json_t *fw = json_object();
    int bad = !fw || set_str(fw, "uuid", uuid) || set_str(fw, "version", ver) || set_str(fw, "url", url);
    const char *size = args_get(a, "size");
    if (!bad && size) {
        uint64_t v;
        if (parse_u64(size, (uint64_t)1 << 53, &v)) {
            json_decref(fw);
            return nhctl_usage(cmd, "--size must be a byte count, not \"%s\"", size);
        }
        bad = json_object_set_new(fw, "size", json_integer((json_int_t)v));
    }
    for (size_t i = 0; !bad && i < sizeof(OPTIONAL) / sizeof(OPTIONAL[0]); i++) {
        const char *v = args_get(a, OPTIONAL[i].flag);
        if (v)
            bad = set_str(fw, OPTIONAL[i].key, v);
    }
    size_t np = args_count(a, "partial-checksum");
    if (!bad && np) {
        json_t *arr = json_array();
        bad = !arr;
        for (size_t i = 0; !bad && i < np; i++)
            bad = json_array_append_new(arr, jstr(args_nth(a, "partial-checksum", i)));
        if (bad)
            json_decref(arr);
        else
            bad = json_object_set_new(fw, "partials_checksums", arr);
    }
    if (bad) {
        json_decref(fw);
        return build_failed(cmd);
    }
    *out = fw;
    return NHCTL_OK;
}

/* --tag T... → JSON array (possibly empty); NULL on failure. */
static json_t *tags_from_args(const struct args *a)
{
    json_t *arr = json_array();
    size_t n = args_count(a, "tag");
    for (size_t i = 0; arr && i < n; i++) {
        if (json_array_append_new(arr, jstr(args_nth(a, "tag", i)))) {
            json_decref(arr);
            return NULL;
        }
    }
    return arr;
}

/* One call whose reply is rendered by `show`; shared by every request/reply command. */
static int call(struct ctx *c, const char *verb, json_t *body,
                int (*show)(const struct ctx *c, const json_t *reply, const void *arg), const void *arg)
{
    if (!body) {
        nhctl_err("out of memory");
        return NHCTL_ERROR;
    }
    json_t *reply = NULL;
    int rc = rpc_call(c, verb, body, &reply);
    if (rc == NHCTL_OK && !c->json)
        rc = show(c, reply, arg);
    json_decref(reply);
    return rc;
}

static int bad_reply(const char *verb, const char *what)
{
    nhctl_err("invalid reply to %s: %s", verb, what);
    return NHCTL_ERROR;
}

static char *cell_ms(const json_t *v)
{
    if (!json_is_integer(v))
        return render_value(v);
    char buf[48];
    return strdup(render_ms(json_integer_value(v), buf, sizeof(buf)));
}

/* ---- devices ---- */

static const char *const DEV_HEAD[] = {"ID",      "IDENTIFIER", "ONLINE", "GATEWAY", "CONNECTED",
                                       "VERSION", "FIRMWARE",   "TAGS",   "STATUS"};
#define DEV_COLS (sizeof(DEV_HEAD) / sizeof(DEV_HEAD[0]))

static void device_row(struct table *t, const json_t *d)
{
    char *cells[DEV_COLS];
    cells[0] = render_value(json_object_get(d, "id"));
    cells[1] = render_value(json_object_get(d, "identifier"));
    cells[2] = render_value(json_object_get(d, "online"));
    const json_t *gw = json_object_get(d, "gateway"), *w = json_object_get(d, "worker");
    char *g = render_value(gw);
    if (json_is_integer(w) && json_is_string(gw)) {
        size_t n = strlen(g) + 24;
        cells[3] = malloc(n);
        if (cells[3])
            snprintf(cells[3], n, "%s/%" JSON_INTEGER_FORMAT, g, json_integer_value(w));
        free(g);
    } else {
        cells[3] = g;
    }
    cells[4] = cell_ms(json_object_get(d, "connected_at"));
    cells[5] = render_value(json_object_get(d, "firmware_version"));
    cells[6] = render_value(json_object_get(d, "firmware_uuid"));
    cells[7] = render_value(json_object_get(d, "tags"));
    const json_t *st = json_object_get(d, "status"), *pr = json_object_get(d, "progress");
    char *s = render_value(st);
    if (json_is_number(pr)) {
        size_t n = strlen(s) + 32;
        cells[8] = malloc(n);
        if (cells[8])
            snprintf(cells[8], n, "%s %g%%", s, json_number_value(pr));
        free(s);
    } else {
        cells[8] = s;
    }
    table_add(t, (const char *const *)cells);
    for (size_t i = 0; i < DEV_COLS; i++)
        free(cells[i]);
}

static int show_devices(const struct ctx *c, const json_t *r, const void *arg)
{
    (void)c;
    (void)arg;
    const json_t *list = json_object_get(r, "devices");
    if (!json_is_array(list))
        return bad_reply("devices.list", "no \"devices\" array");
    struct table *t = table_new(DEV_HEAD, DEV_COLS);
    size_t i;
    const json_t *d;
    json_array_foreach(list, i, d)
    {
        if (json_is_object(d))
            device_row(t, d);
    }
    table_print(t, stdout);
    if (json_array_size(list) == 0)
        fputs("(no devices)\n", stdout);
    return NHCTL_OK;
}

static int cmd_devices(struct ctx *c, const struct args *a, const char *const *pos)
{
    (void)pos;
    json_t *body = json_object();
    if (body && args_has(a, "online"))
        json_object_set_new(body, "online", json_true());
    return call(c, "devices.list", body, show_devices, NULL);
}

/* Every field of a device object: the known ones in a fixed order, then the rest as received. */
/* ---- extensions: health, location, logs ---- */

/* "k=v, k=v" of an object's scalar members (containers compact JSON). */
static char *render_pairs(const json_t *o)
{
    if (!json_is_object(o) || json_object_size(o) == 0)
        return NULL;
    size_t cap = 256, n = 0;
    char *out = malloc(cap);
    if (!out)
        return NULL;
    out[0] = '\0';
    const char *k;
    const json_t *v;
    json_object_foreach((json_t *)o, k, v)
    {
        char *val = render_value(v);
        size_t need = n + strlen(k) + strlen(val) + 4;
        if (need > cap) {
            while (cap < need)
                cap *= 2;
            char *grown = realloc(out, cap);
            if (!grown) {
                free(val);
                break;
            }
            out = grown;
        }
        n += (size_t)sprintf(out + n, "%s%s=%s", n ? ", " : "", k, val);
        free(val);
    }
    return out;
}

/* The latest health report (health:report's value) as a few readable lines. */
static char *render_health(const json_t *h, const json_t *at)
{
    const json_t *v = json_object_get(h, "value");
    if (!json_is_object(v))
        return json_is_null(h) || !h ? NULL : render_value(h);
    char ts[48] = "";
    if (json_is_integer(at))
        render_ms(json_integer_value(at), ts, sizeof(ts));
    static const char *const PARTS[] = {"metrics", "alarms", "checks", "metadata"};
    size_t cap = 64 + strlen(ts);
    char *parts[4] = {NULL};
    for (size_t i = 0; i < 4; i++) {
        parts[i] = render_pairs(json_object_get(v, PARTS[i]));
        cap += (parts[i] ? strlen(parts[i]) : 0) + 16;
    }
    char *out = malloc(cap);
    if (!out)
        return NULL;
    size_t n = (size_t)sprintf(out, "reported %s", ts[0] ? ts : "-");
    for (size_t i = 0; i < 4; i++) {
        if (parts[i])
            n += (size_t)sprintf(out + n, "; %s: %s", PARTS[i], parts[i]);
        free(parts[i]);
    }
    return out;
}

/* geo:location:update: "lat, lon (source, ±N m)" or the device's error. */
static char *render_location(const json_t *l)
{
    if (!json_is_object(l))
        return NULL;
    const json_t *lat = json_object_get(l, "latitude"), *lon = json_object_get(l, "longitude");
    char buf[512];
    if (json_is_number(lat) && json_is_number(lon)) {
        const char *src = json_string_value(json_object_get(l, "source"));
        const json_t *acc = json_object_get(l, "accuracy");
        int n = snprintf(buf, sizeof(buf), "%.6f, %.6f (%s", json_number_value(lat), json_number_value(lon),
                         src ? src : "unknown source");
        if (json_is_number(acc) && n > 0 && (size_t)n < sizeof(buf))
            n += snprintf(buf + n, sizeof(buf) - (size_t)n, ", ±%g m", json_number_value(acc));
        if (n > 0 && (size_t)n < sizeof(buf) - 1)
            snprintf(buf + n, sizeof(buf) - (size_t)n, ")");
        return strdup(buf);
    }
    const char *code = json_string_value(json_object_get(l, "error_code"));
    const char *desc = json_string_value(json_object_get(l, "error_description"));
    if (code || desc) {
        snprintf(buf, sizeof(buf), "error %s: %s", code ? code : "-", desc ? desc : "-");
        return strdup(buf);
    }
    return render_value(l);
}

/* The stored log lines, oldest first: "  <at> <level> <message>". */
static void print_logs(const json_t *logs)
{
    if (!json_is_array(logs) || json_array_size(logs) == 0)
        return;
    printf("logs (last %zu):\n", json_array_size(logs));
    size_t i;
    const json_t *e;
    json_array_foreach(logs, i, e)
    {
        char ts[48] = "-";
        const json_t *at = json_object_get(e, "at");
        if (json_is_integer(at))
            render_ms(json_integer_value(at), ts, sizeof(ts));
        const char *level = json_string_value(json_object_get(e, "level"));
        const char *msg = json_string_value(json_object_get(e, "message"));
        fputs("  ", stdout);
        out_safe(stdout, ts);
        fputs(" ", stdout);
        out_safe(stdout, level ? level : "-");
        fputs(" ", stdout);
        out_safe(stdout, msg ? msg : "");
        fputs(json_is_true(json_object_get(e, "truncated")) ? " [truncated]\n" : "\n", stdout);
    }
}

static void print_device(const json_t *d)
{
    static const char *const ORDER[] = {
        "id",           "identifier",       "online",        "gateway",      "worker",
        "connected_at", "firmware_version", "firmware_uuid", "tags",         "status",
        "progress",     "deployment_id",    "validated",     "fingerprints", "last_status",
        "health",       "location",
    };
    /* shown by their own renderers (health_at inside health, logs after the list) */
    static const char *const SKIP[] = {"health_at", "logs"};
    const size_t nk = json_object_size(d);
    const char **keys = calloc(nk + 1, sizeof(char *));
    char **vals = calloc(nk + 1, sizeof(char *));
    if (!keys || !vals) {
        free(keys);
        free(vals);
        return;
    }
    size_t n = 0;
    for (size_t i = 0; i < sizeof(ORDER) / sizeof(ORDER[0]); i++) {
        const json_t *v = json_object_get(d, ORDER[i]);
        if (!v)
            continue;
        keys[n] = ORDER[i];
        if (strcmp(ORDER[i], "connected_at") == 0)
            vals[n] = cell_ms(v);
        else if (strcmp(ORDER[i], "health") == 0)
            vals[n] = render_health(v, json_object_get(d, "health_at"));
        else if (strcmp(ORDER[i], "location") == 0)
            vals[n] = render_location(v);
        else
            vals[n] = render_value(v);
        if (!vals[n])
            vals[n] = strdup("-");
        n++;
    }
    const char *k;
    const json_t *v;
    json_object_foreach((json_t *)d, k, v)
    {
        bool known = false;
        for (size_t i = 0; i < sizeof(ORDER) / sizeof(ORDER[0]); i++)
            known |= strcmp(ORDER[i], k) == 0;
        for (size_t i = 0; i < sizeof(SKIP) / sizeof(SKIP[0]); i++)
            known |= strcmp(SKIP[i], k) == 0;
        if (!known && n < nk) {
            keys[n] = k;
            vals[n++] = render_value(v);
        }
    }
    kv_print(stdout, keys, (const char *const *)vals, n);
    print_logs(json_object_get(d, "logs"));
    for (size_t i = 0; i < n; i++)
        free(vals[i]);
    free(keys);
    free(vals);
}

static int show_device(const struct ctx *c, const json_t *r, const void *arg)
{
    (void)c;
    const json_t *d = json_object_get(r, "device");
    if (!json_is_object(d))
        return bad_reply((const char *)arg, "no \"device\" object");
    if (strcmp((const char *)arg, "devices.create") == 0) {
        char *id = render_value(json_object_get(d, "id"));
        fputs("created device ", stdout);
        out_safe(stdout, id);
        fputs("\n", stdout);
        free(id);
    }
    print_device(d);
    return NHCTL_OK;
}

static int cmd_device_show(struct ctx *c, const struct args *a, const char *const *pos)
{
    (void)a;
    json_t *body = json_pack("{s:s}", "id", pos[0]);
    if (!body)
        return build_failed("device show");
    return call(c, "devices.show", body, show_device, "devices.show");
}

static int cmd_device_create(struct ctx *c, const struct args *a, const char *const *pos)
{
    json_t *body = json_pack("{s:s}", "identifier", pos[0]);
    if (!body)
        return build_failed("device create");
    const char *fp = args_get(a, "fingerprint");
    if (fp) {
        char norm[41];
        if (normalize_fingerprint(fp, norm)) {
            json_decref(body);
            return nhctl_usage("device create",
                               "--fingerprint must be a SHA-1 fingerprint (40 hex digits, colons "
                               "allowed), not \"%s\"",
                               fp);
        }
        set_str(body, "fingerprint", norm);
    }
    if (args_has(a, "tag")) {
        json_t *tags = tags_from_args(a);
        if (!tags || json_object_set_new(body, "tags", tags)) {
            json_decref(body);
            return build_failed("device create");
        }
    }
    return call(c, "devices.create", body, show_device, "devices.create");
}

/* ---- deployments ---- */

static int show_deployment_created(const struct ctx *c, const json_t *r, const void *arg)
{
    (void)c;
    (void)arg;
    const json_t *d = json_object_get(r, "deployment");
    if (!json_is_object(d))
        return bad_reply("deployment.create", "no \"deployment\" object");
    char *id = render_value(json_object_get(d, "id"));
    fputs("created deployment ", stdout);
    out_safe(stdout, id);
    const char *name = json_string_value(json_object_get(d, "name"));
    if (name) {
        fputs(" (", stdout);
        out_safe(stdout, name);
        fputs(")", stdout);
    }
    fputs("\n", stdout);
    free(id);
    return NHCTL_OK;
}

static int cmd_deployment_create(struct ctx *c, const struct args *a, const char *const *pos)
{
    (void)pos;
    const char *cmd = "deployment create";
    const char *name = args_get(a, "name");
    if (!name || !*name)
        return nhctl_usage(cmd, "--name is required");
    json_t *fw;
    int rc = firmware_from_args(cmd, a, &fw);
    if (rc)
        return rc;
    json_t *cond = json_object(), *tags = tags_from_args(a);
    json_t *body = json_object();
    const char *req = args_get(a, "version-requirement");
    int bad = !cond || !tags || !body || set_str(body, "name", name) ||
              json_object_set_new(body, "firmware", fw) || json_object_set_new(cond, "tags", tags) ||
              (req && set_str(cond, "version", req)) || json_object_set_new(body, "conditions", cond);
    if (bad) {
        json_decref(body);
        return build_failed(cmd);
    }
    return call(c, "deployment.create", body, show_deployment_created, NULL);
}

static int show_deployments(const struct ctx *c, const json_t *r, const void *arg)
{
    (void)c;
    (void)arg;
    static const char *const HEAD[] = {"ID", "NAME", "VERSION", "FIRMWARE", "TAGS", "REQUIREMENT"};
    const json_t *list = json_object_get(r, "deployments");
    if (!json_is_array(list))
        return bad_reply("deployment.list", "no \"deployments\" array");
    struct table *t = table_new(HEAD, 6);
    size_t i;
    const json_t *d;
    json_array_foreach(list, i, d)
    {
        const json_t *fw = json_object_get(d, "firmware"), *cond = json_object_get(d, "conditions");
        char *cells[6] = {
            render_value(json_object_get(d, "id")),       render_value(json_object_get(d, "name")),
            render_value(json_object_get(fw, "version")), render_value(json_object_get(fw, "uuid")),
            render_value(json_object_get(cond, "tags")),  render_value(json_object_get(cond, "version")),
        };
        table_add(t, (const char *const *)cells);
        for (int k = 0; k < 6; k++)
            free(cells[k]);
    }
    table_print(t, stdout);
    if (json_array_size(list) == 0)
        fputs("(no deployments)\n", stdout);
    return NHCTL_OK;
}

static int cmd_deployment_list(struct ctx *c, const struct args *a, const char *const *pos)
{
    (void)a;
    (void)pos;
    return call(c, "deployment.list", json_object(), show_deployments, NULL);
}

static int show_deleted(const struct ctx *c, const json_t *r, const void *arg)
{
    (void)c;
    (void)r;
    fputs("deleted deployment ", stdout);
    out_safe(stdout, (const char *)arg);
    fputs("\n", stdout);
    return NHCTL_OK;
}

static int cmd_deployment_delete(struct ctx *c, const struct args *a, const char *const *pos)
{
    (void)a;
    /* Deployment ids are integers (they are the update payload's deployment_id). */
    uint64_t id;
    if (parse_u64(pos[0], INT64_MAX, &id))
        return nhctl_usage("deployment delete", "deployment id must be a number, not \"%s\"", pos[0]);
    return call(c, "deployment.delete", json_pack("{s:I}", "id", (json_int_t)id), show_deleted, pos[0]);
}

/* ---- device commands ---- */

struct push_arg {
    const char *what, *id;
};

static int show_push(const struct ctx *c, const json_t *r, const void *arg)
{
    (void)c;
    const struct push_arg *p = arg;
    const char *st = json_string_value(json_object_get(r, "status"));
    if (!st)
        return bad_reply(p->what, "no \"status\"");
    if (strcmp(st, "ok") == 0) {
        printf("%s sent to ", p->what);
        out_safe(stdout, p->id);
    } else if (strcmp(st, "offline") == 0) {
        fputs("device ", stdout);
        out_safe(stdout, p->id);
        printf(" is offline: no %s sent", p->what);
    } else if (strcmp(st, "gone") == 0) {
        fputs("device ", stdout);
        out_safe(stdout, p->id);
        printf(" was registered online but its connection is gone: no %s sent", p->what);
    } else {
        printf("%s: status ", p->what);
        out_safe(stdout, st);
    }
    fputs("\n", stdout);
    return NHCTL_OK;
}

static int cmd_update(struct ctx *c, const struct args *a, const char *const *pos)
{
    json_t *fw;
    int rc = firmware_from_args("update", a, &fw);
    if (rc)
        return rc;
    json_t *body = json_pack("{s:s,s:o}", "id", pos[0], "firmware", fw);
    if (!body)
        return build_failed("update");
    struct push_arg p = {"update", pos[0]};
    return call(c, "device.update", body, show_push, &p);
}

static int cmd_reboot(struct ctx *c, const struct args *a, const char *const *pos)
{
    (void)a;
    json_t *body = json_pack("{s:s}", "id", pos[0]);
    if (!body)
        return build_failed("reboot");
    struct push_arg p = {"reboot", pos[0]};
    return call(c, "device.reboot", body, show_push, &p);
}

static int cmd_identify(struct ctx *c, const struct args *a, const char *const *pos)
{
    (void)a;
    json_t *body = json_pack("{s:s}", "id", pos[0]);
    if (!body)
        return build_failed("identify");
    struct push_arg p = {"identify", pos[0]};
    return call(c, "device.identify", body, show_push, &p);
}

/* ---- keys ---- */

static int show_key(const struct ctx *c, const json_t *r, const void *arg)
{
    (void)c;
    const char *key = json_string_value(json_object_get(r, "key"));
    const char *secret = json_string_value(json_object_get(r, "secret"));
    if (!key || !secret)
        return bad_reply((const char *)arg, "no \"key\"/\"secret\"");
    const char *keys[] = {"key", "secret"};
    const char *vals[] = {key, secret};
    kv_print(stdout, keys, vals, 2);
    return NHCTL_OK;
}

static int cmd_product_key(struct ctx *c, const struct args *a, const char *const *pos)
{
    (void)pos;
    json_t *body = json_object();
    const char *name = args_get(a, "name");
    if (body && name && set_str(body, "name", name)) {
        json_decref(body);
        return build_failed("product-key create");
    }
    return call(c, "product_key.create", body, show_key, "product_key.create");
}

static int cmd_device_key(struct ctx *c, const struct args *a, const char *const *pos)
{
    (void)a;
    json_t *body = json_pack("{s:s}", "id", pos[0]);
    if (!body)
        return build_failed("device-key create");
    return call(c, "device_key.create", body, show_key, "device_key.create");
}

/* ---- events ---- */

static void print_event(const struct ctx *c, const char *data, size_t n)
{
    json_error_t jerr;
    json_t *e = json_loadb(data ? data : "", n, 0, &jerr);
    if (!json_is_object(e)) {
        /* Not ours to judge: show it, safely, on one line. */
        char *raw = strndup(data ? data : "", n);
        if (raw) {
            out_safe(stdout, raw);
            fputs("\n", stdout);
        }
        free(raw);
    } else if (c->json) {
        char *s = json_dumps(e, JSON_COMPACT | JSON_PRESERVE_ORDER);
        if (s)
            puts(s);
        free(s);
    } else {
        const json_t *ts = json_object_get(e, "ts");
        char *t = cell_ms(ts), *dev = render_value(json_object_get(e, "dev")),
             *ev = render_value(json_object_get(e, "event"));
        out_safe(stdout, t);
        fputs("  ", stdout);
        out_safe(stdout, dev);
        fputs("  ", stdout);
        out_safe(stdout, ev);
        const char *k;
        json_t *v;
        json_object_foreach(e, k, v)
        {
            if (!strcmp(k, "ts") || !strcmp(k, "dev") || !strcmp(k, "event"))
                continue;
            char *s = json_is_string(v) ? strdup(json_string_value(v))
                                        : json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY | JSON_PRESERVE_ORDER);
            fputs(" ", stdout);
            out_safe(stdout, k);
            fputs("=", stdout);
            out_safe(stdout, s ? s : "?");
            free(s);
        }
        fputs("\n", stdout);
        free(t);
        free(dev);
        free(ev);
    }
    json_decref(e);
    fflush(stdout);
}

static int cmd_events(struct ctx *c, const struct args *a, const char *const *pos)
{
    uint64_t count = 0;
    const char *cs = args_get(a, "count");
    if (cs && (parse_u64(cs, UINT32_MAX, &count) || count == 0))
        return nhctl_usage("events", "--count must be a positive number, not \"%s\"", cs);
    /* For events, --timeout is how long to watch (default: until interrupted). */
    int64_t watch_ms = 0;
    const char *ts = args_get(a, "timeout");
    if (ts)
        watch_ms = parse_duration(ts);
    if (pos[0] && !valid_dev(pos[0]))
        return nhctl_usage("events", "\"%s\" is not a device id", pos[0]);
    int rc = rpc_connect(c, true);
    if (rc)
        return rc;
    char subject[256];
    snprintf(subject, sizeof(subject), "%s.events.%s", c->prefix, pos[0] ? pos[0] : ">");
    return rpc_watch(c, subject, count, watch_ms, ts ? ts : "", print_event);
}

/* ---- sign-shared-secret ---- */

static int cmd_sign(struct ctx *c, const struct args *a, const char *const *pos)
{
    (void)pos;
    const char *cmd = "sign-shared-secret";
    const char *key = args_get(a, "key"), *secret = args_get(a, "secret"), *ident = args_get(a, "identifier"),
               *ts = args_get(a, "time");
    if (!key || !*key)
        return nhctl_usage(cmd, "--key is required");
    if (!secret || !*secret)
        return nhctl_usage(cmd, "--secret is required");
    if (!ident || !*ident)
        return nhctl_usage(cmd, "--identifier is required");
    uint64_t t = (uint64_t)time(NULL);
    if (ts && parse_u64(ts, INT64_MAX / 1000, &t))
        return nhctl_usage(cmd, "--time must be Unix seconds, not \"%s\"", ts);
    char sig[NH1_MAX_SIGNATURE + 1];
    if (nh1_sign(key, secret, ident, (int64_t)t, sig, sizeof(sig)))
        return nhctl_usage(cmd,
                           "cannot sign: key ≤ %u bytes, secret ≤ %u bytes, identifier short "
                           "enough for a %u-byte token",
                           NH1_MAX_KEY, NH1_MAX_SECRET, NH1_MAX_SIGNATURE);
    char tbuf[24];
    snprintf(tbuf, sizeof(tbuf), "%" PRIu64, t);
    if (c->json) {
        json_t *o = json_pack("{s:s,s:s,s:s,s:s}", "x-nh-alg", NH1_SIGN_ALG, "x-nh-key", key, "x-nh-time",
                              tbuf, "x-nh-signature", sig);
        char *s = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
        json_decref(o);
        if (!s)
            return build_failed(cmd);
        puts(s);
        free(s);
        return NHCTL_OK;
    }
    printf("x-nh-alg: %s\n", NH1_SIGN_ALG);
    fputs("x-nh-key: ", stdout);
    out_safe(stdout, key);
    printf("\nx-nh-time: %s\nx-nh-signature: %s\n", tbuf, sig);
    return NHCTL_OK;
}

/* ---- the table ---- */

#define FW_FLAGS                                                                                             \
    "firmware-uuid", "version", "url", "size", "checksum", "partial-checksum", "architecture", "platform",   \
        "product", "author", "description", "misc", "vcs-identifier"
#define FW_HELP                                                                                              \
    "  --firmware-uuid U   firmware UUID (required)\n"                                                       \
    "  --version V         firmware version (required)\n"                                                    \
    "  --url URL           where devices download the .fw (required)\n"                                      \
    "  --size N            size in bytes\n"                                                                  \
    "  --checksum HEX      SHA-256 of the .fw\n"                                                             \
    "  --partial-checksum HEX   one per part, in order (repeatable)\n"                                       \
    "  --architecture A  --platform P  --product P  --author A  --description D\n"                           \
    "  --misc M  --vcs-identifier V   firmware metadata\n"

static const char *const F_NONE[] = {NULL};
static const char *const F_DEVICES[] = {"online", NULL};
static const char *const F_DEVICE_CREATE[] = {"fingerprint", "tag", NULL};
static const char *const F_DEPLOY[] = {"name", FW_FLAGS, "tag", "version-requirement", NULL};
static const char *const F_UPDATE[] = {FW_FLAGS, NULL};
static const char *const F_EVENTS[] = {"count", NULL};
static const char *const F_PKEY[] = {"name", NULL};
static const char *const F_SIGN[] = {"key", "secret", "identifier", "time", NULL};

const struct cmd nhctl_cmds[] = {
    {"devices", "[--online]",
     "List devices with their online state from the registry.\n"
     "  --online            only devices connected now\n",
     F_DEVICES, 0, 0, cmd_devices},
    {"device show", "<id>", "Show one device.\n", F_NONE, 1, 1, cmd_device_show},
    {"device create", "<identifier> [--fingerprint F] [--tag T]...",
     "Pre-register a device (devices can also auto-register).\n"
     "  --fingerprint F     SHA-1 of its certificate DER (hex; colons allowed)\n"
     "  --tag T             a tag (repeatable)\n",
     F_DEVICE_CREATE, 1, 1, cmd_device_create},
    {"deployment create",
     "--name N --firmware-uuid U --version V --url URL [firmware flags] [--tag T]... "
     "[--version-requirement R]",
     "Create a deployment; matching online devices are sent `update` at once.\n"
     "  --name N            deployment name (required)\n" FW_HELP
     "  --tag T             devices must carry every given tag (repeatable)\n"
     "  --version-requirement R   devices' current version must match, e.g. \"~> 1.0\"\n",
     F_DEPLOY, 0, 0, cmd_deployment_create},
    {"deployment list", "", "List deployments.\n", F_NONE, 0, 0, cmd_deployment_list},
    {"deployment delete", "<id>", "Delete a deployment.\n", F_NONE, 1, 1, cmd_deployment_delete},
    {"update", "<device> --firmware-uuid U --version V --url URL [firmware flags]",
     "Push one firmware to one device now (no deployment).\n" FW_HELP, F_UPDATE, 1, 1, cmd_update},
    {"reboot", "<device>", "Ask a connected device to reboot.\n", F_NONE, 1, 1, cmd_reboot},
    {"identify", "<device>", "Ask a connected device to identify itself (e.g. blink).\n", F_NONE, 1, 1,
     cmd_identify},
    {"console", "<device>",
     "Open the device's remote IEx console: an interactive terminal over NATS, through whichever\n"
     "gateway holds the device. Its recent output (the gateway's scrollback) is printed first.\n"
     "Keys go to the device as typed (Ctrl-C included); the window size follows the terminal.\n"
     "Type Ctrl-] to detach and exit (like telnet). Exit status: 0 detached, 1 the console\n"
     "closed on the device's side (\"console closed: <reason>\") or could not be opened (unknown\n"
     "device, offline, console not joined), 3 NATS or the gateway unreachable.\n",
     F_NONE, 1, 1, cmd_console},
    {"local-shell", "<device>",
     "Open the device's local shell (the local_shell extension: a shell on the device's OS, not\n"
     "IEx), an interactive terminal over NATS through the platform and whichever gateway holds the\n"
     "device. Its recent output (the scrollback the gateway keeps) is printed first. Keys go to\n"
     "the device as typed; the window size follows the terminal. Type Ctrl-] to exit. Exit status:\n"
     "0 exited, 1 the shell closed (\"local shell closed: <reason>\": detached, disconnected,\n"
     "not_attached) or could not be opened (unknown device, offline, extensions not joined),\n"
     "3 NATS, the gateway or the platform unreachable.\n",
     F_NONE, 1, 1, cmd_local_shell},
    {"events", "[<device>] [--count N] [--timeout S]",
     "Print platform events (all devices, or one) as they happen, one line each.\n"
     "  --count N           exit after N events (exit 1 if --timeout passes first)\n"
     "  --timeout S         watch for S (e.g. 30s) then exit; default: until interrupted\n",
     F_EVENTS, 0, 1, cmd_events},
    {"product-key create", "[--name N]",
     "Create a shared-secret product key (devices auto-register with it).\n"
     "  --name N            a label for the key\n",
     F_PKEY, 0, 0, cmd_product_key},
    {"device-key create", "<device>", "Create a shared-secret key for one device.\n", F_NONE, 1, 1,
     cmd_device_key},
    {"sign-shared-secret", "--key K --secret S --identifier I [--time T]",
     "Print the four x-nh-* headers a device sends (NH1-HMAC-sha256-1000-32, as\n"
     "nerves_hub_link signs). Offline: no NATS needed.\n"
     "  --key K             product (nhp_…) or device key\n"
     "  --secret S          its secret\n"
     "  --identifier I      the device identifier\n"
     "  --time T            Unix seconds (default: now)\n",
     F_SIGN, 0, 0, cmd_sign},
};
const size_t nhctl_n_cmds = sizeof(nhctl_cmds) / sizeof(nhctl_cmds[0]);
