// SPDX-License-Identifier: GPL-2.0-only
/*
 * kemari-ft-test: the replicator's tests, TAP output.
 *
 *   checks       one damaged checkpoint for each reason the secondary
 *                refuses one, refused with that reason (test/fuzz.c)
 *   fuzz         corrupt and truncated checkpoints, each refused whole,
 *                the replica unchanged and still able to apply the next
 *   shadow       state only KVM can check, loaded into the secondary's
 *                shadow VM before the ack, and the hosts' CPUID and TSC
 *                rate agreed in the handshake (test/shadow.c)
 *   failover     observer, secondary and primary; the primary is killed
 *                with SIGKILL at a random point and the secondary must
 *                take over: no gap in the output, at most the last record
 *                replayed, the guest's self-checks and TSC check pass, the
 *                block device holds what the guest wrote
 *   split_brain  the link is cut while both live: no fencing -> refusal,
 *                a fence that kills the primary -> takeover, a fence
 *                that fails -> refusal; a fence read from a file that
 *                others may read is refused at start-up, and a fence that
 *                forks and overruns --fence-timeout is killed with all
 *                its children, after it was told whom, what and why
 *   pipelined    the primary in a network namespace, its output through
 *                a veth with a plug qdisc, acknowledgments delayed, every
 *                7th checkpoint damaged once (refused, sent again): no
 *                record reaches the observer before the checkpoint that
 *                covers it is acknowledged; and without the plug (the
 *                control) records do arrive early, so the check can fail
 *   observer_outage  the primary is cut off from the observer (its output
 *                veth goes down), then killed: the secondary delivers
 *                what the primary could not, and the observer has every
 *                record
 *
 * Usage: kemari-ft-test [-s SEED] [-n FAILOVER_ROUNDS] [-f FUZZ_CASES]
 *                       [test...]
 *        kemari-ft-test corpus DIR   (seeds for scripts/run-fuzz.sh)
 * The seed is printed; -s reproduces a run.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <netlink/netlink.h>
#include <netlink/route/link.h>
#include <netlink/route/link/veth.h>
#include <sched.h>

#include "ckpt.h"
#include "test/ft.h"
#include "util.h"
#include "wire.h"

static unsigned int test_nr, failed;
static uint64_t rng_state;
char exe[PATH_MAX], exe_hooks[PATH_MAX + 8], dir[64], psk_file[PATH_MAX];
bool spawn_bare;

uint64_t rnd(void)
{
	return abi_rng(&rng_state);
}

void tap(bool ok, const char *fmt, ...)
{
	va_list ap;

	printf("%s %u - ", ok ? "ok" : "not ok", ++test_nr);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
	failed += !ok;
}

/* A case that cannot run here: "ok", marked SKIP with its reason. */
void tap_skip(const char *what, const char *reason)
{
	printf("ok %u - %s # SKIP %s\n", ++test_nr, what, reason);
	fflush(stdout);
}

void diag(const char *fmt, ...)
{
	va_list ap;

	printf("# ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
}

/* ----------------------------------------------------------- processes */

struct run {
	pid_t observer, secondary, primary;
	char log[PATH_MAX], sec_err[PATH_MAX], pri_err[PATH_MAX];
	int port;
	int records;		/* per vCPU: RECORDS unless a test sets it */
};

/*
 * Start argv with its output in the file out, or on ours if out is NULL.
 * A secondary, and a primary with a peer, get the pair's key (--psk
 * psk_file) and a secondary --listen 127.0.0.1, unless argv gives its
 * own or spawn_bare is set.
 */
pid_t spawn(const char *out, char *const argv[])
{
	bool sec = argv[1] && !strcmp(argv[1], "secondary");
	bool psk = false, listen = false, peer = false;
	char *args[64];
	unsigned int n;
	pid_t pid;

	for (n = 0; argv[n] && n < 59; n++) {
		args[n] = argv[n];
		psk |= !strcmp(argv[n], "--psk");
		listen |= !strcmp(argv[n], "--listen");
		peer |= !strcmp(argv[n], "--peer");
	}
	if (sec && !listen && !spawn_bare) {
		args[n++] = "--listen";
		args[n++] = "127.0.0.1";
	}
	if ((sec || peer) && !psk && !spawn_bare) {
		args[n++] = "--psk";
		args[n++] = psk_file;
	}
	args[n] = NULL;
	pid = fork();
	if (pid == 0) {
		if (out) {
			int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);

			dup2(fd, 1);
			dup2(fd, 2);
		}
		execv(args[0], args);
		_exit(127);
	}
	return pid;
}

static unsigned int lines(const char *path)
{
	FILE *f = fopen(path, "r");
	unsigned int n = 0;
	int c;

	if (!f)
		return 0;
	while ((c = fgetc(f)) != EOF)
		n += c == '\n';
	fclose(f);
	return n;
}

bool file_has(const char *path, const char *needle)
{
	char line[1024];
	bool found = false;
	FILE *f = fopen(path, "r");

	if (!f)
		return false;
	while (!found && fgets(line, sizeof(line), f))
		found = strstr(line, needle);
	fclose(f);
	return found;
}

void dump(const char *path)
{
	char line[1024];
	FILE *f = fopen(path, "r");

	if (!f)
		return;
	while (fgets(line, sizeof(line), f))
		printf("#   %s", line);
	fclose(f);
}

/* Wait for pid up to secs; SIGKILL it after that.  Returns the status. */
int reap(pid_t pid, int secs)
{
	int status, i;

	for (i = 0; i < secs * 20; i++) {
		if (waitpid(pid, &status, WNOHANG) == pid)
			return status;
		usleep(50000);
	}
	kill(pid, SIGKILL);
	waitpid(pid, &status, 0);
	return -1;
}

#define RECORDS		40
#define NR_VCPUS	2

/* The fencing command that kills the primary and waits until it is gone. */
#define STONITH "kill -9 %d; while kill -0 %d 2>/dev/null && " \
		"[ \"$(cut -d' ' -f3 /proc/%d/stat)\" != Z ]; do sleep 0.05; done"

/* ----------------------------------------------------------- pipelined */

static int veth_add(const char *name, const char *peer, pid_t pid)
{
	struct nl_sock *sk = nl_socket_alloc();
	int r;

	if (!sk || nl_connect(sk, NETLINK_ROUTE))
		return -1;
	r = rtnl_link_veth_add(sk, name, peer, pid);
	if (r)
		diag("veth %s/%s: %s", name, peer, nl_geterror(r));
	nl_socket_free(sk);
	return r;
}

/*
 * Start the primary in a network namespace of its own, reachable through
 * two veth pairs: 10.77.n/24 carries its output to the observer (and has
 * the plug), 10.78.n/24 the replication link.  Pipelined, with its event
 * log in events; synchronous if events is NULL.
 */
