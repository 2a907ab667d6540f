// SPDX-License-Identifier: GPL-2.0-only
/*
 * kemari-replicator-bench: the reference replicator's checkpoints, with
 * the dirty ring and with a bitmap-harvesting variant of the same
 * replicator, at 10, 100 and 1000 dirty pages per checkpoint, and the
 * same without the link's TLS (the test build's --plain-link); and the
 * guest's slowdown on a compute-and-memory loop with no I/O, Kemari on
 * against off.  Every figure is a ratio of variants run in the same boot,
 * so it means something under TCG and on real hardware alike.
 *
 * It starts kemari-replicator (from its own directory) as a secondary and
 * a primary on loopback and reads the primary's summary lines.  Lines
 * starting with "CSV," are for scripts/plot-bench.sh.
 *
 * Usage: kemari-replicator-bench [-m guest MiB (4096)] [-q (quick)]
 */
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"

/* The product, and the test build that has --plain-link (no TLS). */
static char exe[PATH_MAX], exe_test[PATH_MAX + 8];

struct result {
	double ckpt_per_s, pages, p50, p99, ran_s, h50, h99;
	double q[21];
	int ok;
};

/* Run argv with stdout and stderr into a pipe; parse the primary's lines. */
static void run_collect(char *const argv[], struct result *res)
{
	char line[1024], *p;
	int fd[2], status, i;
	FILE *f;
	pid_t pid;

	if (pipe(fd))
		die("pipe");
	pid = fork();
	if (pid == 0) {
		dup2(fd[1], 1);
		dup2(fd[1], 2);
		close(fd[0]);
		execv(argv[0], argv);
		_exit(127);
	}
	close(fd[1]);
	f = fdopen(fd[0], "r");
	while (fgets(line, sizeof(line), f)) {
		p = strstr(line, "overall:");
		if (p)
			sscanf(p, "overall: %lf ckpt/s | %lf pages/ckpt | pause p50 %lf ms p99 %lf ms",
			       &res->ckpt_per_s, &res->pages, &res->p50, &res->p99);
		p = strstr(line, "pause quantiles (ms, 0 to 100 by 5):");
		if (p) {
			p += strlen("pause quantiles (ms, 0 to 100 by 5):");
			for (i = 0; i < 21; i++)
				res->q[i] = strtod(p, &p);
		}
		p = strstr(line, "harvest p50 ");
		if (p)
			sscanf(p, "harvest p50 %lf ms p99 %lf ms", &res->h50,
			       &res->h99);
		p = strstr(line, "the guest ran ");
		if (p)
			res->ran_s = atof(p + strlen("the guest ran "));
		if (strstr(line, "verify: ok"))
			res->ok = 1;
		if (strstr(line, "error:") || strstr(line, "fatal:"))
			fputs(line, stdout);
	}
	fclose(f);
	waitpid(pid, &status, 0);
	if (!WIFEXITED(status) || WEXITSTATUS(status))
		res->ok = 0;
}

static pid_t spawn_quiet(char *const argv[])
{
	pid_t pid = fork();

	if (pid == 0) {
		int fd = open("/dev/null", O_WRONLY);

		dup2(fd, 1);
		dup2(fd, 2);
		execv(argv[0], argv);
		_exit(127);
	}
	return pid;
}

/* The link's key (replicator/tls.h), written by main(). */
#define BENCH_PSK	"/tmp/bench-psk"

/* A fresh random key for the pair, mode 0600. */
static void write_psk(void)
{
	unsigned char key[32];
	int fd = open("/dev/urandom", O_RDONLY), i;
	FILE *f;

	if (fd < 0 || read(fd, key, sizeof(key)) != sizeof(key))
		die("/dev/urandom");
	close(fd);
	unlink(BENCH_PSK);
	fd = open(BENCH_PSK, O_WRONLY | O_CREAT | O_EXCL, 0600);
	f = fd < 0 ? NULL : fdopen(fd, "w");
	if (!f)
		die(BENCH_PSK);
	fprintf(f, "kemari-bench:");
	for (i = 0; i < 32; i++)
		fprintf(f, "%02x", key[i]);
	fprintf(f, "\n");
	fclose(f);
}

