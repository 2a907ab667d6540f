// SPDX-License-Identifier: GPL-2.0-only
/*
 * kemari-replicator: a reference VMM for Kemari for KVM.
 *
 *   kemari-replicator observer  --observer-port P --log FILE
 *   kemari-replicator secondary --listen ADDR --port P --psk FILE
 *                               --block FILE
 *                               [--fence CMD | --fence-file FILE]
 *                               [--peer ADDR --peer-port P]
 *   kemari-replicator primary   --peer ADDR --port P --psk FILE --block FILE
 *                               [--observer ADDR --observer-port P]
 *
 * See README.md in this directory.
 */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "replicator.h"
#include "util.h"

static void usage(void)
{
	fprintf(stderr,
		"usage: kemari-replicator primary|secondary|observer [options]\n"
		"  --peer ADDR          primary: the secondary's IPv4 address; secondary:\n"
		"                       where its own secondary waits after a takeover\n"
		"  --peer-port N        secondary: that secondary's port (default --port)\n"
		"  --rejoin MS          once unprotected, connect to --peer again every MS\n"
		"                       ms and re-protect the guest (default 1000; 0: never;\n"
		"                       a --pipelined primary: 0, not yet supported)\n"
		"  --listen ADDR        secondary: the IPv4 address to wait on (no default)\n"
		"  --port N             replication port (default 7400)\n"
		"  --psk FILE           the link's key, IDENTITY:HEXKEY, mode 0600; the\n"
		"                       same file on both nodes (README.md, \"Security\")\n"
		"  --observer ADDR      where output records go\n"
		"  --observer-port N    the observer's port (default 7401)\n"
		"  --block FILE         block device backing file\n"
		"  --log FILE           observer: record log\n"
		"  --fence CMD          secondary: exit 0 iff the primary is dead\n"
		"  --fence-file FILE    secondary: the same command, read from FILE\n"
		"                       (mode 0600, yours): for one with credentials\n"
		"  --timeout MS         heartbeat loss (default 1000)\n"
		"  --heartbeat MS       heartbeat interval (default 100)\n"
		"  --vcpus N            (default 2)\n"
		"  --mem MIB            guest memory (default 16)\n"
		"  --records N          output records per vCPU (default 100)\n"
		"  --pages N            pages dirtied per record (default 8)\n"
		"  --data-pages N       data pages per vCPU (default 256)\n"
		"  --seed N             guest seed\n"
		"  --ring N             dirty ring entries per vCPU (default 4096)\n"
		"  --quota N            Kemari dirty quota, pages per vCPU and checkpoint\n"
		"                       (default 1024; 0: none)\n"
		"  --stats MS           status line interval (0: none, default 1000)\n"
		"  --pipelined          primary: resume before the acknowledgment\n"
		"  --plug-dev IFNAME    primary: hold IFNAME's output until acknowledged\n"
		"  --event-log FILE     primary: log checkpoints and acknowledgments\n"
		"  --ack-timeout MS     primary: wait this long for an acknowledgment,\n"
		"                       then detach (default 10 x --timeout)\n"
		"  --grace MS           primary: stay stopped this long after losing the\n"
		"                       secondary, to be fenced (default and least: the\n"
		"                       secondary's timeout + fence timeout + a margin)\n"
		"  --fence-timeout MS   secondary: limit for --fence (default 10000)\n"
		"  --block-every N      a block write every N records (default 1, 0: none)\n"
		"  --harvest ring|bitmap  dirty tracking (default ring; bitmap to compare)\n"
		"  --no-tsc-log         leave KVM_KEMARI_TSC_LOG off\n"
		"  --no-kemari          bring-up on a kernel without Kemari: no sync points\n"
#ifdef KEMARI_TEST_HOOKS
		"test build (kemari-replicator-test) only:\n"
		"  --ack-delay MS       secondary: delay every acknowledgment\n"
		"  --corrupt-every N    primary: damage the first send of every Nth\n"
		"                       checkpoint on the wire\n"
		"  --plain-link         both: no TLS on the link (the bench's control;\n"
		"                       --psk is still needed, and not used)\n"
		"  SIGUSR1              primary: cut the replication link\n"
#endif
		);
	exit(1);
}

static unsigned long num(const char *s)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 0);
	if (!*s || *end || strchr(s, '-') || isspace((unsigned char)*s) ||
	    errno)
		die("not a number: %s", s);
	return v;
}

/* An option's number, refused outside [min, max] with the option named. */
static unsigned long num_in(const char *opt, const char *s, unsigned long min,
			    unsigned long max)
{
	unsigned long v = num(s);

	if (v < min || v > max)
		die("--%s %s: must be %lu to %lu", opt, s, min, max);
	return v;
}

