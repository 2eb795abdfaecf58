/* nhplatform: option parsing, the NATS connection and its queue-group subscriptions (one
 * delivery thread per subscription, `--threads` of each), and the periodic reaper. Nothing is
 * fatal after the options parse: NATS and Redis are retried until they answer. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "platform.h"
#include "plog.h"
#include "pure_deploy.h"
#include "store.h"

#define MAX_THREADS 64

static volatile sig_atomic_t stopping;

static void on_signal(int sig)
{
    (void)sig;
    stopping = 1;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: nhplatform [options]\n"
            "  --nats URL              NATS server (default nats://127.0.0.1:4222)\n"
            "  --redis HOST:PORT       Redis (default 127.0.0.1:6379)\n"
            "  --prefix P              link prefix (default nh)\n"
            "  --auto-register         register unknown certificates by CN (default)\n"
            "  --no-auto-register      refuse unknown certificates\n"
            "  --shared-secrets        accept NH1 shared-secret authentication (x-nh-* headers)\n"
            "  --extensions LIST       extensions devices may attach, e.g. health,geo (default none)\n"
            "  --health-interval DUR   health:check period (default 60m)\n"
            "  --log-rate R/B          logging:send lines per second per device, burst B; excess dropped\n"
            "                          (default 5/10 as NervesHub; 0 = no limit)\n"
            "  --script-timeout DUR    scripts/run bookkeeping timeout (default 15s)\n"
            "  --penalty DUR           penalty box after a failed/ignored deployment update (default 24h; 0 off)\n"
            "  --reap-interval DUR     dead-gateway reaping period (default 30s)\n"
            "  --inbox-timeout DUR     wait for a worker's answer to a device message (default 2s)\n"
            "  --fwup-public-key KEY   fwup public key sent on request (repeatable)\n"
            "  --threads N             delivery threads per subject (default 2)\n"
            "  --log-level L           debug|info|warn|error (default info)\n"
            "Durations: a number with ms, s, m or h (a bare number is milliseconds).\n");
}

/* "500ms", "15s", "60m", "1h", "250" (ms) → ms; -1 when invalid or over 2^31-1 ms. */
static long long parse_duration(const char *s)
{
    char *end;
    long long v = strtoll(s, &end, 10);
    if (end == s || v < 0)
        return -1;
    long long mul = 1;
    if (!strcmp(end, "ms") || !*end)
        mul = 1;
    else if (!strcmp(end, "s"))
        mul = 1000;
    else if (!strcmp(end, "m"))
        mul = 60000;
    else if (!strcmp(end, "h"))
        mul = 3600000;
    else
        return -1;
    if (v > 0x7fffffffLL / mul)
        return -1;
    return v * mul;
}

static void on_nats_event(natsConnection *nc, void *closure)
{
    (void)nc;
    plog(PLOG_INFO, (const char *)closure, NULL);
}

