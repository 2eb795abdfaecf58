/* plog: the platform's one-line-per-event logger, in the gateway's key=value format
 * (`ts=… level=… event=… role=platform pid=… k=v …`). Lines go to stderr with one write(2). */
#ifndef NHPF_PLOG_H
#define NHPF_PLOG_H

enum { PLOG_DEBUG, PLOG_INFO, PLOG_WARN, PLOG_ERROR };

extern int plog_level;

/* "debug" | "info" | "warn" | "error" → level, -1 when unknown. */
int plog_parse_level(const char *s);

void plog(int level, const char *event, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
