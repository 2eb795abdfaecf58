/* The platform's pure decisions (ops/platform/pure_deploy.c) and msgpack → JSON
 * (ops/platform/pure_mpjson.c). */
#include "../lib/test.h"

#include "../../ops/platform/pure_deploy.h"
#include "../../ops/platform/pure_mpjson.h"

static json_t *J(const char *s)
{
    json_error_t e;
    json_t *j = json_loads(s, JSON_DECODE_ANY, &e);
    if (!j)
        TEST_FAIL("bad JSON in test: %s", e.text);
    return j;
}

static json_t *mp_json(const struct lp_out *o)
{
    json_t *j = mpj_to_json(o->p, o->n);
    ASSERT(j);
    return j;
}

static void assert_json_eq(json_t *got, const char *want)
{
    json_t *w = J(want);
    if (!json_equal(got, w)) {
        char *g = json_dumps(got, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
        TEST_FAIL("got %s, want %s", g, want);
    }
    json_decref(w);
}

#define FW_FULL                                                                                     \
    "{\"uuid\":\"u-2\",\"version\":\"1.1.0\",\"url\":\"https://f/x.fw\",\"size\":1048577,"        \
    "\"checksum\":\"" "abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789" "\","    \
    "\"partials_checksums\":[\"" "00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff" "\"],"\
    "\"architecture\":\"arm\",\"platform\":\"rpi4\",\"product\":\"demo\",\"author\":\"A\","        \
    "\"description\":\"d\",\"misc\":\"m\",\"vcs_identifier\":\"v\",\"extra\":1}"

TEST(platform_update_payload_exact)
{
    json_t *fw = J(FW_FULL);
    char err[256];
    ASSERT_EQ(pd_firmware_check(fw, err, sizeof(err)), 0);
    struct lp_out o = {0};
    ASSERT_EQ(pd_update_payload(&o, fw, 12), 0);
    json_t *p = mp_json(&o);
    assert_json_eq(p, "{\"update_available\":true,\"firmware_url\":\"https://f/x.fw\","
                      "\"firmware_meta\":{\"architecture\":\"arm\",\"author\":\"A\",\"description\":\"d\","
                      "\"misc\":\"m\",\"platform\":\"rpi4\",\"product\":\"demo\",\"uuid\":\"u-2\","
                      "\"vcs_identifier\":\"v\",\"version\":\"1.1.0\"},\"size\":1048577,"
                      "\"checksum\":\"ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789\","
                      "\"partials_checksums\":[\"00FF00FF00FF00FF00FF00FF00FF00FF00FF00FF00FF00FF00FF00FF00FF00FF\"],"
                      "\"deployment_id\":12}");
    ASSERT_EQ(json_object_size(p), 7);
    json_decref(p);
    lp_out_free(&o);

    /* minimal firmware, manual push: optional keys are null, partials an empty list */
    json_t *min = J("{\"uuid\":\"u\",\"version\":\"2.0.0\",\"url\":\"http://x\"}");
    ASSERT_EQ(pd_firmware_check(min, err, sizeof(err)), 0);
    struct lp_out m = {0};
    ASSERT_EQ(pd_update_payload(&m, min, -1), 0);
    p = mp_json(&m);
    assert_json_eq(p, "{\"update_available\":true,\"firmware_url\":\"http://x\",\"firmware_meta\":{"
                      "\"architecture\":null,\"author\":null,\"description\":null,\"misc\":null,"
                      "\"platform\":null,\"product\":null,\"uuid\":\"u\",\"vcs_identifier\":null,"
                      "\"version\":\"2.0.0\"},\"size\":null,\"checksum\":null,\"partials_checksums\":[],"
                      "\"deployment_id\":null}");
    json_decref(p);
    lp_out_free(&m);
    json_decref(min);
    json_decref(fw);
}

TEST(platform_firmware_check_rejects)
{
    static const char *const bad[] = {
        "[]",
        "{\"version\":\"1.0.0\",\"url\":\"u\"}",
        "{\"uuid\":\"\",\"version\":\"1.0.0\",\"url\":\"u\"}",
        "{\"uuid\":\"u\",\"version\":\"1.0\",\"url\":\"u\"}",
        "{\"uuid\":\"u\",\"version\":\"1.0.0\"}",
        "{\"uuid\":\"u\",\"version\":\"1.0.0\",\"url\":\"u\",\"size\":-1}",
        "{\"uuid\":\"u\",\"version\":\"1.0.0\",\"url\":\"u\",\"size\":\"1\"}",
        "{\"uuid\":\"u\",\"version\":\"1.0.0\",\"url\":\"u\",\"checksum\":\"abc\"}",
        "{\"uuid\":\"u\",\"version\":\"1.0.0\",\"url\":\"u\",\"checksum\":\"" "zz23456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef" "\"}",
        "{\"uuid\":\"u\",\"version\":\"1.0.0\",\"url\":\"u\",\"partials_checksums\":[1]}",
        "{\"uuid\":\"u\",\"version\":\"1.0.0\",\"url\":\"u\",\"product\":5}",
    };
    char err[256];
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        json_t *j = J(bad[i]);
        err[0] = 0;
        if (pd_firmware_check(j, err, sizeof(err)) == 0)
            TEST_FAIL("accepted %s", bad[i]);
        ASSERT(err[0]);
        json_decref(j);
    }
    /* a url at the limit passes, one byte more fails */
    char *url = malloc(PD_MAX_URL + 2);
    memset(url, 'a', PD_MAX_URL + 1);
    url[PD_MAX_URL] = 0;
    json_t *fw = json_pack("{s:s, s:s, s:s}", "uuid", "u", "version", "1.0.0", "url", url);
    ASSERT_EQ(pd_firmware_check(fw, err, sizeof(err)), 0);
    url[PD_MAX_URL] = 'a';
    url[PD_MAX_URL + 1] = 0;
    json_object_set_new(fw, "url", json_string(url));
    ASSERT_EQ(pd_firmware_check(fw, err, sizeof(err)), -1);
    json_decref(fw);
    free(url);
}

