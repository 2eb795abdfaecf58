/* libFuzzer target: phx_decode on arbitrary bytes as a JSON (vsn 2.0.x) message. Every proper
 * prefix of an accepted message must be SYNTAX; an accepted message must re-encode in both
 * formats, re-decode to the same refs/topic/event, and msgpack→msgpack must be a fixed point;
 * JSON output must satisfy jansson and be a fixed point of decode→encode. */

#include "fuzz_phx_common.h"

static bool all_ws(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != ' ' && p[i] != '\t' && p[i] != '\n' && p[i] != '\r')
            return false;
    return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct phx_msg m, m2, m3;
    struct buf bm = BUF_INIT, bj = BUF_INIT, tmp = BUF_INIT;
    int rc = phx_decode(PHX_FMT_JSON, data, size, &m);
    if (rc) {
        CHECK(rc == PHX_ERR_SYNTAX || rc == PHX_ERR_SHAPE || rc == PHX_ERR_DEPTH ||
              rc == PHX_ERR_UNSUPPORTED || rc == PHX_ERR_NOMEM);
        CHECK(m.owned_ == NULL);
        return 0;
    }
    /* split in two at a byte derived from the input: the first part alone is incomplete */
    size_t k = (size_t)data[size / 2] * 257 % size;
    if (!all_ws(data + k, size - k)) {
        uint8_t *head = malloc(k ? k : 1);
        memcpy(head, data, k);
        /* UNSUPPORTED when the cut turns "1…1e3" into an over-long integer */
        rc = phx_decode(PHX_FMT_JSON, head, k, &m2);
        CHECK(rc == PHX_ERR_SYNTAX || rc == PHX_ERR_UNSUPPORTED);
        free(head);
    }
    CHECK(phx_mp_validate(m.payload, PHX_MAX_DEPTH - 1) == 0);
    check_with_msgpack_c(m.payload.p, m.payload.len);

    /* msgpack: decode(encode(m)) has the same fields and the very same payload bytes */
    CHECK(encode(PHX_FMT_MSGPACK, &m, &bm) == 0);
    CHECK(phx_decode(PHX_FMT_MSGPACK, bm.p, bm.len, &m2) == 0);
    check_fields(&m, &m2);
    CHECK(span_eq(m.payload, m2.payload));
    CHECK(encode(PHX_FMT_MSGPACK, &m2, &tmp) == 0);
    CHECK(tmp.len == bm.len && memcmp(tmp.p, bm.p, bm.len) == 0);

    /* JSON: valid text; decode→encode is a fixed point */
    CHECK(encode(PHX_FMT_JSON, &m, &bj) == 0);
    check_json_text(&bj);
    CHECK(encode(PHX_FMT_JSON, &m2, &tmp) == 0);
    CHECK(tmp.len == bj.len && memcmp(tmp.p, bj.p, bj.len) == 0);
    CHECK(phx_decode(PHX_FMT_JSON, bj.p, bj.len, &m3) == 0);
    CHECK(encode(PHX_FMT_JSON, &m3, &tmp) == 0);
    CHECK(tmp.len == bj.len && memcmp(tmp.p, bj.p, bj.len) == 0);
    if (utf8_valid(data, size)) {
        /* nothing was replaced, so nothing may change at all */
        check_fields(&m, &m3);
        CHECK(span_eq(m.payload, m3.payload));
    } else if (fields_utf8(&m)) {
        check_fields(&m, &m3);
    }

    /* replies wrap the payload one level deeper */
    rc = phx_encode_reply(PHX_FMT_JSON, NULL, m.has_ref ? &m.ref : NULL, m.topic, "ok", m.payload, &tmp,
                          SIZE_MAX);
    CHECK(rc == 0 || rc == PHX_ERR_DEPTH);
    rc = phx_encode_reply(PHX_FMT_MSGPACK, NULL, m.has_ref ? &m.ref : NULL, m.topic, "ok", m.payload, &tmp,
                          SIZE_MAX);
    CHECK(rc == 0 || rc == PHX_ERR_DEPTH);

    /* lookups never read outside the payload */
    struct span v, s;
    char key[8];
    size_t kl = size < sizeof(key) - 1 ? size : sizeof(key) - 1;
    memcpy(key, data + size - kl, kl);
    key[kl] = '\0';
    if (phx_mp_map_get(m.payload, key, &v))
        (void)phx_mp_get_str(v, &s);
    (void)phx_mp_map_get(m.payload, "status", &v);

    phx_msg_free(&m);
    phx_msg_free(&m2);
    phx_msg_free(&m3);
    buf_free(&bm);
    buf_free(&bj);
    buf_free(&tmp);
    return 0;
}
