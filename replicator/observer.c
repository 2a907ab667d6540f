// SPDX-License-Identifier: GPL-2.0-only
/*
 * The observer: the outside world.  It accepts connections from whichever
 * copy of the guest is active and logs every output record it receives,
 * one line each: "vcpu seq connection tsc arrival_ns", the arrival
 * on CLOCK_MONOTONIC.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "replicator.h"
#include "util.h"
#include "wire.h"

#define MAX_CONNS	8

struct conn {
	int fd;
	unsigned int id;
	size_t have;
	struct out_record rec;
};

int observer__main(const struct options *o)
{
	struct pollfd pfd[MAX_CONNS + 1];
	struct conn c[MAX_CONNS];
	unsigned int n = 0, ids = 0, i;
	uint64_t records = 0;
	int lfd, log;

	prog_role = "observer";
	log = open(o->log, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC,
		   0644);
	if (log < 0)
		die("record log %s: %m", o->log);
	lfd = wire__listen("0.0.0.0", o->observer_port);
	if (lfd < 0)
		die("cannot listen on port %d: %s", o->observer_port,
		    strerror(-lfd));
	for (;;) {
		pfd[0] = (struct pollfd){ .fd = lfd, .events = POLLIN };
		for (i = 0; i < n; i++)
			pfd[i + 1] = (struct pollfd){ .fd = c[i].fd, .events = POLLIN };
		if (poll(pfd, n + 1, -1) < 0) {
			if (errno == EINTR)
				continue;
			die("poll: %m");
		}
		if (pfd[0].revents & POLLIN) {
			int fd = wire__accept(lfd, 0);

			if (fd >= 0 && n == MAX_CONNS) {
				warn_msg("more than %d connections: refused one",
					 MAX_CONNS);
				close(fd);
			} else if (fd >= 0) {
				c[n++] = (struct conn){ .fd = fd, .id = ids++ };
			}
		}
		for (i = 0; i < n; i++) {
			struct conn *k = &c[i];
			ssize_t got;

			if (!pfd[i + 1].revents)
				continue;
			got = read(k->fd, (uint8_t *)&k->rec + k->have,
				   sizeof(k->rec) - k->have);
			if (got <= 0) {
				close(k->fd);
				k->fd = -1;
				continue;
			}
			k->have += got;
			if (k->have < sizeof(k->rec))
				continue;
			k->have = 0;
			dprintf(log, "%u %llu %u %llu %llu\n", k->rec.vcpu,
				(unsigned long long)k->rec.seq, k->id,
				(unsigned long long)k->rec.tsc,
				(unsigned long long)now_ns());
			if (o->stats_ms && ++records % 50 == 0)
				info_msg("%llu records so far, latest vcpu %u seq %llu",
					 (unsigned long long)records, k->rec.vcpu,
					 (unsigned long long)k->rec.seq);
		}
		for (i = 0; i < n;)
			if (c[i].fd < 0)
				c[i] = c[--n];
			else
				i++;
	}
}
