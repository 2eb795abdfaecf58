/* libFuzzer target: phx_decode on arbitrary bytes as a msgpack (vsn 3.0.x) message. Every proper
 * prefix of an accepted message must be SYNTAX; msgpack re-encoding keeps the payload byte for
 * byte and is a fixed point; JSON output (when representable) satisfies jansson, and
 * JSON→msgpack→JSON is a fixed point. */

#include "fuzz_phx_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct phx_msg m, m2, m3;
    struct buf bm = BUF_INIT, bj = BUF_INIT, tmp = BUF_INIT;
    check_with_msgpack_c((const char *)data, size);
    int rc = phx_decode(PHX_FMT_MSGPACK, data, size, &m);
    if (rc) {
        CHECK(rc == PHX_ERR_SYNTAX || rc == PHX_ERR_SHAPE || rc == PHX_ERR_DEPTH || rc == PHX_ERR_NOMEM);
        CHECK(m.owned_ == NULL);
        return 0;
    }
    /* split in two at a byte derived from the input: the first part alone is incomplete */
    size_t k = (size_t)data[size / 2] * 257 % size;
    uint8_t *head = malloc(k ? k : 1);
    memcpy(head, data, k);
    CHECK(phx_decode(PHX_FMT_MSGPACK, head, k, &m2) == PHX_ERR_SYNTAX);
    free(head);
    CHECK(phx_mp_validate(m.payload, PHX_MAX_DEPTH - 1) == 0);
    check_with_msgpack_c(m.payload.p, m.payload.len);

    /* msgpack: payload verbatim, same fields, fixed point */
    CHECK(encode(PHX_FMT_MSGPACK, &m, &bm) == 0);
    CHECK(phx_decode(PHX_FMT_MSGPACK, bm.p, bm.len, &m2) == 0);
    check_fields(&m, &m2);
    CHECK(span_eq(m.payload, m2.payload));
    CHECK(encode(PHX_FMT_MSGPACK, &m2, &tmp) == 0);
    CHECK(tmp.len == bm.len && memcmp(tmp.p, bm.p, bm.len) == 0);

    /* JSON: only map keys can make the payload unrepresentable */
    rc = encode(PHX_FMT_JSON, &m, &bj);
    CHECK(rc == 0 || rc == PHX_ERR_UNSUPPORTED);
    if (rc == 0) {
        check_json_text(&bj);
        CHECK(phx_decode(PHX_FMT_JSON, bj.p, bj.len, &m3) == 0);
        if (fields_utf8(&m))
            check_fields(&m, &m3);
        CHECK(encode(PHX_FMT_JSON, &m3, &tmp) == 0);
        CHECK(tmp.len == bj.len && memcmp(tmp.p, bj.p, bj.len) == 0);
        /* and through msgpack again */
        CHECK(encode(PHX_FMT_MSGPACK, &m3, &bm) == 0);
        phx_msg_free(&m2);
        CHECK(phx_decode(PHX_FMT_MSGPACK, bm.p, bm.len, &m2) == 0);
        CHECK(encode(PHX_FMT_JSON, &m2, &tmp) == 0);
        CHECK(tmp.len == bj.len && memcmp(tmp.p, bj.p, bj.len) == 0);
        phx_msg_free(&m3);
    }

    rc = phx_encode_reply(PHX_FMT_JSON, m.has_join_ref ? &m.join_ref : NULL, NULL, m.event, "error",
                          m.payload, &tmp, SIZE_MAX);
    CHECK(rc == 0 || rc == PHX_ERR_DEPTH || rc == PHX_ERR_UNSUPPORTED);
    rc = phx_encode_reply(PHX_FMT_MSGPACK, m.has_join_ref ? &m.join_ref : NULL, NULL, m.event, "error",
                          m.payload, &tmp, SIZE_MAX);
    CHECK(rc == 0 || rc == PHX_ERR_DEPTH);

    struct span v, s;
    char key[8];
    size_t kl = m.event.len < sizeof(key) - 1 ? m.event.len : sizeof(key) - 1;
    memcpy(key, m.event.p, kl);
    key[kl] = '\0';
    if (phx_mp_map_get(m.payload, key, &v))
        (void)phx_mp_get_str(v, &s);
    (void)phx_mp_is_nil(m.payload);

    phx_msg_free(&m);
    phx_msg_free(&m2);
    buf_free(&bm);
    buf_free(&bj);
    buf_free(&tmp);
    return 0;
}
