/* The master process: validates what it can before forking, forks the workers, respawns a crashed
 * worker with backoff, forwards SIGTERM/SIGHUP and exits cleanly once the workers are gone. */
#ifndef NHGW_MASTER_H
#define NHGW_MASTER_H

struct cfg;

/* Runs until shutdown; returns the process exit code. */
int master_run(const struct cfg *cfg);

#endif