static pid_t pipelined__primary(const struct run *run, bool plug,
				const char *events, unsigned int n,
				const char *corrupt)
{
	char port[16], oport[16], records[16], odev[16], rdev[16], cmd[512];
	char ohost[32], rhost[32], plugdev[24], blk[80];
	int ready[2], go[2];
	pid_t pid;
	char c = 0;

	snprintf(port, sizeof(port), "%d", run->port);
	snprintf(oport, sizeof(oport), "%d", run->port + 1);
	snprintf(records, sizeof(records), "%d", RECORDS);
	snprintf(odev, sizeof(odev), "kpo%u", n);
	snprintf(rdev, sizeof(rdev), "kpr%u", n);
	snprintf(ohost, sizeof(ohost), "10.77.%u.1", n);
	snprintf(rhost, sizeof(rhost), "10.78.%u.1", n);
	snprintf(plugdev, sizeof(plugdev), "%sb", odev);	/* its end */
	snprintf(blk, sizeof(blk), "%s/primary.img", dir);
	unlink(run->pri_err);
	if (pipe(ready) || pipe(go))
		die("pipe: %m");
	pid = fork();
	if (pid == 0) {
		char *argv[32] = { exe_hooks, "primary", "--peer", rhost, "--port",
				   port, "--block", blk, "--observer", ohost,
				   "--observer-port", oport, "--records", records,
				   "--stats", "0", "--psk", psk_file };
		unsigned int a = 18;

		if (events) {
			argv[a++] = "--pipelined";
			argv[a++] = "--event-log";
			argv[a++] = (char *)events;
		}
		if (plug) {
			argv[a++] = "--plug-dev";
			argv[a++] = plugdev;
		}
		if (corrupt) {
			argv[a++] = "--corrupt-every";
			argv[a++] = (char *)corrupt;
		}
		int fd = open(run->pri_err, O_WRONLY | O_CREAT | O_TRUNC, 0644);

		dup2(fd, 1);
		dup2(fd, 2);
		if (unshare(CLONE_NEWNET) || write(ready[1], &c, 1) != 1 ||
		    read(go[0], &c, 1) != 1)
			_exit(126);
		snprintf(cmd, sizeof(cmd),
			 "ip link set lo up && ip addr add 10.77.%u.2/24 dev %sb && ip link set %sb up && ip addr add 10.78.%u.2/24 dev %sb && ip link set %sb up",
			 n, odev, odev, n, rdev, rdev);
		if (system(cmd))
			_exit(125);
		execv(exe_hooks, argv);
		_exit(127);
	}
	if (read(ready[0], &c, 1) != 1)
		return pid;
	snprintf(cmd, sizeof(cmd), "%sb", odev);
	veth_add(odev, cmd, pid);
	snprintf(cmd, sizeof(cmd), "%sb", rdev);
	veth_add(rdev, cmd, pid);
	snprintf(cmd, sizeof(cmd),
		 "ip addr add %s/24 dev %s && ip link set %s up && ip addr add %s/24 dev %s && ip link set %s up",
		 ohost, odev, odev, rhost, rdev, rdev);
	if (system(cmd))
		diag("setting up %s and %s failed", odev, rdev);
	if (write(go[1], &c, 1) != 1)
		die("pipe: %m");
	close(ready[0]);
	close(ready[1]);
	close(go[0]);
	close(go[1]);
	return pid;
}

/*
 * A run's files and ports, and its observer: the replication link on
 * port, the observer on port + 1.
 */
static void run__observer(struct run *run, int port)
{
	char oport[16], out[PATH_MAX];
	char *argv[] = { exe_hooks, "observer", "--observer-port", oport,
			 "--log", run->log, "--stats", "0", NULL };

	memset(run, 0, sizeof(*run));
	run->port = port;
	run->records = RECORDS;
	snprintf(oport, sizeof(oport), "%d", port + 1);
	snprintf(run->log, sizeof(run->log), "%s/observer.log", dir);
	snprintf(run->sec_err, sizeof(run->sec_err), "%s/secondary.out", dir);
	snprintf(run->pri_err, sizeof(run->pri_err), "%s/primary.out", dir);
	snprintf(out, sizeof(out), "%s/observer.out", dir);
	unlink(run->log);
	run->observer = spawn(out, argv);
}

/* If set, the secondary reads its fencing command from this file. */
static const char *fence_file;

static void run__start(struct run *run, unsigned int round,
		       const char *fence_fmt, uint64_t seed, bool pipelined,
		       const char *corrupt)
{
	char port[16], oport[16], sseed[32], blk[PATH_MAX], sblk[PATH_MAX];
	char records[16], fence[512], listen[32];

	run__observer(run, 7600 + (round % 100) * 2);
	snprintf(port, sizeof(port), "%d", run->port);
	snprintf(oport, sizeof(oport), "%d", run->port + 1);
	snprintf(sseed, sizeof(sseed), "%llu", (unsigned long long)seed);
	snprintf(records, sizeof(records), "%d", RECORDS);
	snprintf(blk, sizeof(blk), "%s/primary.img", dir);
	snprintf(sblk, sizeof(sblk), "%s/secondary.img", dir);

	/* The primary retries its connection to the secondary. */
	usleep(100000);
	if (pipelined) {
		run->primary = pipelined__primary(run, true, "/dev/null",
						  round % 100, corrupt);
	} else {
		char *argv[] = { exe_hooks, "primary", "--peer", "127.0.0.1",
				 "--port", port, "--block", blk,
				 "--observer", "127.0.0.1", "--observer-port",
				 oport, "--records", records, "--seed", sseed,
				 "--stats", "0", corrupt ? "--corrupt-every" : NULL,
				 (char *)corrupt, NULL };

		run->primary = spawn(run->pri_err, argv);
	}
	{
		char *argv[24] = { exe_hooks, "secondary", "--port", port,
				   "--block", sblk, "--observer", "127.0.0.1",
				   "--observer-port", oport, "--records", records,
				   "--timeout", "1000", "--stats", "0" };
		int n = 16;

		snprintf(fence, sizeof(fence), fence_fmt ? fence_fmt : "",
			 run->primary, run->primary, run->primary);
		if (fence_fmt) {
			argv[n++] = "--fence";
			argv[n++] = fence;
		}
		if (fence_file) {
			argv[n++] = "--fence-file";
			argv[n++] = (char *)fence_file;
		}
		argv[n++] = "--fence-timeout";
		argv[n++] = fence_file ? "1500" : "2000";
		/* The pipelined primary runs in its own namespace. */
		snprintf(listen, sizeof(listen), "10.78.%u.1", round % 100);
		if (pipelined) {
			argv[n++] = "--listen";
			argv[n++] = listen;
		}
		run->secondary = spawn(run->sec_err, argv);
	}
}

/* Every vCPU's stream reached its last record. */
static bool all_records(const long long last[], int records, char *why,
			size_t whylen)
{
	unsigned int v;

	for (v = 0; v < NR_VCPUS; v++) {
		if (last[v] != records - 1) {
			snprintf(why, whylen, "vcpu %u: last record %lld of %d",
				 v, last[v], records);
			return false;
		}
	}
	return true;
}

/*
 * The observer's log: per vCPU, each record is the previous one's
 * successor or, at most max_dups times, the previous one again; the TSC
 * the guest reported never goes back; all RECORDS arrive.
 */