TEST(platform_conditions)
{
    json_t *c = J("{\"tags\":[\"beta\",\"eu\"],\"version\":\"~> 1.0\"}");
    char err[256];
    ASSERT_EQ(pd_conditions_check(c, err, sizeof(err)), 0);
    json_t *both = J("[\"eu\",\"x\",\"beta\"]"), *one = J("[\"beta\"]"), *none = J("[]");
    ASSERT(pd_conditions_match(c, both, "1.4.0"));
    ASSERT(!pd_conditions_match(c, both, "2.0.0"));
    ASSERT(!pd_conditions_match(c, both, NULL));
    ASSERT(!pd_conditions_match(c, both, "not-a-version"));
    ASSERT(!pd_conditions_match(c, one, "1.4.0"));
    ASSERT(!pd_conditions_match(c, NULL, "1.4.0"));
    json_t *any = J("{}");
    ASSERT_EQ(pd_conditions_check(any, err, sizeof(err)), 0);
    ASSERT(pd_conditions_match(any, none, NULL)); /* no conditions: every device */
    ASSERT(pd_conditions_match(any, NULL, ""));
    json_t *tags_only = J("{\"tags\":[\"beta\"],\"version\":\"\"}");
    ASSERT_EQ(pd_conditions_check(tags_only, err, sizeof(err)), 0);
    ASSERT(pd_conditions_match(tags_only, one, NULL));
    static const char *const bad[] = {"[]", "{\"tags\":\"beta\"}", "{\"tags\":[1]}", "{\"tags\":[\"\"]}",
                                      "{\"version\":\">= 1.0\"}", "{\"version\":5}"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        json_t *b = J(bad[i]);
        if (pd_conditions_check(b, err, sizeof(err)) == 0)
            TEST_FAIL("accepted %s", bad[i]);
        json_decref(b);
    }
    /* PD_MAX_TAGS tags pass, one more fails */
    json_t *many = json_array();
    for (int i = 0; i < PD_MAX_TAGS; i++) {
        char t[16];
        snprintf(t, sizeof(t), "t%d", i);
        json_array_append_new(many, json_string(t));
    }
    ASSERT_EQ(pd_tags_check(many, err, sizeof(err)), 0);
    json_array_append_new(many, json_string("one-more"));
    ASSERT_EQ(pd_tags_check(many, err, sizeof(err)), -1);
    json_decref(many);
    json_decref(c);
    json_decref(both);
    json_decref(one);
    json_decref(none);
    json_decref(any);
    json_decref(tags_only);
}