#define MAX_MS	3600000UL	/* an hour: longer is a typo */

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "peer", 1, 0, 'p' }, { "port", 1, 0, 'P' },
		{ "observer", 1, 0, 'o' }, { "observer-port", 1, 0, 'O' },
		{ "block", 1, 0, 'b' }, { "log", 1, 0, 'l' },
		{ "fence", 1, 0, 'f' }, { "timeout", 1, 0, 't' },
		{ "heartbeat", 1, 0, 'h' }, { "vcpus", 1, 0, 'v' },
		{ "mem", 1, 0, 'm' }, { "records", 1, 0, 'r' },
		{ "pages", 1, 0, 'n' }, { "data-pages", 1, 0, 'd' },
		{ "seed", 1, 0, 's' }, { "ring", 1, 0, 'R' },
		{ "quota", 1, 0, 'q' }, { "stats", 1, 0, 'S' },
		{ "no-kemari", 0, 0, 'K' }, { "pipelined", 0, 0, 'L' },
		{ "plug-dev", 1, 0, 'D' }, { "event-log", 1, 0, 'E' },
		{ "grace", 1, 0, 'g' },
		{ "fence-timeout", 1, 0, 'F' }, { "block-every", 1, 0, 'B' },
		{ "fence-file", 1, 0, 'X' }, { "ack-timeout", 1, 0, 'W' },
		{ "harvest", 1, 0, 'H' }, { "no-tsc-log", 0, 0, 'T' },
		{ "psk", 1, 0, 'k' }, { "listen", 1, 0, 'i' },
		{ "peer-port", 1, 0, 'Q' }, { "rejoin", 1, 0, 'J' },
#ifdef KEMARI_TEST_HOOKS
		{ "ack-delay", 1, 0, 'A' }, { "corrupt-every", 1, 0, 'C' },
		{ "plain-link", 0, 0, 'N' },
#endif
		{ 0 }
	};
	struct options o = {
		.vm = { .mem_size = 16 << 20, .nr_vcpus = 2,
			.ring_entries = 4096, .dirty_quota = 1024 },
		.guest = { .magic = ABI_CONFIG_MAGIC, .records = 100,
			   .pages_per_record = 8, .data_pages = 256, .seed = 1,
			   .block_every = 1 },
		.port = 7400,
		.observer_port = 7401,
		.block = "kemari-block.img",
		.log = "kemari-observer.log",
		.timeout_ms = 1000,
		.heartbeat_ms = 100,
		.stats_ms = 1000,
		.grace_ms = -1,
		.fence_timeout_ms = 10000,
		.rejoin_ms = -1,
	};
	const char *mode;
	char why[256];
	int c;

	if (argc < 2)
		usage();
	mode = argv[1];
	optind = 2;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'p':
			o.peer = optarg;
			break;
		case 'P':
			o.port = num_in("port", optarg, 1, 65535);
			break;
		case 'o':
			o.observer = optarg;
			break;
		case 'O':
			o.observer_port = num_in("observer-port", optarg, 1, 65535);
			break;
		case 'b':
			o.block = optarg;
			break;
		case 'l':
			o.log = optarg;
			break;
		case 'f':
			o.fence = optarg;
			break;
		case 't':
			o.timeout_ms = num_in("timeout", optarg, 1, MAX_MS);
			break;
		case 'h':
			o.heartbeat_ms = num_in("heartbeat", optarg, 1, MAX_MS);
			break;
		case 'v':
			o.vm.nr_vcpus = num(optarg);
			break;
		case 'm':
			o.vm.mem_size = num(optarg) << 20;
			break;
		case 'r':
			o.guest.records = num(optarg);
			break;
		case 'n':
			o.guest.pages_per_record = num(optarg);
			break;
		case 'd':
			o.guest.data_pages = num(optarg);
			break;
		case 's':
			o.guest.seed = num(optarg);
			break;
		case 'R':
			o.vm.ring_entries = num(optarg);
			break;
		case 'q':
			o.vm.dirty_quota = num(optarg);
			break;
		case 'S':
			o.stats_ms = num(optarg);
			break;
		case 'K':
			o.vm.no_kemari = true;
			break;
		case 'L':
			o.pipelined = true;
			break;
		case 'D':
			o.plug_dev = optarg;
			break;
		case 'E':
			o.event_log = optarg;
			break;
		case 'W':
			o.ack_timeout_ms = num_in("ack-timeout", optarg, 1, MAX_MS);
			break;
		case 'g':
			o.grace_ms = num_in("grace", optarg, 0, MAX_MS);
			break;
		case 'X':
			o.fence_file = optarg;
			break;
		case 'F':
			o.fence_timeout_ms = num_in("fence-timeout", optarg, 1, MAX_MS);
			break;
		case 'B':
			o.guest.block_every = num(optarg);
			break;
		case 'T':
			o.vm.no_tsc_log = true;
			break;
		case 'k':
			o.psk = optarg;
			break;
		case 'i':
			o.listen = optarg;
			break;
		case 'Q':
			o.peer_port = num_in("peer-port", optarg, 1, 65535);
			break;
		case 'J':
			o.rejoin_ms = num_in("rejoin", optarg, 0, MAX_MS);
			break;
		case 'H':
			if (strcmp(optarg, "ring") && strcmp(optarg, "bitmap"))
				die("--harvest is ring or bitmap");
			o.vm.harvest_bitmap = !strcmp(optarg, "bitmap");
			break;
