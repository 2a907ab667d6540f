/* SPDX-License-Identifier: GPL-2.0-only */
/* Live statistics of the primary, printed as one status line a second. */
#ifndef REPLICATOR_STATS_H
#define REPLICATOR_STATS_H

#include <stdint.h>

#define STATS_SAMPLES	4096

struct stats {
	uint64_t start_ns;
	uint64_t last_print_ns;
	uint64_t ckpts, pages, bytes;		/* since the start */
	uint64_t i_ckpts, i_pages, i_bytes;	/* since the last line */
	uint32_t nr_pause;
	uint64_t pause_ns[STATS_SAMPLES];	/* of this interval */
	uint64_t all_pause[STATS_SAMPLES];	/* a sample of the whole run */
	uint32_t nr_all;
	uint64_t harvest_ns[STATS_SAMPLES];	/* same sampling as all_pause */
	int interval_ms;			/* 0: no status lines */
};

void stats__init(struct stats *s, int interval_ms);
void stats__checkpoint(struct stats *s, uint64_t pause_ns, uint64_t harvest_ns,
		       uint64_t pages, uint64_t bytes);
void stats__summary(struct stats *s);
uint64_t stats__percentile(uint64_t *v, uint32_t n, unsigned int pct);

#endif /* REPLICATOR_STATS_H */