static bool run__check_stream(const struct run *run, unsigned int max_dups,
			      unsigned int *dups_out, char *why, size_t whylen)
{
	long long last[MAX_VCPUS];
	unsigned long long seq, t, arr, tsc[MAX_VCPUS] = { 0 };
	unsigned int dups[MAX_VCPUS] = { 0 }, v, conn;
	bool ok = true;
	FILE *f = fopen(run->log, "r");

	for (v = 0; v < MAX_VCPUS; v++)
		last[v] = -1;
	if (!f) {
		snprintf(why, whylen, "no observer log");
		return false;
	}
	while (ok && fscanf(f, "%u %llu %u %llu %llu", &v, &seq, &conn, &t,
			    &arr) == 5) {
		if (v >= NR_VCPUS) {
			snprintf(why, whylen, "record from vcpu %u", v);
			ok = false;
		} else if ((long long)seq == last[v] && ++dups[v] > max_dups) {
			snprintf(why, whylen, "vcpu %u: seq %llu replayed more than %u time(s)",
				 v, seq, max_dups);
			ok = false;
		} else if ((long long)seq != last[v] &&
			   (long long)seq != last[v] + 1) {
			snprintf(why, whylen, "vcpu %u: seq %llu after %lld (gap or reorder)",
				 v, seq, last[v]);
			ok = false;
		} else if (t < tsc[v]) {
			snprintf(why, whylen, "vcpu %u: guest TSC went back at seq %llu",
				 v, seq);
			ok = false;
		} else {
			tsc[v] = t;
			last[v] = seq;
		}
	}
	fclose(f);
	*dups_out = dups[0] + dups[1];
	return ok && all_records(last, run->records, why, whylen);
}

static void run__stop_observer(struct run *run)
{
	usleep(300000);		/* let the last records land */
	kill(run->observer, SIGTERM);
	reap(run->observer, 5);
}

/* Wait until the observer has n records, or the primary has exited. */
static bool run__wait_records(struct run *run, unsigned int n, int secs)
{
	int i, status;

	for (i = 0; i < secs * 100; i++) {
		if (lines(run->log) >= n)
			return true;
		if (waitpid(run->primary, &status, WNOHANG) == run->primary) {
			run->primary = 0;
			return false;
		}
		usleep(10000);
	}
	return false;
}

static void run__dump(const struct run *run)
{
	diag("secondary said:");
	dump(run->sec_err);
	diag("primary said:");
	dump(run->pri_err);
}

/* The secondary's takeover line: checkpoint, pending writes, time. */
static double takeover_ms(const struct run *run, char *what, size_t len)
{
	char line[1024], *p;
	double ms = -1;
	FILE *f = fopen(run->sec_err, "r");

	snprintf(what, len, "no takeover");
	while (f && fgets(line, sizeof(line), f)) {
		p = strstr(line, "takeover: resuming ");
		if (!p)
			continue;
		p += strlen("takeover: resuming ");
		snprintf(what, len, "%.*s", (int)strcspn(p, ","), p);
		p = strstr(p, "sent again, ");
		if (p)
			ms = atof(p + strlen("sent again, "));
	}
	if (f)
		fclose(f);
	return ms;
}

bool exited(int status, int code)
{
	return status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == code;
}

static void test_failover(unsigned int rounds, uint64_t seed)
{
	unsigned int round;

	for (round = 0; round < rounds; round++) {
		/*
		 * Every fourth round pipelined, and every fourth with every
		 * 5th checkpoint damaged on the wire once (refused, sent
		 * again); the kill comes before the last records.
		 */
		bool pipelined = round % 4 == 3;
		const char *corrupt = round % 4 == 1 || round % 8 == 7 ?
				      "5" : NULL;
		unsigned int at = 1 + rnd() % (NR_VCPUS * RECORDS - 10), dups = 0;
		unsigned int delay_us = rnd() % 20000;
		char why[256] = "", what[160];
		struct run run;
		int st_sec;
		bool ok, took_over;
		double ms;

		run__start(&run, round, STONITH, seed + round, pipelined,
			   corrupt);
		if (run__wait_records(&run, at, 300)) {
			usleep(delay_us);
			kill(run.primary, SIGKILL);
			reap(run.primary, 10);
			run.primary = 0;
		}
		st_sec = reap(run.secondary, 300);
		if (run.primary)
			reap(run.primary, 10);
		run__stop_observer(&run);

		took_over = file_has(run.sec_err, "takeover:");
		ok = exited(st_sec, 0) && took_over &&
		     file_has(run.sec_err, "verify: ok") &&
		     run__check_stream(&run, 1, &dups, why, sizeof(why));
		if (!ok && took_over && !*why && !file_has(run.sec_err, "verify: ok"))
			snprintf(why, sizeof(why), "the guest's checks failed after the takeover");
		if (ok && corrupt && at > 10 &&
		    !file_has(run.sec_err, "refused: payload checksum mismatch")) {
			snprintf(why, sizeof(why), "no damaged checkpoint was refused");
			ok = false;
		}
		if (!took_over)
			snprintf(why, sizeof(why), "no takeover");
		ms = takeover_ms(&run, what, sizeof(what));
		tap(ok, "failover %u%s%s: guest seed %llu, primary killed after %u records + %u us; %s, %.1f ms after the primary's last message; %u replayed%s%s",
		    round + 1, pipelined ? " (pipelined, output in a plug qdisc)" : "",
		    corrupt ? " (every 5th checkpoint damaged once)" : "",
		    (unsigned long long)(seed + round), at, delay_us, what, ms,
		    dups, *why ? "; " : "", why);
		if (!ok)
			run__dump(&run);
	}
}

/*
 * The observer's log, each record counted at its first arrival (a
 * takeover may send again records that had arrived): per vCPU every
 * record arrives, and first arrivals are in order.
 */
static bool run__check_first_arrivals(const struct run *run, char *why,
				      size_t whylen)
{
	static bool seen[NR_VCPUS][RECORDS];
	long long last[NR_VCPUS] = { -1, -1 };
	unsigned long long seq, t, arr;
	unsigned int v, conn;
	bool ok = true;
	FILE *f = fopen(run->log, "r");

	if (!f) {
		snprintf(why, whylen, "no observer log");
		return false;
	}
	memset(seen, 0, sizeof(seen));
	while (ok && fscanf(f, "%u %llu %u %llu %llu", &v, &seq, &conn, &t,
			    &arr) == 5) {
		if (v >= NR_VCPUS || seq >= RECORDS) {
			snprintf(why, whylen, "record vcpu %u seq %llu", v, seq);
			ok = false;
		} else if (!seen[v][seq] && (long long)seq != last[v] + 1) {
			snprintf(why, whylen, "vcpu %u: seq %llu first arrived after %lld (gap or reorder)",
				 v, seq, last[v]);
			ok = false;
		} else if (!seen[v][seq]) {
			seen[v][seq] = true;
			last[v] = seq;
		}
	}
	fclose(f);
	return ok && all_records(last, run->records, why, whylen);
}

/*
 * The primary loses its way to the observer while it runs (its output
 * veth goes down: a network partition; the observer itself lives on, so
 * nothing it acknowledged is lost), then dies.  The primary must say that
 * its output is not acknowledged and keep the records in its checkpoints;
 * the secondary, which reaches the observer, must deliver them: the log
 * holds every record, first arrivals in order.
 */