#ifdef KEMARI_TEST_HOOKS
		case 'N':
			o.plain_link = true;
			break;
		case 'A':
			o.ack_delay_ms = num_in("ack-delay", optarg, 0, MAX_MS);
			break;
		case 'C':
			o.corrupt_every = num(optarg);
			break;
#endif
		default:
			usage();
		}
	}
	if (optind != argc)
		usage();
	if (!o.vm.nr_vcpus || o.vm.nr_vcpus > MAX_VCPUS)
		die("--vcpus must be 1 to %d", MAX_VCPUS);
	if (!o.guest.data_pages)
		die("--data-pages must not be 0");
	if (o.heartbeat_ms * 3 > o.timeout_ms)
		die("--heartbeat %d ms is not well below --timeout %d ms: at most a third of it, so that one late heartbeat is not a dead primary",
		    o.heartbeat_ms, o.timeout_ms);
	if ((!strcmp(mode, "secondary") || o.peer) && !o.psk)
		die("--psk FILE is needed: the replication link carries all guest memory, and is never open (README.md, \"Security\")");
	if (!strcmp(mode, "secondary") && !o.listen)
		die("--listen ADDR is needed: the secondary waits on one address, never on all");
	if (o.psk && tls__load_psk(o.psk, &o.key, why, sizeof(why)))
		die("--psk: %s", why);
	if (o.vm.ring_entries < 64 || o.vm.ring_entries & (o.vm.ring_entries - 1))
		die("--ring must be a power of two, at least 64");
	if (o.vm.harvest_bitmap)
		o.vm.dirty_quota = 0;	/* it counts ring entries */
	if (o.vm.dirty_quota >= o.vm.ring_entries - 64)
		die("--quota must be below the ring's soft limit (--ring less 64)");
	if (o.plug_dev && !o.pipelined)
		die("--plug-dev holds output until an acknowledgment: it needs --pipelined");
	if (!o.ack_timeout_ms)
		o.ack_timeout_ms = 10 * o.timeout_ms;
	if (o.peer_port && strcmp(mode, "secondary"))
		die("--peer-port is a secondary's: a primary's secondary listens on --port");
	if (o.peer_port && !o.peer)
		die("--peer-port needs --peer, the address of this secondary's own secondary");
	if (o.pipelined && o.rejoin_ms > 0)
		die("--rejoin with --pipelined: re-protection of a pipelined primary is not supported yet (give --rejoin 0, or leave it out)");
	if (o.rejoin_ms < 0)
		o.rejoin_ms = o.pipelined ? 0 : 1000;
	if (o.fence && o.fence_file)
		die("--fence and --fence-file: give one fencing command");
	if (o.fence_file)
		o.fence = secondary__read_fence_file(o.fence_file);
	o.guest.nr_vcpus = o.vm.nr_vcpus;

	/*
	 * OpenSSL writes to the link's socket with write(): a peer that has
	 * gone must be an error to handle (EPIPE), not a signal that kills.
	 */
	signal(SIGPIPE, SIG_IGN);
	/*
	 * SIGUSR1 is logrotate's "reopen your logs"; the replicator logs to
	 * stderr and has nothing to reopen, and the signal must end neither
	 * end of a protected pair.
	 */
	signal(SIGUSR1, SIG_IGN);
	if (!strcmp(mode, "primary"))
		return primary__main(&o);
	if (!strcmp(mode, "secondary"))
		return secondary__main(&o);
	if (!strcmp(mode, "observer"))
		return observer__main(&o);
	usage();
}
