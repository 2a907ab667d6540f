/* SPDX-License-Identifier: GPL-2.0-only */
/* Small helpers shared by every part of the replicator. */
#ifndef REPLICATOR_UTIL_H
#define REPLICATOR_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define ARRAY_SIZE(a)	(sizeof(a) / sizeof((a)[0]))

extern const char *prog_role;	/* "primary", "secondary", ... */

void warn_msg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void info_msg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static inline uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000ULL + ts.tv_nsec;
}

/*
 * Peer-supplied text made safe to log: at most dst_len - 1 bytes, every
 * byte outside printable ASCII shown as '?'.  Returns dst.
 */
char *util__printable(char *dst, size_t dst_len, const void *src, size_t n);

uint32_t crc32c(uint32_t crc, const void *buf, size_t len);

#endif /* REPLICATOR_UTIL_H */
