/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Network output buffering for the pipelined mode: a plug qdisc on the
 * interface that carries the guest's output, driven through libnl3 as
 * Remus does.  Output sent after checkpoint N leaves the host only once
 * checkpoint N+1, which covers it, is acknowledged.
 */
#ifndef REPLICATOR_NETBUF_H
#define REPLICATOR_NETBUF_H

struct netbuf;

/* Replace the root qdisc of ifname by a plug that holds everything. */
struct netbuf *netbuf__open(const char *ifname);
/* Close the current epoch: what was sent so far waits for one release. */
int netbuf__checkpoint(struct netbuf *nb);
/* Let the oldest closed epoch out. */
int netbuf__release(struct netbuf *nb);
/* Stop buffering (running unprotected, or done). */
int netbuf__release_all(struct netbuf *nb);

#endif /* REPLICATOR_NETBUF_H */
