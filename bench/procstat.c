/* /proc sampling (see procstat.h). */
#include "procstat.h"

#include <ctype.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Parse /proc/<pid>/stat: ppid (field 4), utime (14), stime (15). The comm field may contain
 * spaces and parentheses, so fields are counted from the last ')'. */
static int read_stat(pid_t pid, pid_t *ppid, uint64_t *ticks)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    if (!p)
        return -1;
    p++;
    /* fields after comm: 3 state, 4 ppid, ..., 14 utime, 15 stime */
    char state;
    int pp;
    unsigned long long ut, st;
    if (sscanf(p, " %c %d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &state, &pp, &ut, &st) != 4)
        return -1;
    *ppid = pp;
    *ticks = ut + st;
    return 0;
}

static void read_status(pid_t pid, uint64_t *rss, uint64_t *anon)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    *rss = *anon = 0;
    if (!f)
        return;
    while (fgets(line, sizeof(line), f)) {
        unsigned long long v;
        if (sscanf(line, "VmRSS: %llu kB", &v) == 1)
            *rss = v;
        else if (sscanf(line, "RssAnon: %llu kB", &v) == 1)
            *anon = v;
    }
    fclose(f);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void add(struct ps_sample *s, pid_t pid, uint64_t ticks)
{
    uint64_t rss, anon;
    read_status(pid, &rss, &anon);
    s->procs++;
    s->rss_kib += rss;
    s->anon_kib += anon;
    s->cpu_ticks += ticks;
}

int ps_sample_tree(pid_t master, struct ps_sample *s)
{
    memset(s, 0, sizeof(*s));
    s->t = now_s();
    pid_t pp;
    uint64_t ticks;
    if (read_stat(master, &pp, &ticks) != 0)
        return -1;
    add(s, master, ticks);
    DIR *d = opendir("/proc");
    if (!d)
        return 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!isdigit((unsigned char)e->d_name[0]))
            continue;
        pid_t pid = (pid_t)atoi(e->d_name);
        if (pid != master && read_stat(pid, &pp, &ticks) == 0 && pp == master)
            add(s, pid, ticks);
    }
    closedir(d);
    return 0;
}

int ps_sockstat(struct ps_sockstat *s)
{
    memset(s, 0, sizeof(*s));
    FILE *f = fopen("/proc/net/sockstat", "r");
    if (!f)
        return -1;
    char line[256];
    int rc = -1;
    while (fgets(line, sizeof(line), f)) {
        unsigned long long a, b, c, d, m;
        if (sscanf(line, "TCP: inuse %llu orphan %llu tw %llu alloc %llu mem %llu", &a, &b, &c, &d, &m) == 5) {
            *s = (struct ps_sockstat){ a, b, c, d, m, 0 };
            rc = 0;
        }
    }
    fclose(f);
    f = fopen("/proc/meminfo", "r");
    if (!f)
        return -1;
    while (fgets(line, sizeof(line), f)) {
        unsigned long long v;
        if (sscanf(line, "Slab: %llu kB", &v) == 1)
            s->slab_kib = v;
    }
    fclose(f);
    return rc;
}

int ps_system_cpu(uint64_t *busy, uint64_t *all)
{
    *busy = *all = 0;
    FILE *f = fopen("/proc/stat", "r");
    if (!f)
        return -1;
    unsigned long long v[10] = { 0 };
    int n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3], &v[4],
                   &v[5], &v[6], &v[7], &v[8], &v[9]);
    fclose(f);
    if (n < 4)
        return -1;
    /* user nice system idle iowait irq softirq steal guest guest_nice; guest time is already in user */
    for (int i = 0; i < 8 && i < n; i++)
        *all += v[i];
    *busy = *all - v[3] - (n > 4 ? v[4] : 0);
    return 0;
}

double ps_tick_seconds(void)
{
    long t = sysconf(_SC_CLK_TCK);
    return t > 0 ? 1.0 / (double)t : 0.01;
}
