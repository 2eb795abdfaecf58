/* Resource accounting of a process tree from /proc, for nhbench: resident memory (VmRSS, RssAnon)
 * and CPU time (utime + stime) summed over a master process and its direct children (the gateway's
 * workers, or nhbench's own), and the kernel's TCP socket memory from /proc/net/sockstat.
 * Linux only; read-only; no process is signalled. */
#ifndef NHBENCH_PROCSTAT_H
#define NHBENCH_PROCSTAT_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

struct ps_sample {
    int procs;             /* processes found (master + children); 0 if the master is gone */
    uint64_t rss_kib;      /* sum of VmRSS */
    uint64_t anon_kib;     /* sum of RssAnon (private heap and stacks: what sessions cost) */
    uint64_t cpu_ticks;    /* sum of utime + stime, in clock ticks (sysconf(_SC_CLK_TCK)) */
    double t;              /* CLOCK_MONOTONIC seconds when sampled */
};

/* Sample master and every process whose parent is master. Returns 0, or -1 if master does not
 * exist (s->procs is then 0). */
int ps_sample_tree(pid_t master, struct ps_sample *s);

struct ps_sockstat {
    uint64_t tcp_inuse;    /* TCP sockets in use (both ends on loopback count) */
    uint64_t tcp_orphan;
    uint64_t tcp_tw;       /* TIME_WAIT */
    uint64_t tcp_alloc;
    uint64_t tcp_mem_pages;/* pages charged to TCP socket buffers */
    uint64_t slab_kib;     /* /proc/meminfo Slab: kernel objects (sockets, files, epoll items), system-wide */
};

/* Read /proc/net/sockstat and the Slab line of /proc/meminfo. Returns 0 or -1. */
int ps_sockstat(struct ps_sockstat *s);

/* System-wide CPU time from the first line of /proc/stat, in clock ticks: busy (everything but idle
 * and iowait) and all. On a shared machine, busy minus the gateway's and nhbench's own CPU time is
 * what other processes took. Returns 0 or -1. */
int ps_system_cpu(uint64_t *busy, uint64_t *all);

/* Seconds per clock tick. */
double ps_tick_seconds(void);

#endif