static void test_observer_outage(void)
{
	char why[256] = "", what[160], cmd[64];
	/* Its own veth names: an earlier run's may still be going away. */
	unsigned int n = 100 + getpid() % 150;
	struct run run;
	bool ok, started, noticed = false;
	int st_sec, i;
	double ms;

	run__observer(&run, 7900);
	{
		char port[16], oport[16], records[16], sblk[PATH_MAX];
		char fence[512], listen[32];
		char *argv[] = { exe_hooks, "secondary", "--port", port, "--block",
				 sblk, "--observer", "127.0.0.1",
				 "--observer-port", oport, "--records", records,
				 "--timeout", "1000", "--stats", "0", "--fence",
				 fence, "--listen", listen, NULL };

		snprintf(listen, sizeof(listen), "10.78.%u.1", n);
		snprintf(port, sizeof(port), "%d", run.port);
		snprintf(oport, sizeof(oport), "%d", run.port + 1);
		snprintf(records, sizeof(records), "%d", RECORDS);
		snprintf(sblk, sizeof(sblk), "%s/secondary.img", dir);
		/* The primary retries its connection to the secondary. */
		usleep(100000);
		run.primary = pipelined__primary(&run, false, NULL, n, NULL);
		snprintf(fence, sizeof(fence), STONITH, run.primary,
			 run.primary, run.primary);
		run.secondary = spawn(run.sec_err, argv);
	}
	started = run__wait_records(&run, 10, 300);
	if (!started) {
		snprintf(why, sizeof(why), "the primary did not get going");
		kill(run.secondary, SIGKILL);
	}
	snprintf(cmd, sizeof(cmd), "ip link set kpo%u down", n);
	if (started && system(cmd))
		diag("%s failed", cmd);
	for (i = 0; started && !noticed && i < 3000; i++) {
		noticed = file_has(run.pri_err, "has not acknowledged");
		usleep(10000);
	}
	/* 0: it has exited (run__wait_records), and kill(0) is our group. */
	if (run.primary > 0) {
		kill(run.primary, SIGKILL);
		reap(run.primary, 10);
	}
	run.primary = 0;
	st_sec = reap(run.secondary, 300);
	run__stop_observer(&run);

	ok = started && noticed && exited(st_sec, 0) &&
	     file_has(run.sec_err, "takeover:") &&
	     file_has(run.sec_err, "verify: ok") &&
	     run__check_first_arrivals(&run, why, sizeof(why));
	if (started && !noticed)
		snprintf(why, sizeof(why), "the primary did not notice that its output was not acknowledged");
	ms = takeover_ms(&run, what, sizeof(what));
	tap(ok, "observer outage: the primary cut off from the observer, then killed; %s, %.1f ms after the primary's last message; the observer has every record%s%s",
	    what, ms, *why ? "; " : "", why);
	if (!ok)
		run__dump(&run);
}

/*
 * Re-protection, three generations deep: the primary is killed and its
 * secondary takes over; a fresh secondary joins the new primary, gets a
 * full checkpoint (all memory, the whole disk) and takes over in turn when
 * that one is killed; and once more.  The last node that took over is
 * joined by a fourth secondary and finishes the guest: that secondary
 * must stand down (MSG_BYE), not take a finished guest over.  The
 * observer's stream must have no gap (at most one replayed record per
 * vCPU and takeover), and the last node's guest must finish with its
 * checks passed and its disk as the guest wrote it, a disk that reached
 * it only through full and incremental checkpoints.  Product binaries
 * only.  Each secondary starts before its primary's predecessor is
 * killed, and waits.
 */
#define GENERATIONS	3
#define NODES		(GENERATIONS + 2)
#define REJOIN_RECORDS	200

static bool wait_file_has(const char *path, const char *needle, int secs)
{
	int i;

	for (i = 0; i < secs * 20; i++) {
		if (file_has(path, needle))
			return true;
		usleep(50000);
	}
	return false;
}

/* Node g >= 1: a secondary on port[g - 1] that fences node g - 1. */
static pid_t reprotect__node(unsigned int g, char port[][16],
			     char blk[][PATH_MAX], char out[][PATH_MAX],
			     char *fence, pid_t prev, char *oport,
			     char *records)
{
	char *argv[32] = { exe, "secondary", "--port", port[g - 1],
			   "--block", blk[g], "--observer", "127.0.0.1",
			   "--observer-port", oport, "--records", records,
			   "--timeout", "1000", "--stats", "0", "--fence", fence,
			   "--fence-timeout", "2000" };
	unsigned int a = 20;

	snprintf(fence, 512, STONITH, prev, prev, prev);
	if (g < NODES - 1) {
		argv[a++] = "--peer";
		argv[a++] = "127.0.0.1";
		argv[a++] = "--peer-port";
		argv[a++] = port[g];
		argv[a++] = "--rejoin";
		argv[a++] = "200";
	}
	return spawn(out[g], argv);
}

static void test_reprotect(uint64_t seed)
{
	char port[NODES][16], blk[NODES][PATH_MAX], out[NODES][PATH_MAX];
	char fence[NODES][512], oport[16], records[16], sseed[32];
	char why[256] = "";
	pid_t pid[NODES] = { 0 };
	unsigned int g, dups = 0, n;
	int st = -1, st_last = -1;
	struct run run;
	bool ok = true;

	run__observer(&run, 7940);
	run.records = REJOIN_RECORDS;
	snprintf(oport, sizeof(oport), "%d", run.port + 1);
	snprintf(records, sizeof(records), "%d", REJOIN_RECORDS);
	snprintf(sseed, sizeof(sseed), "%llu", (unsigned long long)seed);
	for (g = 0; g < NODES; g++) {
		snprintf(port[g], sizeof(port[g]), "%d", run.port + 2 + g);
		snprintf(blk[g], sizeof(blk[g]), "%s/gen%u.img", dir, g);
		snprintf(out[g], sizeof(out[g]), "%s/gen%u.out", dir, g);
	}
	usleep(100000);
	{
		char *argv[] = { exe, "primary", "--peer", "127.0.0.1",
				 "--port", port[0], "--block", blk[0],
				 "--observer", "127.0.0.1", "--observer-port",
				 oport, "--records", records, "--seed", sseed,
				 "--stats", "0", NULL };

		pid[0] = spawn(out[0], argv);
	}
	pid[1] = reprotect__node(1, port, blk, out, fence[1], pid[0], oport,
				 records);
	for (g = 1; ok && g <= GENERATIONS; g++) {
		/* Node g - 1 runs protected by node g. */
		if (!wait_file_has(out[g - 1], "running protected", 120)) {
			snprintf(why, sizeof(why), "node %u was not protected by node %u",
				 g - 1, g);
			ok = false;
			break;
		}
		/* Node g + 1 waits for node g to take over. */
		pid[g + 1] = reprotect__node(g + 1, port, blk, out, fence[g + 1],
					     pid[g], oport, records);
		/* Some output while protected, then the kill. */
		n = lines(run.log) + 10;
		run.primary = pid[g - 1];
		if (!run__wait_records(&run, n, 120)) {
			snprintf(why, sizeof(why), "node %u ended before its kill (the guest ran out of records?)",
				 g - 1);
			ok = false;
			break;
		}
		kill(pid[g - 1], SIGKILL);
		reap(pid[g - 1], 10);
		pid[g - 1] = 0;
		if (!wait_file_has(out[g], "takeover: resuming", 60)) {
			snprintf(why, sizeof(why), "node %u did not take over", g);
			ok = false;
		}
	}
	/* The last node that took over, protected, finishes the guest. */
	if (ok && !wait_file_has(out[GENERATIONS], "running protected", 120)) {
		snprintf(why, sizeof(why), "node %u was not protected by node %u",
			 GENERATIONS, GENERATIONS + 1);
		ok = false;
	}
	if (ok) {
		st = reap(pid[GENERATIONS], 300);
		st_last = reap(pid[GENERATIONS + 1], 60);
		pid[GENERATIONS] = pid[GENERATIONS + 1] = 0;
	}
	for (g = 0; g < NODES; g++)
		if (pid[g] > 0) {
			kill(pid[g], SIGKILL);
			reap(pid[g], 5);
		}
	run__stop_observer(&run);
	if (ok && !(exited(st, 0) && file_has(out[GENERATIONS], "verify: ok"))) {
		snprintf(why, sizeof(why), "the last node's guest did not finish well (status %#x)",
			 st);
		ok = false;
	}
	if (ok && !(exited(st_last, 0) &&
		    file_has(out[GENERATIONS + 1], "the primary finished the guest") &&
		    !file_has(out[GENERATIONS + 1], "takeover:"))) {
		snprintf(why, sizeof(why), "the last node's secondary did not stand down when the guest finished (status %#x)",
			 st_last);
		ok = false;
	}
	ok = ok && run__check_stream(&run, GENERATIONS, &dups, why,
				     sizeof(why));
	tap(ok, "re-protection, %d generations: guest seed %llu, each node killed once protected by a fresh secondary; the last finished, and its secondary stood down; %u record(s) replayed%s%s",
	    GENERATIONS, (unsigned long long)seed, dups, *why ? "; " : "",
	    why);
	if (!ok) {
		for (g = 0; g < NODES; g++) {
			diag("node %u said:", g);
			dump(out[g]);
		}
	}
}

