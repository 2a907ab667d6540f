// SPDX-License-Identifier: GPL-2.0-only
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stats.h"
#include "util.h"

void stats__init(struct stats *s, int interval_ms)
{
	memset(s, 0, sizeof(*s));
	s->start_ns = s->last_print_ns = now_ns();
	s->interval_ms = interval_ms;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

uint64_t stats__percentile(uint64_t *v, uint32_t n, unsigned int pct)
{
	if (!n)
		return 0;
	qsort(v, n, sizeof(*v), cmp_u64);
	return v[(uint64_t)(n - 1) * pct / 100];
}

static void stats__line(const char *what, double secs, uint64_t ckpts,
			uint64_t pages, uint64_t bytes, uint64_t *pause,
			uint32_t n)
{
	info_msg("%s %7.1f ckpt/s | %6.1f pages/ckpt | pause p50 %7.3f ms p99 %7.3f ms | %7.2f MB/s",
		 what, ckpts / secs, ckpts ? (double)pages / ckpts : 0.0,
		 stats__percentile(pause, n, 50) / 1e6,
		 stats__percentile(pause, n, 99) / 1e6, bytes / secs / 1e6);
}

void stats__checkpoint(struct stats *s, uint64_t pause_ns, uint64_t harvest_ns,
		       uint64_t pages, uint64_t bytes)
{
	uint64_t now = now_ns();

	s->ckpts++;
	s->pages += pages;
	s->bytes += bytes;
	s->i_ckpts++;
	s->i_pages += pages;
	s->i_bytes += bytes;
	if (s->nr_pause < STATS_SAMPLES)
		s->pause_ns[s->nr_pause++] = pause_ns;
	/* Every sample until the array is full, then a uniform subsample. */
	if (s->nr_all < STATS_SAMPLES) {
		s->harvest_ns[s->nr_all] = harvest_ns;
		s->all_pause[s->nr_all++] = pause_ns;
	} else if (rand() % s->ckpts < STATS_SAMPLES) {
		unsigned int k = rand() % STATS_SAMPLES;

		s->harvest_ns[k] = harvest_ns;
		s->all_pause[k] = pause_ns;
	}

	if (!s->interval_ms ||
	    now - s->last_print_ns < (uint64_t)s->interval_ms * 1000000)
		return;
	stats__line("status:", (now - s->last_print_ns) / 1e9, s->i_ckpts,
		    s->i_pages, s->i_bytes, s->pause_ns, s->nr_pause);
	s->last_print_ns = now;
	s->i_ckpts = s->i_pages = s->i_bytes = 0;
	s->nr_pause = 0;
}

void stats__summary(struct stats *s)
{
	double secs = (now_ns() - s->start_ns) / 1e9;

	char q[21 * 12] = "";
	unsigned int i;

	info_msg("%llu checkpoints in %.2f s", (unsigned long long)s->ckpts, secs);
	stats__line("overall:", secs, s->ckpts, s->pages, s->bytes,
		    s->all_pause, s->nr_all);
	/* The pause distribution, for plots: every 5th percentile, in ms. */
	for (i = 0; i <= 100; i += 5)
		snprintf(q + strlen(q), sizeof(q) - strlen(q), " %.3f",
			 stats__percentile(s->all_pause, s->nr_all, i) / 1e6);
	info_msg("pause quantiles (ms, 0 to 100 by 5):%s", q);
	/* The part of the pause that harvests and resets the dirty log. */
	info_msg("harvest p50 %.3f ms p99 %.3f ms",
		 stats__percentile(s->harvest_ns, s->nr_all, 50) / 1e6,
		 stats__percentile(s->harvest_ns, s->nr_all, 99) / 1e6);
}
