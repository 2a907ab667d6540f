// SPDX-License-Identifier: GPL-2.0-only
/*
 * The observer: the outside world.  It receives the output records of
 * whichever copy of the guest is active, one UDP datagram each, and logs
 * every one, one line each: "vcpu seq source tsc arrival_ns", where
 * source numbers the senders in the order they appeared and the arrival
 * is on CLOCK_MONOTONIC.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "replicator.h"
#include "util.h"
#include "wire.h"

#define MAX_SOURCES	64

int observer__main(const struct options *o)
{
	struct sockaddr_in sa = {
		.sin_family = AF_INET,
		.sin_port = htons(o->observer_port),
	}, from, src[MAX_SOURCES];
	unsigned int n = 0, i;
	uint64_t records = 0;
	struct out_record rec;
	int fd, log;

	prog_role = "observer";
	log = open(o->log, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC,
		   0644);
	if (log < 0)
		die("record log %s: %m", o->log);
	fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)))
		die("cannot listen on UDP port %d: %m", o->observer_port);
	for (;;) {
		socklen_t len = sizeof(from);
		ssize_t got = recvfrom(fd, &rec, sizeof(rec), 0,
				       (struct sockaddr *)&from, &len);

		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0)
			die("recvfrom: %m");
		if (got != sizeof(rec) || rec.magic != ABI_RECORD_MAGIC) {
			warn_msg("a datagram that is not a record (%zd bytes): ignored",
				 got);
			continue;
		}
		for (i = 0; i < n; i++)
			if (src[i].sin_addr.s_addr == from.sin_addr.s_addr &&
			    src[i].sin_port == from.sin_port)
				break;
		if (i == n && n < MAX_SOURCES)
			src[n++] = from;
		dprintf(log, "%u %llu %u %llu %llu\n", rec.vcpu,
			(unsigned long long)rec.seq, i,
			(unsigned long long)rec.tsc, (unsigned long long)now_ns());
		if (o->stats_ms && ++records % 50 == 0)
			info_msg("%llu records so far, latest vcpu %u seq %llu",
				 (unsigned long long)records, rec.vcpu,
				 (unsigned long long)rec.seq);
	}
}