/*
 * How a broken link ended: the secondary fenced the primary and took over
 * (takeover; the primary was killed, at most one record a vCPU replayed),
 * or it refused and the primary ran on unprotected to a verified end (no
 * replay).  Either way the observer's stream is whole.
 */
static bool run__outcome(const struct run *run, bool takeover, int st_sec,
			 int st_pri, char *why, size_t whylen)
{
	unsigned int dups = 0;

	if (takeover)
		return exited(st_sec, 0) && file_has(run->sec_err, "takeover:") &&
		       file_has(run->sec_err, "verify: ok") &&
		       st_pri != -1 && WIFSIGNALED(st_pri) &&
		       run__check_stream(run, 1, &dups, why, whylen);
	return exited(st_sec, 3) &&
	       file_has(run->sec_err, "refusing to take over") &&
	       exited(st_pri, 0) && file_has(run->pri_err, "UNPROTECTED") &&
	       file_has(run->pri_err, "verify: ok") &&
	       run__check_stream(run, 0, &dups, why, whylen);
}

/*
 * The link breaks while both ends live (SIGUSR1 makes the primary cut it).
 * fence: NULL (none), STONITH, or a command that fails.
 */
static void split_brain(const char *name, const char *fence, bool takeover)
{
	char why[256] = "";
	struct run run;
	int st_sec, st_pri;
	bool ok;

	run__start(&run, 90 + test_nr, fence, rnd(), false, NULL);
	if (!run__wait_records(&run, 10, 300)) {
		tap(false, "split brain, %s: the primary stopped early", name);
		run__dump(&run);
		return;
	}
	kill(run.primary, SIGUSR1);
	st_sec = reap(run.secondary, 300);
	st_pri = reap(run.primary, 300);
	run__stop_observer(&run);

	ok = run__outcome(&run, takeover, st_sec, st_pri, why, sizeof(why));
	tap(ok, "split brain, %s: %s%s%s", name,
	    takeover ? "secondary fenced the primary and took over" :
		       "secondary refused, primary ran on unprotected",
	    *why ? "; " : "", why);
	if (!ok)
		run__dump(&run);
}

/*
 * Records from the observer's first source (the primary) that arrived in
 * [from, to] (CLOCK_MONOTONIC).
 */
static unsigned int records_between(const struct run *run, uint64_t from,
				    uint64_t to)
{
	unsigned long long seq, t, arr;
	unsigned int v, conn, first = ~0u, n = 0;
	FILE *f = fopen(run->log, "r");

	while (f && fscanf(f, "%u %llu %u %llu %llu", &v, &seq, &conn, &t,
			   &arr) == 5) {
		if (first == ~0u)
			first = conn;
		n += conn == first && arr >= from && arr <= to;
	}
	if (f)
		fclose(f);
	return n;
}

/*
 * A silent partition: the replication link's veth goes down, so its
 * packets are dropped with no FIN and no RST, as when a switch fails or
 * the primary's host loses power.  The secondary must notice within its
 * timeout.  With a fence (which cuts the primary's link, then kills it,
 * as README.md says a fence must) it takes over, the primary never goes
 * unprotected, and the observer's stream has no gap.  Without one it
 * refuses; the primary, which has no acknowledgment, releases no output
 * until its ack timeout and grace are over, then runs on unprotected to
 * the end.
 */
static void silent_partition(bool fenced)
{
	/* Its own veth names, apart from the observer outage's 100 to 249. */
	unsigned int n = 252 + fenced;
	char port[16], oport[16], records[16], sblk[PATH_MAX], fence[600];
	char listen[32], cut[64], why[256] = "", what[160];
	char *argv[] = { exe, "secondary", "--port", port, "--block", sblk,
			 "--observer", "127.0.0.1", "--observer-port", oport,
			 "--records", records, "--timeout", "1000", "--stats",
			 "0", "--fence-timeout", "2000", "--listen", listen,
			 fenced ? "--fence" : NULL, fence, NULL };
	uint64_t t_cut = 0;
	struct run run;
	int st_sec, st_pri;
	unsigned int early = 0;
	bool ok;
	double ms;

	run__observer(&run, 7960 + (fenced ? 2 : 0));
	snprintf(listen, sizeof(listen), "10.78.%u.1", n);
	snprintf(port, sizeof(port), "%d", run.port);
	snprintf(oport, sizeof(oport), "%d", run.port + 1);
	snprintf(records, sizeof(records), "%d", RECORDS);
	snprintf(sblk, sizeof(sblk), "%s/partition.img", dir);
	snprintf(cut, sizeof(cut), "ip link set kpr%u down", n);
	usleep(100000);
	run.primary = pipelined__primary(&run, false, NULL, n, NULL);
	snprintf(fence, sizeof(fence), "%s; " STONITH, cut, run.primary,
		 run.primary, run.primary);
	run.secondary = spawn(run.sec_err, argv);
	if (!run__wait_records(&run, 10, 300)) {
		tap(false, "split brain, silent partition%s: the primary stopped early",
		    fenced ? ", fenced" : "");
		kill(run.secondary, SIGKILL);
		reap(run.secondary, 5);
		run__stop_observer(&run);
		run__dump(&run);
		return;
	}
	t_cut = now_ns();
	if (system(cut))
		diag("%s failed", cut);
	st_sec = reap(run.secondary, 300);
	st_pri = reap(run.primary, 300);
	run__stop_observer(&run);
	/*
	 * What left before the cut may land up to 100 ms after it.  Nothing
	 * else from the primary may land before it has waited out its ack
	 * timeout (10 x --timeout) and its grace (--timeout + margin, 1.3 s)
	 * less 0.3 s of slack, and with a fence nothing at all.
	 */
	early = records_between(&run, t_cut + 100000000ULL,
				t_cut + (fenced ? 300000000000ULL :
					 11000000000ULL));
	ms = takeover_ms(&run, what, sizeof(what));
	ok = (!fenced || (ms >= 0 && ms < 1000 + 2000 + 300 &&
			  !file_has(run.pri_err, "UNPROTECTED"))) &&
	     run__outcome(&run, fenced, st_sec, st_pri, why, sizeof(why));
	if (early) {
		snprintf(why, sizeof(why), "%u record(s) from the primary reached the observer %s after the cut, unacknowledged",
			 early, fenced ? "later than 0.1 s" : "between 0.1 and 11 s");
		ok = false;
	}
	tap(ok, "split brain, silent partition (the link's veth down: no FIN, no RST)%s: %s%s%s",
	    fenced ? ", fenced" : ", no fence",
	    fenced ? "the secondary noticed, fenced and took over" :
		     "the secondary refused, the primary held its output, then ran on unprotected",
	    *why ? "; " : "", why);
	if (fenced)
		diag("silent partition: %s, %.1f ms after the primary's last message",
		     what, ms);
	if (!ok)
		run__dump(&run);
}

