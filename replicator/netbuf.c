// SPDX-License-Identifier: GPL-2.0-only
#include <errno.h>
#include <stdlib.h>
#include <netlink/netlink.h>
#include <netlink/route/link.h>
#include <netlink/route/qdisc.h>
#include <netlink/route/qdisc/plug.h>
#include <netlink/route/tc.h>

#include "netbuf.h"
#include "util.h"

#define NETBUF_LIMIT	(16 << 20)	/* bytes held before drops */

struct netbuf {
	struct nl_sock *sk;
	struct rtnl_qdisc *q;
	const char *ifname;
};

/* Each change is an RTM_NEWQDISC for the same root plug qdisc. */
static int netbuf__send(struct netbuf *nb, int (*set)(struct rtnl_qdisc *),
			const char *what)
{
	int r = set(nb->q);

	if (!r)
		r = rtnl_qdisc_add(nb->sk, nb->q, NLM_F_REQUEST);
	if (r)
		warn_msg("plug qdisc on %s: %s: %s", nb->ifname, what,
			 nl_geterror(r));
	return r ? -EIO : 0;
}

struct netbuf *netbuf__open(const char *ifname)
{
	struct netbuf *nb = calloc(1, sizeof(*nb));
	struct rtnl_link *link = NULL;
	int r;

	if (!nb)
		return NULL;
	nb->ifname = ifname;
	nb->sk = nl_socket_alloc();
	if (!nb->sk || nl_connect(nb->sk, NETLINK_ROUTE)) {
		warn_msg("netlink socket: %s", nl_geterror(-NLE_FAILURE));
		return NULL;
	}
	r = rtnl_link_get_kernel(nb->sk, 0, ifname, &link);
	if (r) {
		warn_msg("interface %s: %s", ifname, nl_geterror(r));
		return NULL;
	}
	nb->q = rtnl_qdisc_alloc();
	if (!nb->q)
		return NULL;
	rtnl_tc_set_ifindex(TC_CAST(nb->q), rtnl_link_get_ifindex(link));
	rtnl_link_put(link);
	rtnl_tc_set_parent(TC_CAST(nb->q), TC_H_ROOT);
	rtnl_tc_set_handle(TC_CAST(nb->q), TC_HANDLE(0x4b4d, 0));
	r = rtnl_tc_set_kind(TC_CAST(nb->q), "plug");
	if (!r)
		r = rtnl_qdisc_plug_set_limit(nb->q, NETBUF_LIMIT);
	/* A new plug qdisc starts out holding every packet. */
	if (!r)
		r = rtnl_qdisc_add(nb->sk, nb->q, NLM_F_CREATE | NLM_F_REPLACE);
	if (r) {
		warn_msg("cannot put a plug qdisc on %s: %s", ifname,
			 nl_geterror(r));
		return NULL;
	}
	return nb;
}

int netbuf__checkpoint(struct netbuf *nb)
{
	return netbuf__send(nb, rtnl_qdisc_plug_buffer, "buffer");
}

int netbuf__release(struct netbuf *nb)
{
	return netbuf__send(nb, rtnl_qdisc_plug_release_one, "release");
}

int netbuf__release_all(struct netbuf *nb)
{
	return netbuf__send(nb, rtnl_qdisc_plug_release_indefinite,
			    "release all");
}
