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
	vmsg("warning: ", fmt, ap);
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

/*
 * CRC-32C (Castagnoli).  A checkpoint is checksummed by both ends inside
 * the pause, so the fastest of two ways is used: SSE4.2's CRC32
 * instruction, or eight table lookups per 8 bytes ("slicing by 8").  The
 * choice is measured at start-up, because an emulated CPU (QEMU TCG) runs
 * the instruction ten times slower than the tables, and hardware the
 * other way round.
 */
static uint32_t crc32c_table[8][256];
static uint32_t (*crc32c_words)(uint32_t crc, const uint8_t *p, size_t len);

static uint32_t crc32c_sliced(uint32_t crc, const uint8_t *p, size_t len)
{
	const uint32_t (*t)[256] = crc32c_table;
	uint64_t w;

#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	for (; len >= 8; len -= 8, p += 8) {
		memcpy(&w, p, 8);
		w ^= crc;
		crc = t[7][w & 0xff] ^ t[6][(w >> 8) & 0xff] ^
		      t[5][(w >> 16) & 0xff] ^ t[4][(w >> 24) & 0xff] ^
		      t[3][(w >> 32) & 0xff] ^ t[2][(w >> 40) & 0xff] ^
		      t[1][(w >> 48) & 0xff] ^ t[0][w >> 56];
	}
#else
	(void)w;
#endif
	while (len--)
		crc = (crc >> 8) ^ t[0][(crc ^ *p++) & 0xff];
	return crc;
}

#ifdef __x86_64__
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

/* The better of three passes over a 16 KiB buffer, in ns. */
static uint64_t crc32c_time(uint32_t (*f)(uint32_t, const uint8_t *, size_t))
{
	static uint8_t buf[16384];
	uint64_t best = UINT64_MAX, t;
	int i;

	for (i = 0; i < 3; i++) {
		t = now_ns();
		f(0, buf, sizeof(buf));
		t = now_ns() - t;
		if (t < best)
			best = t;
	}
	return best;
}
#endif

__attribute__((constructor)) static void crc32c_init(void)
{
	uint32_t c;
	int i, k;

	for (i = 0; i < 256; i++) {
		c = i;
		for (k = 0; k < 8; k++)
			c = (c >> 1) ^ (0x82f63b78 & -(c & 1));
		crc32c_table[0][i] = c;
	}
	for (k = 1; k < 8; k++)
		for (i = 0; i < 256; i++)
			crc32c_table[k][i] = (crc32c_table[k - 1][i] >> 8) ^
				crc32c_table[0][crc32c_table[k - 1][i] & 0xff];
	crc32c_words = crc32c_sliced;
#ifdef __x86_64__
	__builtin_cpu_init();
	if (__builtin_cpu_supports("sse4.2") &&
	    crc32c_time(crc32c_sse42) < crc32c_time(crc32c_sliced))
		crc32c_words = crc32c_sse42;
#endif
}

uint32_t crc32c(uint32_t crc, const void *buf, size_t len)
{
	return ~crc32c_words(~crc, buf, len);
}

char *util__printable(char *dst, size_t dst_len, const void *src, size_t n)
{
	const unsigned char *p = src;
	size_t i;

	if (!dst_len)
		return dst;
	for (i = 0; i < n && i < dst_len - 1; i++)
		dst[i] = p[i] >= 0x20 && p[i] < 0x7f ? p[i] : '?';
	dst[i] = 0;
	return dst;
}
