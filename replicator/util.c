// SPDX-License-Identifier: GPL-2.0-only
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

const char *prog_role = "replicator";

static void vmsg(const char *tag, const char *fmt, va_list ap)
{
	char line[1024];

	vsnprintf(line, sizeof(line), fmt, ap);
	fprintf(stderr, "kemari-replicator: %s: %s%s\n", prog_role, tag, line);
}

void warn_msg(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vmsg("error: ", fmt, ap);
	va_end(ap);
}

void info_msg(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vmsg("", fmt, ap);
	va_end(ap);
}

void die(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vmsg("fatal: ", fmt, ap);
	va_end(ap);
	exit(1);
}

static uint32_t crc32c_table[256];
static bool crc32c_hw;

__attribute__((constructor)) static void crc32c_init(void)
{
	uint32_t c;
	int i, k;

	for (i = 0; i < 256; i++) {
		c = i;
		for (k = 0; k < 8; k++)
			c = (c >> 1) ^ (0x82f63b78 & -(c & 1));
		crc32c_table[i] = c;
	}
#ifdef __x86_64__
	__builtin_cpu_init();
	crc32c_hw = __builtin_cpu_supports("sse4.2");
#endif
}

#ifdef __x86_64__
/* SSE4.2's CRC32 instruction computes CRC-32C, 8 bytes at a time. */
__attribute__((target("sse4.2")))
static uint32_t crc32c_sse42(uint32_t crc, const uint8_t *p, size_t len)
{
	uint64_t c = crc, w;

	for (; len >= 8; len -= 8, p += 8) {
		memcpy(&w, p, 8);
		c = __builtin_ia32_crc32di(c, w);
	}
	crc = c;
	while (len--)
		crc = __builtin_ia32_crc32qi(crc, *p++);
	return crc;
}
#endif

/*
 * CRC-32C (Castagnoli): with SSE4.2's instruction where the CPU has it (a
 * checkpoint is checksummed twice in every pause), else a byte at a time.
 */
uint32_t crc32c(uint32_t crc, const void *buf, size_t len)
{
	const uint32_t *table = crc32c_table;
	const uint8_t *p = buf;

	crc = ~crc;
#ifdef __x86_64__
	if (crc32c_hw)
		return ~crc32c_sse42(crc, p, len);
#endif
	while (len--)
		crc = (crc >> 8) ^ table[(crc ^ *p++) & 0xff];
	return ~crc;
}