/* Builds a join payload as nerves_hub_link sends it (msgpack). */
static void link_join(struct lp_out *o, const char *api, bool validated_key, bool validated, bool dl)
{
    lp_mp_map(o, 8 + (api != NULL));
    lp_mp_cstr(o, "nerves_fw_uuid");
    lp_mp_cstr(o, "uuid-1");
    lp_mp_cstr(o, "nerves_fw_version");
    lp_mp_cstr(o, "1.2.3");
    lp_mp_cstr(o, "nerves_fw_product");
    lp_mp_cstr(o, "demo");
    lp_mp_cstr(o, "nerves_fw_platform");
    lp_mp_int(o, 7); /* wrong type: absent */
    lp_mp_cstr(o, "fwup_version");
    lp_mp_cstr(o, "1.10.2");
    lp_mp_cstr(o, "currently_downloading_uuid");
    if (dl)
        lp_mp_cstr(o, "uuid-2");
    else
        lp_mp_nil(o);
    lp_mp_cstr(o, "fwup_public_keys");
    lp_mp_cstr(o, "on_connect");
    lp_mp_cstr(o, "meta");
    lp_mp_map(o, validated_key ? 2 : 1);
    lp_mp_cstr(o, "firmware_auto_revert_detected");
    lp_mp_bool(o, true);
    if (validated_key) {
        lp_mp_cstr(o, "firmware_validated");
        lp_mp_bool(o, validated);
    }
    if (api) {
        lp_mp_cstr(o, "device_api_version");
        lp_mp_cstr(o, api);
    }
}

TEST(platform_join_parse)
{
    struct lp_out o = {0};
    link_join(&o, "2.3.0", true, false, true);
    struct pd_join j;
    ASSERT_EQ(pd_join_parse((struct lp_span){o.p, o.n}, &j), 0);
    ASSERT_MEM_EQ(j.uuid.p, j.uuid.n, "uuid-1", 6);
    ASSERT_MEM_EQ(j.version.p, j.version.n, "1.2.3", 5);
    ASSERT_MEM_EQ(j.product.p, j.product.n, "demo", 4);
    ASSERT_EQ(j.platform.n, 0);
    ASSERT_EQ(j.author.n, 0);
    ASSERT_MEM_EQ(j.api.p, j.api.n, "2.3.0", 5);
    ASSERT_MEM_EQ(j.downloading.p, j.downloading.n, "uuid-2", 6);
    ASSERT(j.fwup_keys_on_connect);
    ASSERT(!j.archive_keys_on_connect);
    ASSERT_EQ(j.validated, PD_VALID_NO);
    ASSERT(j.auto_revert);
    lp_out_free(&o);

    struct lp_out o2 = {0};
    link_join(&o2, "2.x", false, false, false); /* invalid api → 1.0.0; no validation key → unknown */
    ASSERT_EQ(pd_join_parse((struct lp_span){o2.p, o2.n}, &j), 0);
    ASSERT_MEM_EQ(j.api.p, j.api.n, "1.0.0", 5);
    ASSERT_EQ(j.validated, PD_VALID_UNKNOWN);
    ASSERT_EQ(j.downloading.n, 0);
    lp_out_free(&o2);

    struct lp_out o3 = {0};
    link_join(&o3, NULL, true, true, false);
    ASSERT_EQ(pd_join_parse((struct lp_span){o3.p, o3.n}, &j), 0);
    ASSERT_MEM_EQ(j.api.p, j.api.n, "1.0.0", 5);
    ASSERT_EQ(j.validated, PD_VALID_YES);
    lp_out_free(&o3);

    struct lp_out arr = {0};
    lp_mp_array(&arr, 0);
    ASSERT_EQ(pd_join_parse((struct lp_span){arr.p, arr.n}, &j), -1);
    lp_out_free(&arr);
}