static void on_nats_error(natsConnection *nc, natsSubscription *sub, natsStatus err, void *closure)
{
    (void)nc;
    (void)sub;
    (void)closure;
    plog(PLOG_WARN, "nats_error", "error=\"%s\"", natsStatus_GetText(err));
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int main(int argc, char **argv)
{
    pf.nats_url = "nats://127.0.0.1:4222";
    pf.redis_host = "127.0.0.1";
    pf.redis_port = 6379;
    snprintf(pf.prefix, sizeof(pf.prefix), "nh");
    pf.auto_register = true;
    pf.health_interval_ms = 60u * 60 * 1000;
    pf.log_rate_per_s = 5;
    pf.log_burst = 10;
    pf.script_timeout_ms = 15000;
    pf.penalty_ms = 24u * 3600 * 1000;
    pf.reap_interval_ms = 30000;
    pf.inbox_timeout_ms = 2000;
    pf.max_age_s = 90;
    pf.threads = 2;
    static char redis_host[256];

    enum { O_NATS = 256, O_REDIS, O_PREFIX, O_AUTO, O_NOAUTO, O_SS, O_EXT, O_HEALTH, O_SCRIPT, O_PENALTY,
           O_REAP, O_INBOX, O_FWUP, O_THREADS, O_LOG, O_LOGRATE, O_HELP };
    static const struct option opts[] = {
        {"nats", required_argument, 0, O_NATS},
        {"redis", required_argument, 0, O_REDIS},
        {"prefix", required_argument, 0, O_PREFIX},
        {"auto-register", no_argument, 0, O_AUTO},
        {"no-auto-register", no_argument, 0, O_NOAUTO},
        {"shared-secrets", no_argument, 0, O_SS},
        {"extensions", required_argument, 0, O_EXT},
        {"health-interval", required_argument, 0, O_HEALTH},
        {"log-rate", required_argument, 0, O_LOGRATE},
        {"script-timeout", required_argument, 0, O_SCRIPT},
        {"penalty", required_argument, 0, O_PENALTY},
        {"reap-interval", required_argument, 0, O_REAP},
        {"inbox-timeout", required_argument, 0, O_INBOX},
        {"fwup-public-key", required_argument, 0, O_FWUP},
        {"threads", required_argument, 0, O_THREADS},
        {"log-level", required_argument, 0, O_LOG},
        {"help", no_argument, 0, O_HELP},
        {0, 0, 0, 0},
    };
    int o;
    long long d;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case O_NATS:
            pf.nats_url = optarg;
            break;
        case O_REDIS: {
            const char *colon = strrchr(optarg, ':');
            if (!colon || colon == optarg || atoi(colon + 1) <= 0 || atoi(colon + 1) > 65535 ||
                (size_t)(colon - optarg) >= sizeof(redis_host)) {
                fprintf(stderr, "nhplatform: --redis wants HOST:PORT, got %s\n", optarg);
                return 2;
            }
            memcpy(redis_host, optarg, (size_t)(colon - optarg));
            pf.redis_host = redis_host;
            pf.redis_port = atoi(colon + 1);
            break;
        }
        case O_PREFIX:
            if (!lpr_prefix_valid(optarg, strlen(optarg))) {
                fprintf(stderr, "nhplatform: --prefix must match [A-Za-z0-9_-]{1,32}\n");
                return 2;
            }
            snprintf(pf.prefix, sizeof(pf.prefix), "%s", optarg);
            break;
        case O_AUTO:
            pf.auto_register = true;
            break;
        case O_NOAUTO:
            pf.auto_register = false;
            break;
        case O_SS:
            pf.shared_secrets = true;
            break;
        case O_EXT:
            if (pd_ext_parse_list(optarg, &pf.extensions) < 0) {
                fprintf(stderr, "nhplatform: --extensions: unknown name in %s (known: geo, health, local_shell, "
                                "logging, network_identity)\n", optarg);
                return 2;
            }
            break;
        case O_LOGRATE: {
            unsigned long r, b = 0;
            char tail;
            int n = sscanf(optarg, "%lu/%lu%c", &r, &b, &tail);
            if (!((n == 1 && r == 0) || (n == 2 && r > 0 && r <= 100000 && b > 0 && b <= 100000))) {
                fprintf(stderr, "nhplatform: --log-rate wants RATE/BURST (e.g. 5/10) or 0, got %s\n", optarg);
                return 2;
            }
            pf.log_rate_per_s = (uint32_t)r;
            pf.log_burst = (uint32_t)b;
            break;
        }
        case O_HEALTH:
        case O_SCRIPT:
        case O_PENALTY:
        case O_REAP:
        case O_INBOX:
            d = parse_duration(optarg);
            if (d < 0 || (d == 0 && o != O_PENALTY)) {
                fprintf(stderr, "nhplatform: bad duration %s\n", optarg);
                return 2;
            }
            if (o == O_HEALTH)
                pf.health_interval_ms = (uint32_t)d;
            else if (o == O_SCRIPT)
                pf.script_timeout_ms = (uint32_t)d;
            else if (o == O_PENALTY)
                pf.penalty_ms = (uint32_t)d;
            else if (o == O_REAP)
                pf.reap_interval_ms = (uint32_t)d;
            else
                pf.inbox_timeout_ms = (uint32_t)d;
            break;
        case O_FWUP:
            if (pf.n_fwup_keys == PF_MAX_FWUP_KEYS) {
                fprintf(stderr, "nhplatform: at most %d --fwup-public-key\n", PF_MAX_FWUP_KEYS);
                return 2;
            }
            pf.fwup_keys[pf.n_fwup_keys++] = optarg;
            break;
        case O_THREADS:
            pf.threads = atoi(optarg);
            if (pf.threads < 1 || pf.threads > MAX_THREADS) {
                fprintf(stderr, "nhplatform: --threads must be 1..%d\n", MAX_THREADS);
                return 2;
            }
            break;
        case O_LOG:
            if ((plog_level = plog_parse_level(optarg)) < 0) {
                fprintf(stderr, "nhplatform: --log-level must be debug, info, warn or error\n");
                return 2;
            }
            break;
        case O_HELP:
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        usage(stderr);
        return 2;
    }
    pf.prefix_len = strlen(pf.prefix);
    store_config(pf.redis_host, pf.redis_port, 2000);
    store_on_thread_exit(pf_thread_cleanup);
    link_init();
    api_init();
    srandom((unsigned)time(NULL) ^ (unsigned)getpid());
    signal(SIGPIPE, SIG_IGN);
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);

    natsOptions *no = NULL;
    natsStatus s = natsOptions_Create(&no);
    if (s == NATS_OK)
        s = natsOptions_SetURL(no, pf.nats_url);
    if (s == NATS_OK)
        s = natsOptions_SetName(no, "nhplatform");
    if (s == NATS_OK)
        s = natsOptions_SetMaxReconnect(no, -1);
    if (s == NATS_OK)
        s = natsOptions_SetReconnectWait(no, 250);
    if (s == NATS_OK)
        s = natsOptions_SetRetryOnFailedConnect(no, true, on_nats_event, (void *)"nats_connected");
    if (s == NATS_OK)
        s = natsOptions_SetDisconnectedCB(no, on_nats_event, (void *)"nats_disconnected");
    if (s == NATS_OK)
        s = natsOptions_SetReconnectedCB(no, on_nats_event, (void *)"nats_reconnected");
    if (s == NATS_OK)
        s = natsOptions_SetErrorHandler(no, on_nats_error, NULL);
    if (s == NATS_OK)
        s = natsOptions_SetReconnectBufSize(no, 8 << 20);
    if (s != NATS_OK) {
        fprintf(stderr, "nhplatform: NATS options: %s\n", natsStatus_GetText(s));
        return 2;
    }
    s = natsConnection_Connect(&pf_nc, no);
    if (s != NATS_OK && s != NATS_NOT_YET_CONNECTED) {
        fprintf(stderr, "nhplatform: NATS %s: %s\n", pf.nats_url, natsStatus_GetText(s));
        return 2;
    }
    if (s == NATS_OK)
        plog(PLOG_INFO, "nats_connected", "url=%s", pf.nats_url);

    char link_subj[64], api_subj[64], queue[64];
    snprintf(link_subj, sizeof(link_subj), "%s.link.*", pf.prefix);
    snprintf(api_subj, sizeof(api_subj), "%s.api.>", pf.prefix);
    snprintf(queue, sizeof(queue), "%s.platform", pf.prefix);
    natsSubscription *subs[2 * MAX_THREADS];
    int nsubs = 0;
    for (int i = 0; i < pf.threads; i++) {
        if (natsConnection_QueueSubscribe(&subs[nsubs], pf_nc, link_subj, queue, link_on_msg, NULL) != NATS_OK ||
            natsSubscription_SetPendingLimits(subs[nsubs++], 1 << 20, 512 << 20) != NATS_OK ||
            natsConnection_QueueSubscribe(&subs[nsubs], pf_nc, api_subj, queue, api_on_msg, NULL) != NATS_OK) {
            fprintf(stderr, "nhplatform: subscribe: %s\n", nats_GetLastError(NULL));
            return 2;
        }
        nsubs++;
    }
    natsConnection_FlushTimeout(pf_nc, 2000); /* the subscriptions reach the server (when connected) */
    plog(PLOG_INFO, "platform_started",
         "prefix=%s nats=%s redis=%s:%d threads=%d auto_register=%d shared_secrets=%d extensions=%u", pf.prefix,
         pf.nats_url, pf.redis_host, pf.redis_port, pf.threads, pf.auto_register, pf.shared_secrets,
         pf.extensions);

    int64_t next_reap = mono_ms() + pf.reap_interval_ms;
    while (!stopping) {
        sleep_ms(100);
        if (mono_ms() >= next_reap) {
            pf_reap();
            next_reap = mono_ms() + pf.reap_interval_ms;
        }
    }
    plog(PLOG_INFO, "platform_stopping", NULL);
    for (int i = 0; i < nsubs; i++) {
        natsSubscription_Unsubscribe(subs[i]);
        natsSubscription_Destroy(subs[i]);
    }
    natsConnection_FlushTimeout(pf_nc, 1000);
    natsConnection_Destroy(pf_nc);
    natsOptions_Destroy(no);
    nats_CloseAndWait(2000);
    store_thread_done();
    return 0;
}