/* Is @pid gone (or a zombie that no one reaps)? */
static bool pid_gone(pid_t pid)
{
	char path[64], st[256], *p;
	FILE *f;

	if (kill(pid, 0))
		return true;
	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	f = fopen(path, "r");
	if (!f)
		return true;
	p = fgets(st, sizeof(st), f) ? strrchr(st, ')') : NULL;
	fclose(f);
	return p && p[1] == ' ' && p[2] == 'Z';
}

/*
 * Fencing hygiene.  A --fence-file that others may read is refused before
 * the secondary does anything.  Then a fence from a mode-0600 file that
 * writes down what it was told, leaves a child behind and overruns
 * --fence-timeout: the secondary kills its whole process group, refuses
 * to take over, and the child is gone.
 */
static void fence_hygiene(void)
{
	char path[128], env[128], child[128], out[128], cmd[512], line[256];
	char *argv[] = { exe_hooks, "secondary", "--port", "7599", "--block",
			 "/dev/null", "--fence-file", path, NULL };
	bool ok, env_ok;
	pid_t pid = 0;
	FILE *f;
	int fd, st;

	snprintf(path, sizeof(path), "%s/fence.cmd", dir);
	snprintf(env, sizeof(env), "%s/fence.env", dir);
	snprintf(child, sizeof(child), "%s/fence.child", dir);
	snprintf(out, sizeof(out), "%s/fence-refused.out", dir);
	snprintf(cmd, sizeof(cmd),
		 "env | grep '^KEMARI_' > %s; sleep 60 & echo $! > %s; sleep 60\n",
		 env, child);
	unlink(path);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0644);
	if (fd < 0 || write(fd, cmd, strlen(cmd)) != (ssize_t)strlen(cmd))
		die("%s: %m", path);
	fchmod(fd, 0644);
	close(fd);
	st = reap(spawn(out, argv), 30);
	tap(exited(st, 1) && file_has(out, "--fence-file") &&
	    file_has(out, "0600"),
	    "fence hygiene: a --fence-file of mode 0644 is refused at start-up");

	chmod(path, 0600);
	fence_file = path;
	split_brain("the fence overruns --fence-timeout", NULL, false);
	fence_file = NULL;

	f = fopen(child, "r");
	if (!f || fscanf(f, "%d", &pid) != 1)
		pid = 0;
	if (f)
		fclose(f);
	env_ok = file_has(env, "KEMARI_FENCE_PEER=127.0.0.1:") &&
		 file_has(env, "KEMARI_FENCE_ACTION=off") &&
		 file_has(env, "KEMARI_FENCE_REASON=replication link") &&
		 file_has(env, "KEMARI_CHECKPOINT=");
	ok = pid > 0 && pid_gone(pid) && env_ok;
	snprintf(line, sizeof(line), "%s%s",
		 pid <= 0 ? "; the fence never started its child" :
		 !pid_gone(pid) ? "; its child survived the kill" : "",
		 env_ok ? "" : "; it was not told peer, action, reason and checkpoint");
	tap(ok, "fence hygiene: the overrunning fence was killed with its child, and was told whom to fence, how and why%s",
	    line);
	if (pid > 0 && !pid_gone(pid))
		kill(pid, SIGKILL);
}

/*
 * Run a secondary and then a primary, given their argv, with their output
 * in run->sec_err and run->pri_err (dir/TAG-sec.out, dir/TAG-pri.out), and
 * reap both: the primary within pri_secs, the secondary within 60 s.
 */
static void run__pair(struct run *run, const char *tag, char *const sec[],
		      char *const pri[], int pri_secs, int *st_sec,
		      int *st_pri)
{
	snprintf(run->sec_err, sizeof(run->sec_err), "%s/%s-sec.out", dir, tag);
	snprintf(run->pri_err, sizeof(run->pri_err), "%s/%s-pri.out", dir, tag);
	run->secondary = spawn(run->sec_err, sec);
	usleep(200000);
	run->primary = spawn(run->pri_err, pri);
	*st_pri = reap(run->primary, pri_secs);
	*st_sec = reap(run->secondary, 60);
}

/*
 * The handshake refuses a pair whose timing lets a fence finish after the
 * primary has gone on unprotected, and a pair of different VM shapes;
 * both ends say why, and no guest output leaves.
 */
static void handshake_refused(const char *name, const char *grace,
			      const char *vcpus, const char *msg)
{
	char sblk[PATH_MAX], pblk[PATH_MAX];
	char *sec[] = { exe_hooks, "secondary", "--port", "7597", "--block",
			sblk, "--timeout", "1000", "--fence", "exit 0",
			"--fence-timeout", "2000", "--vcpus", (char *)vcpus,
			NULL };
	char *pri[] = { exe_hooks, "primary", "--peer", "127.0.0.1", "--port",
			"7597", "--block", pblk, "--stats", "0",
			"--grace", (char *)grace, NULL };
	struct run run;
	const char *sout = run.sec_err, *pout = run.pri_err;
	int st_sec, st_pri;
	bool ok;

	snprintf(sblk, sizeof(sblk), "%s/hello-sec.img", dir);
	snprintf(pblk, sizeof(pblk), "%s/hello-pri.img", dir);
	run__pair(&run, "hello", sec, pri, 60, &st_sec, &st_pri);
	ok = exited(st_sec, 3) && file_has(sout, "refusing the primary") &&
	     file_has(sout, msg) && st_pri != -1 && WIFEXITED(st_pri) &&
	     WEXITSTATUS(st_pri) && file_has(pout, "refused the handshake") &&
	     file_has(pout, msg) && !file_has(pout, "running protected");
	tap(ok, "split brain, handshake: %s is refused by both ends, saying \"%s\"",
	    name, msg);
	if (!ok)
		run__dump(&run);
}

/*
 * The secondary stops (SIGSTOP, as a stalled host), and then the link
 * goes too (SIGUSR1 cuts it on the primary, with no detach), for longer
 * than the primary's grace.  The primary runs on unprotected; when the
 * secondary runs again it reads the heartbeats queued on the link, but
 * must not take them as news: the primary has been silent, since it sent
 * them, past the bound both agreed to, so it refuses to take over (a
 * takeover would resume a checkpoint older than output the observer has
 * seen), and its fence, which would kill the primary, never runs.
 */