static void progress(const char *stage, int64_t value, const char *want, int want_pct)
{
    struct lp_span st;
    int pct;
    pd_progress_status(lp_cspan(stage), value, &st, &pct);
    ASSERT_MEM_EQ(st.p, st.n, want, strlen(want));
    ASSERT_EQ(pct, want_pct);
}

TEST(platform_progress_and_status)
{
    progress("", 100, "completed", -1);
    progress("", 42, "updating", 42);
    progress("downloading", 100, "downloading", 100);
    progress("updating", 7, "updating", 7);
    progress("", 250, "updating", 100); /* clamped */
    progress("", -5, "updating", 0);
    char out[64];
    ASSERT_EQ(pd_status_normalize(lp_cspan("received"), out, sizeof(out)), PD_STATUS_KNOWN);
    ASSERT_STR_EQ(out, "received");
    ASSERT_EQ(pd_status_normalize(lp_cspan("Update failed: FwUp ErRoR x"), out, sizeof(out)), PD_STATUS_KNOWN);
    ASSERT_STR_EQ(out, "failed");
    ASSERT_EQ(pd_status_normalize(lp_cspan("rebooted"), out, sizeof(out)), PD_STATUS_UNKNOWN);
    ASSERT_EQ(pd_status_normalize(lp_cspan("fwup erro"), out, sizeof(out)), PD_STATUS_UNKNOWN);
    /* a status longer than the buffer is never "known" by its truncated prefix */
    ASSERT_EQ(pd_status_normalize(lp_cspan("failedXXXXXXXXXXXX"), out, 7), PD_STATUS_UNKNOWN);
    ASSERT(pd_status_clears_inflight("failed"));
    ASSERT(pd_status_clears_inflight("ignored"));
    ASSERT(pd_status_clears_inflight("rescheduled"));
    ASSERT(!pd_status_clears_inflight("completed"));
    ASSERT_STR_EQ(pd_humanize_iface(lp_cspan("wlan0")), "wifi");
    ASSERT_STR_EQ(pd_humanize_iface(lp_cspan("eth1")), "ethernet");
    ASSERT_STR_EQ(pd_humanize_iface(lp_cspan("enp3s0")), "ethernet");
    ASSERT_STR_EQ(pd_humanize_iface(lp_cspan("wwan0")), "cellular");
    ASSERT_STR_EQ(pd_humanize_iface(lp_cspan("ppp0")), "unknown");
    ASSERT_STR_EQ(pd_humanize_iface(lp_cspan("")), "unknown");
}

