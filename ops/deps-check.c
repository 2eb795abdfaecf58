/* Smoke test for the libraries ops/deps.sh builds; deps.sh compiles it with
 * -I BUILD_DIR/include ahead of the system headers and links the static libs with
 * -Wl,--exclude-libs,ALL -lpthread, exactly as nhgw will, then runs it.
 * It proves the headers seen are BoringSSL's (not /usr/include/openssl, OpenSSL 3)
 * and that each library links and does its basic job. */
#include <openssl/base.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/ec_key.h>
#include <openssl/ecdsa.h>
#include <openssl/nid.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <openssl/ssl.h>

#include <hiredis/hiredis.h>
#include <llhttp.h>
#include <msgpack.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if !defined(OPENSSL_IS_BORINGSSL) || !defined(BORINGSSL_API_VERSION)
#error "openssl/ headers are not BoringSSL's: put -I BUILD_DIR/include before system includes"
#endif
#ifndef OPENSSL_VERSION_NUMBER
#error "OPENSSL_VERSION_NUMBER missing"
#endif
#if OPENSSL_VERSION_NUMBER >= 0x30000000L
#error "OpenSSL 3 headers picked up instead of BoringSSL"
#endif

static int failures;

#define CHECK(cond)                                                          \
  do {                                                                       \
    if (!(cond)) {                                                           \
      fprintf(stderr, "deps-check: %s:%d: %s failed\n", __FILE__, __LINE__, \
              #cond);                                                        \
      failures++;                                                            \
    }                                                                        \
  } while (0)

static void check_boringssl(void) {
  uint8_t digest[SHA256_DIGEST_LENGTH];
  static const char msg[] = "nhgw deps-check";
  SHA256((const uint8_t *)msg, sizeof msg - 1, digest);

  EC_KEY *key = EC_KEY_new_by_curve_name(NID_X9_62_prime256v1);
  CHECK(key != NULL);
  if (key == NULL) return;
  CHECK(EC_KEY_generate_key(key) == 1);

  uint8_t sig[128]; /* DER P-256 signature: at most 72 bytes */
  unsigned sig_len = 0;
  CHECK(ECDSA_size(key) <= sizeof sig);
  CHECK(ECDSA_sign(0, digest, sizeof digest, sig, &sig_len, key) == 1);
  CHECK(ECDSA_verify(0, digest, sizeof digest, sig, sig_len, key) == 1);
  digest[0] ^= 1; /* a changed message must not verify */
  CHECK(ECDSA_verify(0, digest, sizeof digest, sig, sig_len, key) != 1);
  EC_KEY_free(key);

  SSL_CTX *ctx = SSL_CTX_new(TLS_method());
  CHECK(ctx != NULL);
  if (ctx) {
    CHECK(SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) == 1);
    SSL *ssl = SSL_new(ctx);
    CHECK(ssl != NULL);
    SSL_free(ssl);
    SSL_CTX_free(ctx);
  }
}

static void check_msgpack(void) {
  msgpack_sbuffer buf;
  msgpack_packer pk;
  msgpack_sbuffer_init(&buf);
  msgpack_packer_init(&pk, &buf, msgpack_sbuffer_write);
  msgpack_pack_map(&pk, 2);
  msgpack_pack_str_with_body(&pk, "id", 2);
  msgpack_pack_uint64(&pk, 1234567890123ULL);
  msgpack_pack_str_with_body(&pk, "t", 1);
  msgpack_pack_double(&pk, 21.5);

  msgpack_unpacked up;
  msgpack_unpacked_init(&up);
  size_t off = 0;
  CHECK(msgpack_unpack_next(&up, buf.data, buf.size, &off) == MSGPACK_UNPACK_SUCCESS);
  CHECK(off == buf.size);
  msgpack_object o = up.data;
  CHECK(o.type == MSGPACK_OBJECT_MAP && o.via.map.size == 2);
  if (o.type == MSGPACK_OBJECT_MAP && o.via.map.size == 2) {
    msgpack_object_kv *kv = o.via.map.ptr;
    CHECK(kv[0].key.type == MSGPACK_OBJECT_STR && kv[0].key.via.str.size == 2 &&
          memcmp(kv[0].key.via.str.ptr, "id", 2) == 0);
    CHECK(kv[0].val.type == MSGPACK_OBJECT_POSITIVE_INTEGER &&
          kv[0].val.via.u64 == 1234567890123ULL);
    CHECK(kv[1].val.type == MSGPACK_OBJECT_FLOAT64 && kv[1].val.via.f64 == 21.5);
  }
  msgpack_unpacked_destroy(&up);
  msgpack_sbuffer_destroy(&buf);
}

static void check_hiredis(void) {
  char *cmd = NULL;
  int len = redisFormatCommand(&cmd, "SET %s %b", "k", "v\0x", (size_t)3);
  static const char want[] = "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$3\r\nv\0x\r\n";
  CHECK(len == (int)sizeof want - 1);
  CHECK(cmd != NULL && len > 0 && memcmp(cmd, want, (size_t)len) == 0);
  redisFreeCommand(cmd);

  /* RESP3 is one of the reasons for hiredis 1.2 over bookworm's 0.14. */
  redisReader *r = redisReaderCreate();
  CHECK(r != NULL);
  if (r) {
    void *reply = NULL;
    redisReaderFeed(r, "%2\r\n+a\r\n:1\r\n+b\r\n#t\r\n", 22);
    CHECK(redisReaderGetReply(r, &reply) == REDIS_OK && reply != NULL);
    CHECK(reply && ((redisReply *)reply)->type == REDIS_REPLY_MAP);
    freeReplyObject(reply);
    redisReaderFree(r);
  }
}

static int on_url(llhttp_t *p, const char *at, size_t n) {
  (void)p;
  CHECK(n == 7 && memcmp(at, "/v1/ack", 7) == 0);
  return 0;
}

static void check_llhttp(void) {
  llhttp_settings_t s;
  llhttp_t p;
  llhttp_settings_init(&s);
  s.on_url = on_url;
  llhttp_init(&p, HTTP_REQUEST, &s);
  static const char req[] = "POST /v1/ack HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nok";
  CHECK(llhttp_execute(&p, req, sizeof req - 1) == HPE_OK);
  CHECK(llhttp_get_method(&p) == HTTP_POST);
}

int main(void) {
  check_boringssl();
  check_msgpack();
  check_hiredis();
  check_llhttp();
  if (failures) {
    fprintf(stderr, "deps-check: %d failure(s)\n", failures);
    return 1;
  }
  printf("BoringSSL API %d (%s), msgpack-c %s, hiredis %d.%d.%d, llhttp %d.%d.%d: ok\n",
         BORINGSSL_API_VERSION, OPENSSL_VERSION_TEXT, msgpack_version(),
         HIREDIS_MAJOR, HIREDIS_MINOR, HIREDIS_PATCH,
         LLHTTP_VERSION_MAJOR, LLHTTP_VERSION_MINOR, LLHTTP_VERSION_PATCH);
  return 0;
}
