/* Config parsing: unit suffixes, bounds at max and max+1, precedence argv > env > file. */
#include "../lib/test.h"

#include <unistd.h>

#include "config.h"

TEST(config_duration_units)
{
    uint64_t v;
    ASSERT_EQ(cfg_parse_duration_ms("250ms", &v), 0);
    ASSERT_EQ(v, 250);
    ASSERT_EQ(cfg_parse_duration_ms("10s", &v), 0);
    ASSERT_EQ(v, 10000);
    ASSERT_EQ(cfg_parse_duration_ms("3m", &v), 0);
    ASSERT_EQ(v, 180000);
    ASSERT_EQ(cfg_parse_duration_ms("1h", &v), 0);
    ASSERT_EQ(v, 3600000);
    ASSERT_EQ(cfg_parse_duration_ms("7", &v), 0);
    ASSERT_EQ(v, 7000);
    ASSERT_EQ(cfg_parse_duration_ms("1.5s", &v), 0);
    ASSERT_EQ(v, 1500);
    ASSERT_EQ(cfg_parse_duration_ms("5 parsecs", &v), -1);
    ASSERT_EQ(cfg_parse_duration_ms("-1s", &v), -1);
    ASSERT_EQ(cfg_parse_duration_ms("", &v), -1);
}

TEST(config_size_units)
{
    uint64_t v;
    ASSERT_EQ(cfg_parse_size("1MiB", &v), 0);
    ASSERT_EQ(v, 1 << 20);
    ASSERT_EQ(cfg_parse_size("64KiB", &v), 0);
    ASSERT_EQ(v, 65536);
    ASSERT_EQ(cfg_parse_size("8k", &v), 0);
    ASSERT_EQ(v, 8192);
    ASSERT_EQ(cfg_parse_size("123", &v), 0);
    ASSERT_EQ(v, 123);
    ASSERT_EQ(cfg_parse_size("2GiB", &v), 0);
    ASSERT_EQ(v, 2ull << 30);
    ASSERT_EQ(cfg_parse_size("1 furlong", &v), -1);
}

static int load(struct cfg *c, char **argv, char *err)
{
    int argc = 0;
    while (argv[argc])
        argc++;
    return cfg_load(c, argc, argv, err, 256);
}

TEST(config_required_and_bounds)
{
    struct cfg c;
    char err[256];
    char *no_cert[] = { "nhgw", "--device-ca", "ca.pem", NULL };
    ASSERT_EQ(load(&c, no_cert, err), -1);
    ASSERT(strstr(err, "--cert"));
    cfg_free(&c);

    char *ok[] = { "nhgw", "--cert", "a.pem", "--key", "a.key", "--device-ca", "ca.pem", "--max-channels", "100000",
                   NULL };
    ASSERT_EQ(load(&c, ok, err), 0);
    ASSERT_EQ(c.max_channels, 100000);
    ASSERT_EQ(c.max_frame, 1 << 20);        /* default */
    ASSERT_EQ(c.idle_timeout_ms, 180000);   /* NervesHub's idle timeout */
    cfg_free(&c);

    char *over[] = { "nhgw", "--cert", "a.pem", "--key", "a.key", "--device-ca", "ca.pem", "--max-channels",
                     "100001", NULL };
    ASSERT_EQ(load(&c, over, err), -1);
    ASSERT(strstr(err, "max-channels"));
    cfg_free(&c);

    char *unpaired[] = { "nhgw", "--cert", "a.pem", "--cert", "b.pem", "--key", "a.key", "--device-ca", "ca.pem",
                         NULL };
    ASSERT_EQ(load(&c, unpaired, err), -1);
    cfg_free(&c);

    char *unknown[] = { "nhgw", "--frobnicate", "1", NULL };
    ASSERT_EQ(load(&c, unknown, err), -1);
    ASSERT(strstr(err, "frobnicate"));
    cfg_free(&c);
}

TEST(config_precedence_file_env_argv)
{
    char path[] = "/tmp/nhgw-cfg-XXXXXX";
    int fd = mkstemp(path);
    ASSERT(fd >= 0);
    const char *text = "# comment\ncert = f.pem\nkey = f.key\ndevice-ca = f-ca.pem\nidle-timeout = 1m\n"
                       "max-frame = 2MiB\nworkers = 3\n";
    ASSERT_EQ(write(fd, text, strlen(text)), (long long)strlen(text));
    close(fd);
    setenv("NHGW_MAX_FRAME", "64KiB", 1);
    setenv("NHGW_WORKERS", "5", 1);
    struct cfg c;
    char err[256];
    char *argv[] = { "nhgw", "--config", path, "--workers=7", NULL };
    ASSERT_EQ(load(&c, argv, err), 0);
    ASSERT_EQ(c.idle_timeout_ms, 60000); /* file */
    ASSERT_EQ(c.max_frame, 65536);       /* env beats file */
    ASSERT_EQ(c.workers, 7);             /* argv beats env */
    ASSERT_STR_EQ(c.certs[0], "f.pem");
    cfg_free(&c);
    unlink(path);
}