TEST(platform_extensions_rules)
{
    uint32_t mask;
    ASSERT_EQ(pd_ext_parse_list("health,geo", &mask), 0);
    ASSERT_EQ(mask, (1u << PD_EXT_HEALTH) | (1u << PD_EXT_GEO));
    ASSERT_EQ(pd_ext_parse_list("", &mask), 0);
    ASSERT_EQ(mask, 0);
    ASSERT_EQ(pd_ext_parse_list("health,bogus", &mask), -1);
    ASSERT_EQ(pd_ext_parse_list("health,geo,local_shell,logging,network_identity", &mask), 0);
    ASSERT_EQ(mask, 31);
    uint32_t hg = (1u << PD_EXT_HEALTH) | (1u << PD_EXT_GEO);
    ASSERT(pd_ext_attaches(lp_cspan("health"), lp_cspan("0.0.1"), hg));
    ASSERT(pd_ext_attaches(lp_cspan("geo"), lp_cspan("0.0.9"), hg));
    ASSERT(!pd_ext_attaches(lp_cspan("geo"), lp_cspan("0.1.0"), hg));
    ASSERT(!pd_ext_attaches(lp_cspan("geo"), lp_cspan("0.0.0"), hg));
    ASSERT(!pd_ext_attaches(lp_cspan("geo"), lp_cspan("zero"), hg));
    ASSERT(!pd_ext_attaches(lp_cspan("local_shell"), lp_cspan("0.0.1"), hg)); /* not allowed */
    ASSERT(!pd_ext_attaches(lp_cspan("unknown"), lp_cspan("0.0.1"), 0xffffffffu));
    struct lp_span k, e;
    ASSERT_EQ(pd_ext_split(lp_cspan("geo:location:update"), &k, &e), 0);
    ASSERT_MEM_EQ(k.p, k.n, "geo", 3);
    ASSERT_MEM_EQ(e.p, e.n, "location:update", 15);
    ASSERT_EQ(pd_ext_split(lp_cspan("health"), &k, &e), -1);
    ASSERT_EQ(pd_ext_split(lp_cspan(":x"), &k, &e), 0);
    ASSERT_EQ(k.n, 0);
}

TEST(platform_mpjson)
{
    struct lp_out o = {0};
    lp_mp_map(&o, 6);
    lp_mp_cstr(&o, "s");
    lp_mp_cstr(&o, "x");
    lp_mp_cstr(&o, "i");
    lp_mp_int(&o, -3);
    lp_mp_cstr(&o, "b");
    lp_mp_bin(&o, "\x01\x02\x03\x04", 4);
    lp_mp_cstr(&o, "a");
    lp_mp_array(&o, 2);
    lp_mp_nil(&o);
    lp_mp_bool(&o, true);
    lp_mp_uint(&o, 7); /* a non-string key: skipped */
    lp_mp_cstr(&o, "dropped");
    lp_mp_cstr(&o, "t");
    /* timestamp ext -1, 32-bit seconds: 1767225600 = 2026-01-01T00:00:00Z */
    lp_mp_raw(&o, "\xd6\xff\x69\x55\xb9\x00", 6);
    json_t *j = mp_json(&o);
    assert_json_eq(j, "{\"s\":\"x\",\"i\":-3,\"b\":\"AQIDBA==\",\"a\":[null,true],"
                      "\"t\":\"2026-01-01T00:00:00.000000Z\"}");
    json_decref(j);
    /* trailing bytes or truncation: NULL */
    lp_mp_nil(&o);
    ASSERT(mpj_to_json(o.p, o.n) == NULL);
    ASSERT(mpj_to_json(o.p, o.n - 3) == NULL);
    ASSERT(mpj_to_json(o.p, 0) == NULL);
    lp_out_free(&o);
    /* nesting: MPJ_MAX_DEPTH arrays are fine, one more is refused */
    struct lp_out d = {0};
    for (int i = 0; i < MPJ_MAX_DEPTH; i++)
        lp_mp_array(&d, 1);
    lp_mp_nil(&d);
    json_t *deep = mpj_to_json(d.p, d.n);
    ASSERT(deep);
    json_decref(deep);
    lp_out_reset(&d);
    for (int i = 0; i < MPJ_MAX_DEPTH + 1; i++)
        lp_mp_array(&d, 1);
    lp_mp_nil(&d);
    ASSERT(mpj_to_json(d.p, d.n) == NULL);
    lp_out_free(&d);
}