/* One protected run: secondary and primary on loopback. */
static void checkpoint_run(unsigned int mib, unsigned int pages,
			   const char *harvest, unsigned int records,
			   bool plain, struct result *res)
{
	char *bin = plain ? exe_test : exe;
	char *link = plain ? "--plain-link" : NULL;
	char smem[16], spages[16], sdata[16], srec[16];
	static int port = 7900;
	char sport[16];
	pid_t sec;
	int status;

	port += 2;
	snprintf(sport, sizeof(sport), "%d", port);
	snprintf(smem, sizeof(smem), "%u", mib);
	snprintf(spages, sizeof(spages), "%u", pages);
	snprintf(sdata, sizeof(sdata), "%u", pages * 4 > 256 ? pages * 4 : 256);
	snprintf(srec, sizeof(srec), "%u", records);
	{
		char *argv[] = { bin, "secondary", "--listen", "127.0.0.1",
				 "--psk", BENCH_PSK, "--port", sport, "--block",
				 "/tmp/bench-sec.img", "--mem", smem,
				 "--stats", "0", link, NULL };

		sec = spawn_quiet(argv);
	}
	{
		char *argv[] = { bin, "primary", "--peer", "127.0.0.1",
				 "--psk", BENCH_PSK, "--port", sport, "--block",
				 "/tmp/bench-pri.img",
				 "--mem", smem, "--pages", spages,
				 "--data-pages", sdata, "--records", srec,
				 "--block-every", "0", "--harvest",
				 (char *)harvest, "--stats", "0", link, NULL };

		memset(res, 0, sizeof(*res));
		run_collect(argv, res);
	}
	waitpid(sec, &status, 0);
}

/*
 * Unprotected, no I/O: one record after a long compute-and-memory loop.
 * variant: an option of kemari-replicator, or NULL for Kemari as is.
 */
static void slowdown_run(const char *variant, unsigned int pages,
			 struct result *res)
{
	char spages[16];
	char *argv[] = { exe, "primary", "--block", "/tmp/bench-pri.img",
			 "--mem", "64", "--records", "1", "--pages", spages, "--data-pages",
			 "2048", "--block-every", "0", "--stats", "0",
			 (char *)variant, NULL };

	snprintf(spages, sizeof(spages), "%u", pages);
	memset(res, 0, sizeof(*res));
	run_collect(argv, res);
}