static void stalled_secondary(void)
{
	char why[256] = "";
	unsigned int dups = 0;
	struct run run;
	int st_sec, st_pri, i;
	bool ok, unprotected = false;

	run__start(&run, 95, STONITH, rnd(), false, NULL);
	if (!run__wait_records(&run, 10, 300)) {
		tap(false, "split brain, stalled secondary: the primary stopped early");
		run__dump(&run);
		return;
	}
	kill(run.secondary, SIGSTOP);
	usleep(300000);
	kill(run.primary, SIGUSR1);
	for (i = 0; i < 600 && !unprotected; i++) {
		usleep(100000);
		unprotected = file_has(run.pri_err, "UNPROTECTED");
	}
	usleep(500000);
	kill(run.secondary, SIGCONT);
	st_sec = reap(run.secondary, 300);
	st_pri = reap(run.primary, 300);
	run__stop_observer(&run);

	ok = unprotected && exited(st_sec, 3) &&
	     file_has(run.sec_err, "a heartbeat read now was sent") &&
	     file_has(run.sec_err, "refusing to take over") &&
	     file_has(run.sec_err, "past the bound") &&
	     !file_has(run.sec_err, "fencing") &&
	     exited(st_pri, 0) && file_has(run.pri_err, "verify: ok") &&
	     run__check_stream(&run, 0, &dups, why, sizeof(why));
	tap(ok, "split brain, stalled secondary: the primary went on unprotected, the secondary refused to take over when it woke%s%s",
	    *why ? "; " : "", why);
	if (!ok)
		run__dump(&run);
}

/*
 * A slow secondary is not a dead one.  Acknowledgments that take twice
 * the liveness timeout keep the primary protected (the ack wait has its
 * own bound, --ack-timeout); one that takes longer than --ack-timeout
 * makes the primary detach, and the secondary, finding the detach queued
 * behind its late ack, stands down instead of fencing a healthy primary.
 */
static void slow_secondary(const char *name, const char *ack_delay,
			   const char *ack_timeout, bool protected)
{
	char sblk[PATH_MAX], pblk[PATH_MAX];
	char *sec[] = { exe_hooks, "secondary", "--port", "7595", "--block", sblk,
			"--timeout", "300", "--fence", "exit 0",
			"--fence-timeout", "1000", "--ack-delay",
			(char *)ack_delay, "--stats", "0", NULL };
	char *pri[] = { exe_hooks, "primary", "--peer", "127.0.0.1", "--port",
			"7595", "--block", pblk, "--timeout", "300",
			"--heartbeat", "50", "--records", "3", "--block-every",
			"0", "--stats", "0", "--ack-timeout", (char *)ack_timeout,
			NULL };
	struct run run;
	const char *sout = run.sec_err, *pout = run.pri_err;
	int st_sec, st_pri;
	bool ok;

	snprintf(sblk, sizeof(sblk), "%s/slow-sec.img", dir);
	snprintf(pblk, sizeof(pblk), "%s/slow-pri.img", dir);
	run__pair(&run, "slow", sec, pri, 120, &st_sec, &st_pri);
	if (protected)
		ok = exited(st_pri, 0) && file_has(pout, "verify: ok") &&
		     !file_has(pout, "link lost") &&
		     !file_has(pout, "UNPROTECTED") && exited(st_sec, 0) &&
		     !file_has(sout, "fencing");
	else
		ok = st_pri != -1 && WIFEXITED(st_pri) && WEXITSTATUS(st_pri) &&
		     file_has(pout, "not acknowledged within --ack-timeout") &&
		     exited(st_sec, 3) && file_has(sout, "detached") &&
		     !file_has(sout, "fencing") && !file_has(sout, "takeover");
	tap(ok, "split brain, slow secondary: %s", name);
	if (!ok)
		run__dump(&run);
}

static void test_split_brain(void)
{
	slow_secondary("acks after 2 x --timeout keep the primary protected, no fence",
		       "600", "3000", true);
	slow_secondary("an ack later than --ack-timeout: the primary detaches, the secondary stands down unfenced",
		       "1500", "700", false);
	handshake_refused("a grace shorter than timeout + fence timeout + margin",
			  "3000", "2", "--grace 3000 ms is below");
	handshake_refused("a different number of vCPUs", "4000", "1",
			  "--vcpus");
	stalled_secondary();
	split_brain("no fencing configured", NULL, false);
	split_brain("fencing fails", "exit 1", false);
	split_brain("fencing kills the primary", STONITH, true);
	silent_partition(true);
	silent_partition(false);
	fence_hygiene();
}

#define MAX_CKPT	100000

/* Records that reached the observer before their checkpoint's ack. */
static bool pipelined__check(const struct run *run, const char *events,
			     unsigned int *checked, unsigned int *early)
{
	static uint64_t ack[MAX_CKPT];
	static uint32_t covered_by[NR_VCPUS][RECORDS];
	unsigned long long a, b, t, arr;
	unsigned int v, k, conn;
	bool seen[NR_VCPUS][RECORDS] = { { false } };
	char kind;
	FILE *f = fopen(events, "r");

	memset(ack, 0, sizeof(ack));
	memset(covered_by, 0, sizeof(covered_by));
	while (f && fscanf(f, " %c %llu %llu", &kind, &a, &b) == 3) {
		if (kind == 'A' && a < MAX_CKPT)
			ack[a] = b;
		if (kind == 'C' && fscanf(f, " %u", &k) == 1 && b < NR_VCPUS &&
		    k < RECORDS && a < MAX_CKPT)
			covered_by[b][k] = a;
	}
	if (f)
		fclose(f);
	*checked = *early = 0;
	f = fopen(run->log, "r");
	while (f && fscanf(f, "%u %u %u %llu %llu", &v, &k, &conn, &t, &arr) == 5) {
		if (v >= NR_VCPUS || k >= RECORDS || seen[v][k])
			continue;
		seen[v][k] = true;
		if (!covered_by[v][k] || !ack[covered_by[v][k]])
			continue;
		(*checked)++;
		*early += arr < ack[covered_by[v][k]];
	}
	if (f)
		fclose(f);
	return true;
}

static void pipelined(bool plug)
{
	char events[PATH_MAX], why[256] = "";
	char port[16], records[16], sblk[PATH_MAX];
	unsigned int checked, early, dups = 0, n = 50 + test_nr;
	struct run run;
	int st_pri, st_sec;
	bool ok;

	run__observer(&run, 7800 + n * 2);
	snprintf(port, sizeof(port), "%d", run.port);
	snprintf(records, sizeof(records), "%d", RECORDS);
	snprintf(events, sizeof(events), "%s/events.log", dir);
	snprintf(sblk, sizeof(sblk), "%s/secondary.img", dir);
	unlink(events);
	/*
	 * The primary first: the secondary listens on the address of the
	 * primary's namespace link, which pipelined__primary() sets up.  The
	 * primary retries its connection meanwhile.
	 */
	run.primary = pipelined__primary(&run, plug, events, n,
					 plug ? "7" : NULL);
	{
		char listen[32];
		char *argv[] = { exe_hooks, "secondary", "--port", port, "--block",
				 sblk, "--records", records, "--stats", "0",
				 "--ack-delay", "20", "--listen", listen, NULL };

		snprintf(listen, sizeof(listen), "10.78.%u.1", n);
		run.secondary = spawn(run.sec_err, argv);
	}
	st_pri = reap(run.primary, 300);
	st_sec = reap(run.secondary, 60);
	run__stop_observer(&run);

	pipelined__check(&run, events, &checked, &early);
	ok = exited(st_pri, 0) && file_has(run.pri_err, "verify: ok") &&
	     file_has(run.pri_err, "running protected, pipelined") &&
	     (!plug || file_has(run.pri_err, "sending it again")) &&
	     !file_has(run.pri_err, "UNPROTECTED") &&
	     exited(st_sec, 0) &&
	     run__check_stream(&run, 0, &dups, why, sizeof(why)) &&
	     checked == NR_VCPUS * RECORDS && (plug ? !early : early > 0);
	tap(ok, "pipelined, %s: %u of %u records reached the observer before their checkpoint was acknowledged (%s)%s%s",
	    plug ? "output held in a plug qdisc, every 7th checkpoint damaged once and sent again" :
		   "control without the plug",
	    early, checked, plug ? "must be 0" : "must be > 0, or the check is blind",
	    *why ? "; " : "", why);
	if (!ok)
		run__dump(&run);
}

