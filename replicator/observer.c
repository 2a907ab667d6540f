// SPDX-License-Identifier: GPL-2.0-only
/*
 * The observer: the outside world.  It accepts TCP connections from
 * whichever copy of the guest is active (the primary, then the secondary
 * after a takeover), reads the output records from each stream, and logs
 * every one, one line each: "vcpu seq source tsc arrival_ns", where
 * source numbers the connections in the order they were accepted and the
 * arrival is on CLOCK_MONOTONIC.
 *
 * It acknowledges every segment at once (TCP_QUICKACK), because the
 * primary waits for those acknowledgments before its next checkpoint.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "replicator.h"
#include "util.h"
#include "wire.h"

#define MAX_CONNS	16

struct conn {
	int fd;
	unsigned int source;
	size_t have;			/* bytes of rec received */
	struct out_record rec;
};

static void conn__close(struct conn *c, const char *why)
{
	if (c->have)
		warn_msg("source %u: %s with %zu bytes of a record: dropped",
			 c->source, why, c->have);
	close(c->fd);
	c->fd = -1;
}

/* Read what is there; false when the connection is finished. */
static bool conn__read(struct conn *c, int log, uint64_t *records,
		       int stats_ms)
{
	int one = 1;
	ssize_t n;

	n = read(c->fd, (uint8_t *)&c->rec + c->have, sizeof(c->rec) - c->have);
	if (n < 0 && errno == EINTR)
		return true;
	if (n <= 0) {
		conn__close(c, n ? strerror(errno) : "closed");
		return false;
	}
	setsockopt(c->fd, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof(one));
	c->have += n;
	if (c->have < sizeof(c->rec))
		return true;
	c->have = 0;
	if (c->rec.magic != ABI_RECORD_MAGIC) {
		warn_msg("source %u: not a record (magic %#x): framing lost, closing",
			 c->source, c->rec.magic);
		conn__close(c, "framing lost");
		return false;
	}
	dprintf(log, "%u %llu %u %llu %llu\n", c->rec.vcpu,
		(unsigned long long)c->rec.seq, c->source,
		(unsigned long long)c->rec.tsc, (unsigned long long)now_ns());
	if (stats_ms && ++*records % 50 == 0)
		info_msg("%llu records so far, latest vcpu %u seq %llu",
			 (unsigned long long)*records, c->rec.vcpu,
			 (unsigned long long)c->rec.seq);
	return true;
}

int observer__main(const struct options *o)
{
	struct conn conn[MAX_CONNS];
	struct pollfd pfd[MAX_CONNS + 1];
	unsigned int sources = 0, i, n;
	uint64_t records = 0;
	int lfd, log, fd;

	prog_role = "observer";
	log = open(o->log, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC,
		   0644);
	if (log < 0)
		die("record log %s: %m", o->log);
	lfd = wire__listen("0.0.0.0", o->observer_port);
	if (lfd < 0)
		die("cannot listen on TCP port %d: %s", o->observer_port,
		    strerror(-lfd));
	for (i = 0; i < MAX_CONNS; i++)
		conn[i].fd = -1;
	for (;;) {
		pfd[0] = (struct pollfd){ .fd = lfd, .events = POLLIN };
		for (i = 0, n = 1; i < MAX_CONNS; i++)
			pfd[n++] = (struct pollfd){ .fd = conn[i].fd,
						    .events = POLLIN };
		if (poll(pfd, n, -1) < 0) {
			if (errno == EINTR)
				continue;
			die("poll: %m");
		}
		for (i = 0; i < MAX_CONNS; i++)
			if (conn[i].fd >= 0 && pfd[i + 1].revents)
				conn__read(&conn[i], log, &records, o->stats_ms);
		if (!pfd[0].revents)
			continue;
		fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0)
			continue;
		for (i = 0; i < MAX_CONNS && conn[i].fd >= 0; i++)
			;
		if (i == MAX_CONNS) {
			warn_msg("more than %d senders at once: refusing one",
				 MAX_CONNS);
			close(fd);
			continue;
		}
		conn[i] = (struct conn){ .fd = fd, .source = sources++ };
	}
}