int main(int argc, char **argv)
{
	static const unsigned int dirty[] = { 10, 100, 1000 };
	unsigned int mib = 4096, quick = 0, i, k;
	struct result ring, bitmap, plain[3], r[3];
	double tls_p50[3];
	char *p;
	int c;

	while ((c = getopt(argc, argv, "m:q")) != -1) {
		if (c == 'm')
			mib = atoi(optarg);
		else
			quick = 1;
	}
	if (readlink("/proc/self/exe", exe, sizeof(exe) - 1) < 0)
		die("readlink");
	p = strrchr(exe, '/');
	snprintf(p + 1, sizeof(exe) - (p + 1 - exe), "kemari-replicator");
	snprintf(exe_test, sizeof(exe_test), "%s-test", exe);
	write_psk();

	printf("kemari-replicator-bench: 2 vCPUs, %u MiB guest, synchronous commit over loopback\n",
	       mib);
	printf("%6s %7s %7s %8s %10s %10s %11s %7s %7s\n", "dirty", "harvest",
	       "ckpt/s", "pg/ckpt", "pause p50", "pause p99", "harvest p50",
	       "pause", "harvest");
	printf("%68s %15s\n", "", "bitmap/ring");
	for (i = 0; i < 3; i++) {
		unsigned int records = quick ? 5 : (dirty[i] >= 1000 ? 20 : 40);

		checkpoint_run(mib, dirty[i], "ring", records, false, &ring);
		checkpoint_run(mib, dirty[i], "bitmap", records, false, &bitmap);
		checkpoint_run(mib, dirty[i], "ring", records, true, &plain[i]);
		tls_p50[i] = ring.p50;
		if (!ring.ok || !bitmap.ok)
			printf("  (a run failed: ring %d bitmap %d)\n", ring.ok,
			       bitmap.ok);
		printf("%6u %7s %7.1f %8.1f %7.3f ms %7.3f ms %8.3f ms\n",
		       dirty[i], "ring", ring.ckpt_per_s, ring.pages, ring.p50,
		       ring.p99, ring.h50);
		printf("%6u %7s %7.1f %8.1f %7.3f ms %7.3f ms %8.3f ms %7.2f %7.2f\n",
		       dirty[i], "bitmap", bitmap.ckpt_per_s, bitmap.pages,
		       bitmap.p50, bitmap.p99, bitmap.h50,
		       ring.p50 > 0 ? bitmap.p50 / ring.p50 : 0,
		       ring.h50 > 0 ? bitmap.h50 / ring.h50 : 0);
		printf("CSV,checkpoint,%u,ring,%.1f,%.1f,%.3f,%.3f,%.3f\n", dirty[i],
		       ring.ckpt_per_s, ring.pages, ring.p50, ring.p99, ring.h50);
		printf("CSV,checkpoint,%u,bitmap,%.1f,%.1f,%.3f,%.3f,%.3f\n",
		       dirty[i], bitmap.ckpt_per_s, bitmap.pages, bitmap.p50,
		       bitmap.p99, bitmap.h50);
		for (k = 0; k < 21; k++)
			printf("CSV,pause,%u,%u,%.3f,%.3f\n", dirty[i], k * 5,
			       ring.q[k], bitmap.q[k]);
	}
	printf("(pause: the guest stopped, from the sync exit to KVM_KEMARI_RESUME; harvest: the part of it that\n"
	       " harvests and re-protects the dirty log; bitmap/ring: ratios of the p50s)\n");
	printf("the link's crypto: pause p50 with TLS 1.3 (AES-128-GCM, the product) and without (the test build's --plain-link), ring\n");
	printf("%6s %10s %10s %9s\n", "dirty", "TLS", "plain", "TLS/plain");
	for (i = 0; i < 3; i++) {
		printf("%6u %7.3f ms %7.3f ms %9.2f%s\n", dirty[i], tls_p50[i],
		       plain[i].p50, plain[i].p50 > 0 ? tls_p50[i] / plain[i].p50 : 0,
		       plain[i].ok ? "" : " (the plain run failed)");
		printf("CSV,crypto,%u,%.3f,%.3f\n", dirty[i], tls_p50[i],
		       plain[i].p50);
	}

	slowdown_run("--no-kemari", quick ? 500 : 5000, &r[0]);
	slowdown_run("--no-tsc-log", quick ? 500 : 5000, &r[1]);
	slowdown_run(NULL, quick ? 500 : 5000, &r[2]);	/* Kemari, TSC log */
	printf("slowdown, compute-and-memory loop without I/O (%u page rewrites per vCPU):\n",
	       quick ? 500 : 5000);
	printf("  Kemari off %.3f s, Kemari on without TSC log %.3f s (%.3f x), with TSC log %.3f s (%.3f x)\n",
	       r[0].ran_s, r[1].ran_s, r[0].ran_s > 0 ? r[1].ran_s / r[0].ran_s : 0,
	       r[2].ran_s, r[0].ran_s > 0 ? r[2].ran_s / r[0].ran_s : 0);
	printf("CSV,slowdown,off,%.3f\nCSV,slowdown,on,%.3f\nCSV,slowdown,on_tsc_log,%.3f\n",
	       r[0].ran_s, r[1].ran_s, r[2].ran_s);
	return 0;
}