static void test_pipelined(void)
{
	pipelined(true);
	pipelined(false);
}

/* ---------------------------------------------------------------- demo */

/*
 * make demo: the observer's counter climbs, the primary is killed, the
 * secondary takes over, the counter keeps climbing.  Not a test: it
 * reports what it saw.
 */
static int demo(uint64_t seed)
{
	char log[PATH_MAX], blk[PATH_MAX], sblk[PATH_MAX], fence[512];
	char *records = "400";
	int st;
	pid_t obs, sec, pri;
	uint64_t t_kill;
	double ms;

	snprintf(log, sizeof(log), "%s/observer.log", dir);
	snprintf(blk, sizeof(blk), "%s/primary.img", dir);
	snprintf(sblk, sizeof(sblk), "%s/secondary.img", dir);
	{
		char *argv[] = { exe, "observer", "--observer-port", "7701",
				 "--log", log, "--stats", "1", NULL };

		obs = spawn(NULL, argv);
	}
	usleep(100000);
	{
		char sseed[32];
		char *argv[] = { exe, "primary", "--peer", "127.0.0.1",
				 "--port", "7700", "--block", blk,
				 "--observer", "127.0.0.1", "--observer-port",
				 "7701", "--records", records, "--seed", sseed,
				 "--stats", "1000", NULL };

		snprintf(sseed, sizeof(sseed), "%llu", (unsigned long long)seed);
		pri = spawn(NULL, argv);
	}
	snprintf(fence, sizeof(fence), STONITH, pri, pri, pri);
	{
		char *argv[] = { exe, "secondary", "--port", "7700", "--block",
				 sblk, "--observer", "127.0.0.1",
				 "--observer-port", "7701", "--records", records,
				 "--stats", "1000", "--fence", fence, NULL };

		sec = spawn(NULL, argv);
	}
	printf("demo: the primary runs the guest, the secondary follows it; the observer counts records\n");
	fflush(stdout);
	{
		struct run run = { .primary = pri };

		snprintf(run.log, sizeof(run.log), "%s", log);
		run__wait_records(&run, 300, 600);
	}
	printf("demo: *** killing the primary (SIGKILL) after %u records ***\n",
	       lines(log));
	fflush(stdout);
	t_kill = now_ns();
	kill(pri, SIGKILL);
	waitpid(pri, NULL, 0);
	st = reap(sec, 600);
	ms = (now_ns() - t_kill) / 1e6;
	usleep(300000);
	kill(obs, SIGTERM);
	reap(obs, 5);
	printf("demo: the observer got %u records in all; the secondary %s (it ran %.0f ms after the kill)\n",
	       lines(log), exited(st, 0) ? "took over and the guest finished with its checks passing" :
	       "did not finish cleanly", ms);
	return exited(st, 0) ? 0 : 1;
}

static pid_t dir_owner;

static int dir_remove(const char *path, const struct stat *st, int flag,
		      struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

/*
 * The test's files (its key, disks, logs) go with it, unless a case
 * failed; a forked child's exit leaves them alone.
 */
static void dir_cleanup(void)
{
	if (getpid() != dir_owner)
		return;
	if (failed)
		printf("# files kept in %s\n", dir);
	else
		nftw(dir, dir_remove, 16, FTW_DEPTH | FTW_PHYS);
}

int main(int argc, char **argv)
{
	uint64_t seed = 0;
	unsigned int rounds = 20, cases = 200;
	bool all = true, fuzz = false, failover = false, split = false;
	bool checks = false, shadow = false;
	bool pipe = false, outage = false, secure = false, rejoin = false;
	char *p;
	int c, i;

	while ((c = getopt(argc, argv, "s:n:f:")) != -1) {
		switch (c) {
		case 's':
			seed = strtoull(optarg, NULL, 0);
			break;
		case 'n':
			rounds = atoi(optarg);
			break;
		case 'f':
			cases = atoi(optarg);
			break;
		default:
			fprintf(stderr, "usage: %s [-s seed] [-n rounds] [-f cases] [checks|fuzz|shadow|failover|split_brain|pipelined|observer_outage|reprotect|security]...\n",
				argv[0]);
			return 2;
		}
	}
	for (i = optind; i < argc; i++) {
		all = false;
		checks |= !strcmp(argv[i], "checks");
		fuzz |= !strcmp(argv[i], "fuzz");
		shadow |= !strcmp(argv[i], "shadow");
		failover |= !strcmp(argv[i], "failover");
		split |= !strcmp(argv[i], "split_brain");
		pipe |= !strcmp(argv[i], "pipelined");
		outage |= !strcmp(argv[i], "observer_outage");
		secure |= !strcmp(argv[i], "security");
		rejoin |= !strcmp(argv[i], "reprotect");
	}
	if (!seed)
		seed = now_ns() ^ getpid();
	rng_state = seed;
	/* kemari-ft-test corpus DIR: the fuzzers' seeds, then nothing else. */
	if (argc - optind == 2 && !strcmp(argv[optind], "corpus")) {
		fuzz_corpus(argv[optind + 1]);
		return 0;
	}
	prog_role = "ft-test";
	signal(SIGPIPE, SIG_IGN);	/* the impostors' links, as main.c */

	if (readlink("/proc/self/exe", exe, sizeof(exe) - 1) < 0)
		die("readlink: %m");
	p = strrchr(exe, '/');
	snprintf(p + 1, sizeof(exe) - (p + 1 - exe), "kemari-replicator");
	snprintf(exe_hooks, sizeof(exe_hooks), "%s-test", exe);
	snprintf(dir, sizeof(dir), "/tmp/kemari-ft-%d", getpid());
	mkdir(dir, 0755);
	dir_owner = getpid();
	atexit(dir_cleanup);
	snprintf(psk_file, sizeof(psk_file), "%s/psk", dir);
	if (write_psk(psk_file, "kemari-ft", 0600))
		die("cannot write %s: %m", psk_file);

	printf("TAP version 13\n");
	printf("# seed %llu (rerun with -s %llu)\n", (unsigned long long)seed,
	       (unsigned long long)seed);
	if (all || checks)
		test_checks();
	if (all || fuzz)
		test_fuzz(cases);
	if (all || shadow)
		test_shadow();
	if (argc - optind == 1 && !strcmp(argv[optind], "demo"))
		return demo(seed);
	if (all || failover)
		test_failover(rounds, seed);
	if (all || split)
		test_split_brain();
	if (all || pipe)
		test_pipelined();
	if (all || outage)
		test_observer_outage();
	if (all || rejoin)
		test_reprotect(seed);
	if (all || secure)
		test_security();
	printf("1..%u\n", test_nr);
	return failed ? 1 : 0;
}
