// SPDX-License-Identifier: GPL-2.0-only
/*
 * The replication link lets no one in (README.md, "Security"): impostor
 * primaries and secondaries, a port scan, a tampered and a replayed
 * record, and the options that refuse an open link.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test/ft.h"
#include "tls.h"
#include "util.h"
#include "wire.h"

static void write_key(const char *path, const char *identity,
		      const uint8_t *key, size_t len, int mode)
{
	FILE *f;
	size_t i;
	int fd;

	unlink(path);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL, mode);
	f = fd < 0 ? NULL : fdopen(fd, "w");
	if (!f)
		die("%s: %m", path);
	fchmod(fd, mode);
	fprintf(f, "%s:", identity);
	for (i = 0; i < len; i++)
		fprintf(f, "%02x", key[i]);
	fprintf(f, "\n");
	fclose(f);
}

/* A new random 256-bit key under identity; 0 or -1. */
int write_psk(const char *path, const char *identity, int mode)
{
	uint8_t key[32];
	int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);

	if (fd < 0 || read(fd, key, sizeof(key)) != sizeof(key)) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	close(fd);
	write_key(path, identity, key, sizeof(key), mode);
	return 0;
}

/* ------------------------------------------------------------- options */

/* The replicator refuses to start, saying msg. */
static void refused_option(const char *what, char *const argv[],
			   const char *msg)
{
	char out[PATH_MAX];
	int st;

	snprintf(out, sizeof(out), "%s/option.out", dir);
	spawn_bare = true;
	st = reap(spawn(out, argv), 30);
	spawn_bare = false;
	tap(exited(st, 1) && file_has(out, msg),
	    "security, options: %s is refused, saying \"%s\"", what, msg);
	if (!exited(st, 1) || !file_has(out, msg))
		dump(out);
}

static void security_options(void)
{
	char loose[PATH_MAX], shortk[PATH_MAX];
	static const uint8_t k8[8] = { 1, 2, 3, 4, 5, 6, 7, 8 };

	snprintf(loose, sizeof(loose), "%s/loose.psk", dir);
	snprintf(shortk, sizeof(shortk), "%s/short.psk", dir);
	if (write_psk(loose, "kemari-ft", 0644))
		die("%s: %m", loose);
	write_key(shortk, "kemari-ft", k8, sizeof(k8), 0600);
	{
		char *a[] = { exe, "secondary", "--listen", "127.0.0.1",
			      "--block", "/dev/null", NULL };
		refused_option("a secondary without a key", a,
			       "--psk FILE is needed");
	}
	{
		char *a[] = { exe, "primary", "--peer", "127.0.0.1", "--block",
			      "/dev/null", NULL };
		refused_option("a primary with a peer and no key", a,
			       "--psk FILE is needed");
	}
	{
		char *a[] = { exe, "secondary", "--psk", psk_file, "--block",
			      "/dev/null", NULL };
		refused_option("a secondary on every interface", a,
			       "--listen ADDR is needed");
	}
	{
		char *a[] = { exe, "secondary", "--listen", "127.0.0.1",
			      "--port", "7840", "--psk", loose, "--block",
			      "/dev/null", NULL };
		refused_option("a key file that others can read", a,
			       "readable by group or others");
	}
	{
		char *a[] = { exe, "secondary", "--listen", "127.0.0.1",
			      "--port", "7841", "--psk", shortk, "--block",
			      "/dev/null", NULL };
		refused_option("a 64-bit key", a, "the key must be 16 to 64 bytes");
	}
	{
		char *a[] = { exe, "secondary", "--port", "70000", NULL };
		refused_option("port 70000", a,
			       "--port 70000: must be 1 to 65535");
	}
	{
		char *a[] = { exe, "secondary", "--timeout", "-5", NULL };
		refused_option("a negative timeout", a, "not a number: -5");
	}
	{
		char *a[] = { exe, "secondary", "--timeout", "1000",
			      "--heartbeat", "500", NULL };
		refused_option("a heartbeat of half the timeout", a,
			       "is not well below --timeout");
	}
	/* The tests' hooks are in kemari-replicator-test only. */
	{
		char *a[] = { exe, "primary", "--corrupt-every", "5", NULL };
		refused_option("the test build's --corrupt-every", a,
			       "unrecognized option '--corrupt-every'");
	}
	{
		char *a[] = { exe, "secondary", "--ack-delay", "20", NULL };
		refused_option("the test build's --ack-delay", a,
			       "unrecognized option '--ack-delay'");
	}
	{
		char *a[] = { exe, "primary", "--plain-link", NULL };
		refused_option("the test build's --plain-link", a,
			       "unrecognized option '--plain-link'");
	}
	/* Re-protection's options. */
	{
		char *a[] = { exe, "primary", "--peer-port", "7400", NULL };
		refused_option("--peer-port on a primary", a,
			       "--peer-port is a secondary's");
	}
	{
		char *a[] = { exe, "secondary", "--listen", "127.0.0.1",
			      "--psk", psk_file, "--peer-port", "7400", NULL };
		refused_option("--peer-port without --peer", a,
			       "--peer-port needs --peer");
	}
	{
		char *a[] = { exe, "primary", "--pipelined", "--rejoin", "100",
			      NULL };
		refused_option("--rejoin with --pipelined", a,
			       "re-protection of a pipelined primary is not supported yet");
	}
}

/*
 * SIGUSR1 is logrotate's "reopen your logs": sent to both ends of a
 * protected pair of product binaries mid-run, it must cut nothing and end
 * neither (in the test build it cuts the primary's link).
 */
static void product_sigusr1(void)
{
	char sout[PATH_MAX], pout[PATH_MAX], sblk[PATH_MAX], pblk[PATH_MAX];
	char *sec[] = { exe, "secondary", "--port", "7860", "--block", sblk,
			"--timeout", "1000", "--stats", "0", NULL };
	char *pri[] = { exe, "primary", "--peer", "127.0.0.1", "--port",
			"7860", "--block", pblk, "--records", "60",
			"--stats", "0", NULL };
	int st_sec, st_pri, i;
	pid_t spid, ppid;
	bool sent = false;

	snprintf(sout, sizeof(sout), "%s/usr1-sec.out", dir);
	snprintf(pout, sizeof(pout), "%s/usr1-pri.out", dir);
	snprintf(sblk, sizeof(sblk), "%s/usr1-sec.img", dir);
	snprintf(pblk, sizeof(pblk), "%s/usr1-pri.img", dir);
	spid = spawn(sout, sec);
	usleep(300000);
	ppid = spawn(pout, pri);
	for (i = 0; i < 600 && !file_has(pout, "running protected"); i++)
		usleep(50000);
	if (file_has(pout, "running protected")) {
		for (i = 0; i < 3; i++) {
			kill(ppid, SIGUSR1);
			kill(spid, SIGUSR1);
			usleep(100000);
		}
		sent = true;
	}
	st_pri = reap(ppid, 300);
	st_sec = reap(spid, 60);
	tap(sent && exited(st_pri, 0) && exited(st_sec, 0) &&
	    file_has(pout, "verify: ok") &&
	    !file_has(pout, "replication link lost") &&
	    file_has(sout, "the primary finished the guest"),
	    "security, product: SIGUSR1 (logrotate's reopen) sent to both ends of a protected pair cuts nothing and ends neither");
	if (!exited(st_pri, 0) || !exited(st_sec, 0)) {
		dump(sout);
		dump(pout);
	}
}

/* ---------------------------------------------------------- impostors */

/* The right key under another identity. */
static void write_other_identity(const char *path)
{
	struct tls_psk psk;
	char why[256];

	if (tls__load_psk(psk_file, &psk, why, sizeof(why)))
		die("%s", why);
	write_key(path, "intruder", psk.key, psk.key_len, 0600);
	tls__forget(&psk);
}

/* A TLS client with keyfile's key: 0 if the server took it. */
static int tls_client(int port, const char *keyfile)
{
	struct wire_link l;
	struct tls_psk psk;
	char why[256];
	int fd, r;

	if (tls__load_psk(keyfile, &psk, why, sizeof(why)))
		die("%s", why);
	fd = wire__connect("127.0.0.1", port, 5000);
	if (fd < 0)
		return fd;
	wire__link_init(&l, fd);
	r = tls__client(&l, &psk, 8000, why, sizeof(why));
	tls__forget(&psk);
	wire__link_close(&l);
	return r;
}

/* Until the peer closes fd or secs pass; true if it closed. */
static bool closed_by_peer(int fd, int secs)
{
	struct pollfd pfd = { .fd = fd, .events = POLLIN };
	char c[512];

	while (poll(&pfd, 1, secs * 1000) > 0) {
		ssize_t n = read(fd, c, sizeof(c));

		if (n <= 0)
			return true;
	}
	return false;
}

static unsigned int count_lines(const char *path, const char *needle)
{
	char line[1024];
	unsigned int n = 0;
	FILE *f = fopen(path, "r");

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		n += !!strstr(line, needle);
	fclose(f);
	return n;
}

/* The secondary logs one more refusal within 3 s. */
static bool refused_one(const char *sout, unsigned int *seen)
{
	unsigned int i, n;

	for (i = 0; i < 60; i++) {
		n = count_lines(sout, "refused a connection from");
		if (n > *seen) {
			*seen = n;
			return true;
		}
		usleep(50000);
	}
	return false;
}

/*
 * Before the real primary comes: a port scan (connect, close), a
 * connection that never speaks, a primary that speaks the protocol in
 * the clear, one with the wrong key and one with the right key under an
 * unknown identity.  Each is refused before a byte of it is parsed, and
 * the secondary keeps listening: the real primary then pairs and runs
 * protected, and a connection while it does is refused too.
 */
static void impostor_primaries(void)
{
	char sout[PATH_MAX], pout[PATH_MAX], sblk[PATH_MAX], pblk[PATH_MAX];
	char wrong[PATH_MAX], other[PATH_MAX], fenced[PATH_MAX], fence[PATH_MAX + 16];
	struct wire_hello hello = { .version = WIRE_VERSION,
				    .role = HELLO_PRIMARY, .nr_vcpus = 2,
				    .mem_size = 16 << 20, .timeout_ms = 1000 };
	char *sec[] = { exe, "secondary", "--port", "7810", "--block", sblk,
			"--timeout", "1000", "--fence", fence,
			"--fence-timeout", "1000", "--stats", "0", NULL };
	char *pri[] = { exe, "primary", "--peer", "127.0.0.1", "--port",
			"7810", "--block", pblk, "--records", "30",
			"--stats", "0", NULL };
	bool plain_closed, wrong_refused, other_refused, extra_closed = false;
	bool scan_refused, silent_refused;
	unsigned int seen = 0;
	pid_t spid, ppid;
	int fd, silent, st_sec, st_pri, i;
	struct wire_link l;
	bool ok;

	snprintf(sout, sizeof(sout), "%s/imp-sec.out", dir);
	snprintf(pout, sizeof(pout), "%s/imp-pri.out", dir);
	snprintf(sblk, sizeof(sblk), "%s/imp-sec.img", dir);
	snprintf(pblk, sizeof(pblk), "%s/imp-pri.img", dir);
	snprintf(wrong, sizeof(wrong), "%s/wrong.psk", dir);
	snprintf(other, sizeof(other), "%s/other.psk", dir);
	snprintf(fenced, sizeof(fenced), "%s/imp-fenced", dir);
	snprintf(fence, sizeof(fence), "touch %s; exit 0", fenced);
	if (write_psk(wrong, "kemari-ft", 0600))
		die("%s: %m", wrong);
	write_other_identity(other);

	spid = spawn(sout, sec);
	fd = wire__connect("127.0.0.1", 7810, 5000);	/* the scan */
	if (fd >= 0)
		close(fd);
	scan_refused = fd >= 0 && refused_one(sout, &seen);
	silent = wire__connect("127.0.0.1", 7810, 5000);
	silent_refused = silent >= 0 && refused_one(sout, &seen);
	fd = wire__connect("127.0.0.1", 7810, 5000);
	wire__link_init(&l, fd);
	wire__send(&l, MSG_HELLO, 0, &hello, sizeof(hello));
	plain_closed = fd >= 0 && closed_by_peer(fd, 10) &&
		       refused_one(sout, &seen);
	wire__link_close(&l);
	wrong_refused = tls_client(7810, wrong) == -1 &&
			refused_one(sout, &seen);
	other_refused = tls_client(7810, other) == -1 &&
			refused_one(sout, &seen);
	if (silent >= 0)
		close(silent);

	ppid = spawn(pout, pri);
	for (i = 0; i < 600 && !file_has(pout, "running protected"); i++)
		usleep(50000);
	fd = wire__connect("127.0.0.1", 7810, 5000);
	if (fd >= 0 && file_has(pout, "running protected"))
		extra_closed = closed_by_peer(fd, 10);
	if (fd >= 0)
		close(fd);
	st_pri = reap(ppid, 300);
	st_sec = reap(spid, 60);

	tap(scan_refused && silent_refused &&
	    file_has(sout, "the peer closed the connection during the TLS handshake") &&
	    file_has(sout, "no TLS handshake within 2000 ms"),
	    "security, impostor primary: a port scan and a connection that never speaks are refused");
	tap(plain_closed && !file_has(sout, "handshake:"),
	    "security, impostor primary: one that speaks the protocol in the clear is refused before its hello is parsed");
	tap(wrong_refused, "security, impostor primary: one with the wrong key is refused");
	tap(other_refused && file_has(sout, "unknown PSK identity \"intruder\""),
	    "security, impostor primary: one with the right key under another identity is refused, by name");
	ok = count_lines(sout, "refused a connection from") >= 5 &&
	     file_has(pout, "running protected") && exited(st_pri, 0) &&
	     file_has(pout, "verify: ok") && exited(st_sec, 0) &&
	     access(fenced, F_OK);
	tap(ok, "security, impostor primary: the real primary pairs after them, runs protected and stands the secondary down; no fence ran");
	if (!ok) {
		dump(sout);
		dump(pout);
	}
	tap(extra_closed && file_has(sout, "this secondary is paired"),
	    "security, impostor primary: a connection while paired is refused");
}

/*
 * A secondary that does not hold the key: the primary gets no further
 * than its ClientHello, refuses it, and stops; nothing of the guest
 * crosses.  tls_mode: false, a listener that only reads; true, a TLS
 * server with another key.
 */
static void impostor_secondary(bool tls_mode)
{
	char pout[PATH_MAX], pblk[PATH_MAX], wrong[PATH_MAX], got[PATH_MAX];
	const char *port = tls_mode ? "7822" : "7820";
	char *pri[] = { exe, "primary", "--peer", "127.0.0.1", "--port",
			(char *)port, "--block", pblk, "--records", "3",
			"--stats", "0", NULL };
	int lfd, st, pipefd[2];
	long bytes = -1;
	bool magic = true;
	pid_t fake, ppid;

	snprintf(pout, sizeof(pout), "%s/impsec-pri.out", dir);
	snprintf(pblk, sizeof(pblk), "%s/impsec-pri.img", dir);
	snprintf(wrong, sizeof(wrong), "%s/wrong2.psk", dir);
	snprintf(got, sizeof(got), "%s/impsec-bytes", dir);
	if (write_psk(wrong, "kemari-ft", 0600))
		die("%s: %m", wrong);
	lfd = wire__listen("127.0.0.1", atoi(port));
	if (lfd < 0 || pipe(pipefd))
		die("impostor secondary: cannot listen");
	fake = fork();
	if (fake == 0) {
		uint8_t buf[65536];
		long total = 0, found = 0;
		int fd = wire__accept(lfd, 30000);
		struct pollfd pfd = { .fd = fd, .events = POLLIN };

		if (fd >= 0 && tls_mode) {
			struct wire_link l;
			struct tls_psk psk;
			char why[256];

			wire__link_init(&l, fd);
			tls__load_psk(wrong, &psk, why, sizeof(why));
			if (!tls__server(&l, &psk, 8000, why, sizeof(why)))
				found = 1;	/* it must not succeed */
			fcntl(fd, F_SETFL, 0);
		}
		while (fd >= 0 && poll(&pfd, 1, 3000) > 0) {
			ssize_t n = read(fd, buf, sizeof(buf));
			uint32_t m = WIRE_MAGIC;

			if (n <= 0)
				break;
			total += n;
			found |= !!memmem(buf, n, &m, sizeof(m));
		}
		dprintf(pipefd[1], "%ld %ld\n", total, found);
		_exit(0);
	}
	close(lfd);
	close(pipefd[1]);
	ppid = spawn(pout, pri);
	st = reap(ppid, 120);
	{
		char line[64] = "";
		long found = 1;
		ssize_t n = read(pipefd[0], line, sizeof(line) - 1);

		if (n > 0 && sscanf(line, "%ld %ld", &bytes, &found) == 2)
			magic = found;
	}
	close(pipefd[0]);
	reap(fake, 30);
	tap(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) &&
	    file_has(pout, "is not authenticated") &&
	    !file_has(pout, "running protected") && bytes >= 0 &&
	    bytes < 4096 && !magic,
	    "security, impostor secondary (%s): the primary refuses it after %ld bytes of handshake, and sends no message",
	    tls_mode ? "a TLS server with another key" : "a listener that only reads",
	    bytes);
	if (file_has(pout, "running protected") || !file_has(pout, "is not authenticated"))
		dump(pout);
}

int fake_secondary(int lfd, const struct wire_hello *mine, struct wire_link *l,
		   uint8_t **buf, size_t *cap)
{
	struct tls_psk psk;
	struct msg_hdr h;
	char why[256];
	int fd = wire__accept(lfd, 30000), r;

	wire__link_init(l, fd);
	if (fd < 0 || tls__load_psk(psk_file, &psk, why, sizeof(why)))
		return -1;
	r = tls__server(l, &psk, 8000, why, sizeof(why)) ||
	    wire__recv(l, &h, buf, cap, 512, 10000) ||
	    wire__send(l, MSG_HELLO, 0, mine, sizeof(*mine));
	tls__forget(&psk);
	return r ? -1 : 0;
}

/*
 * A secondary that holds the key but acknowledges what it does not hold:
 * its ack of the first checkpoint carries another digest.  The primary
 * must not count itself protected.
 */
static void forged_ack(void)
{
	char pout[PATH_MAX], pblk[PATH_MAX];
	char *pri[] = { exe, "primary", "--peer", "127.0.0.1", "--port",
			"7824", "--block", pblk, "--records", "3",
			"--stats", "0", NULL };
	int lfd, st;
	pid_t fake;

	snprintf(pout, sizeof(pout), "%s/forged-pri.out", dir);
	snprintf(pblk, sizeof(pblk), "%s/forged-pri.img", dir);
	lfd = wire__listen("127.0.0.1", 7824);
	if (lfd < 0)
		die("forged ack: cannot listen");
	fake = fork();
	if (fake == 0) {
		uint8_t digest[TLS_DIGEST_LEN] = { 0 }, *buf = NULL;
		struct wire_hello mine;
		struct wire_link l;
		struct msg_hdr h;
		size_t cap = 0;

		fake_hello(&mine, HELLO_SECONDARY);
		if (fake_secondary(lfd, &mine, &l, &buf, &cap) ||
		    wire__recv(&l, &h, &buf, &cap, 1 << 26, 30000) ||
		    h.type != MSG_CKPT)
			_exit(1);
		wire__send(&l, MSG_ACK, h.seq, digest, sizeof(digest));
		wire__recv(&l, &h, &buf, &cap, 1 << 26, 10000);
		_exit(0);
	}
	close(lfd);
	st = reap(spawn(pout, pri), 120);
	reap(fake, 30);
	tap(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) &&
	    file_has(pout, "the acknowledgment's digest is not the checkpoint's") &&
	    !file_has(pout, "running protected"),
	    "security, forged acknowledgment: an ack whose digest is not the checkpoint's does not count");
	if (!file_has(pout, "digest is not"))
		dump(pout);
}

/* ------------------------------------------------- tampering, replay */

static volatile sig_atomic_t meddle;

static void on_meddle(int sig)
{
	(void)sig;
	meddle = 1;
}

/* Move all n bytes through fd, reading or writing; false at its end. */
static bool fd_full(int fd, void *buf, size_t n, bool wr)
{
	uint8_t *p = buf;

	while (n) {
		ssize_t r = wr ? write(fd, p, n) : read(fd, p, n);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return false;
		p += r;
		n -= r;
	}
	return true;
}

/*
 * A man in the middle, primary to secondary, TLS record by TLS record.
 * After SIGUSR1 the next application-data record is changed in one byte
 * (MITM_TAMPER) or sent twice (MITM_REPLAY).
 */
enum { MITM_TAMPER, MITM_REPLAY };

static void mitm_forward(int from, int to, int how)
{
	static uint8_t rec[5 + 18432];

	for (;;) {
		size_t len;

		if (!fd_full(from, rec, 5, false))
			break;
		len = rec[3] << 8 | rec[4];
		if (len > sizeof(rec) - 5 || !fd_full(from, rec + 5, len, false))
			break;
		if (meddle && rec[0] == 23 && len > 32) {
			meddle = 0;
			if (how == MITM_TAMPER)
				rec[5 + len / 2] ^= 0x40;
			else if (!fd_full(to, rec, 5 + len, true))
				break;
		}
		if (!fd_full(to, rec, 5 + len, true))
			break;
	}
	shutdown(to, SHUT_WR);
	_exit(0);
}

static void mitm_copy(int from, int to)
{
	uint8_t buf[65536];
	ssize_t n;

	while ((n = read(from, buf, sizeof(buf))) > 0)
		if (!fd_full(to, buf, n, true))
			break;
	shutdown(to, SHUT_WR);
	_exit(0);
}

/*
 * The man in the middle: the primary's connections, forwarded to the
 * secondary.  The first one's forwarder meddles after SIGUSR1 (sent to
 * the whole group); the second, the primary joining again, is forwarded
 * as it is.
 */
static void mitm_run(int lfd, int sport, bool replay)
{
	int n;

	setpgid(0, 0);
	signal(SIGUSR1, SIG_IGN);
	for (n = 0; n < 2; n++) {
		int c = wire__accept(lfd, 60000);
		int s = c < 0 ? -1 : wire__connect("127.0.0.1", sport, 10000);

		if (c < 0 || s < 0)
			break;
		if (fork() == 0) {
			/* This one forwards the primary's records; a child copies back. */
			if (fork() == 0)
				mitm_copy(s, c);
			if (n == 0)
				signal(SIGUSR1, on_meddle);
			mitm_forward(c, s, replay ? MITM_REPLAY : MITM_TAMPER);
		}
		close(c);
		close(s);
	}
	while (wait(NULL) > 0)
		;
	_exit(0);
}

/*
 * A record changed, or replayed, in the middle of a protected run.  TLS
 * refuses it and ends the session.  The secondary must not fence: the
 * primary is alive (someone sent that record).  It stands down without
 * fencing and listens again; the primary, having lost its secondary,
 * holds its output for the grace, goes on unprotected, and joins the
 * secondary again (--rejoin), which is protected again from a full
 * checkpoint until the guest's end.
 */
static void tampered_link(bool replay)
{
	char sout[PATH_MAX], pout[PATH_MAX], sblk[PATH_MAX], pblk[PATH_MAX];
	char fenced[PATH_MAX], fence[PATH_MAX + 16];
	const char *sport = replay ? "7833" : "7831";
	const char *mport = replay ? "7832" : "7830";
	char *sec[] = { exe, "secondary", "--port", (char *)sport, "--block",
			sblk, "--timeout", "1000", "--fence", fence,
			"--fence-timeout", "1000", "--stats", "0", NULL };
	char *pri[] = { exe, "primary", "--peer", "127.0.0.1", "--port",
			(char *)mport, "--block", pblk, "--records", "400",
			"--rejoin", "200", "--stats", "0", NULL };
	pid_t spid, ppid, mitm;
	int lfd, st_sec, st_pri, i;
	bool protected = false, ok;

	snprintf(sout, sizeof(sout), "%s/mitm-sec.out", dir);
	snprintf(pout, sizeof(pout), "%s/mitm-pri.out", dir);
	snprintf(sblk, sizeof(sblk), "%s/mitm-sec.img", dir);
	snprintf(pblk, sizeof(pblk), "%s/mitm-pri.img", dir);
	snprintf(fenced, sizeof(fenced), "%s/mitm-fenced", dir);
	snprintf(fence, sizeof(fence), "touch %s; exit 0", fenced);
	unlink(fenced);

	spid = spawn(sout, sec);
	lfd = wire__listen("127.0.0.1", atoi(mport));
	if (lfd < 0)
		die("mitm: cannot listen");
	mitm = fork();
	if (mitm == 0)
		mitm_run(lfd, atoi(sport), replay);
	setpgid(mitm, mitm);
	close(lfd);
	ppid = spawn(pout, pri);
	for (i = 0; i < 600 && !protected; i++) {
		usleep(50000);
		protected = file_has(pout, "running protected");
	}
	usleep(300000);
	if (protected)
		kill(-mitm, SIGUSR1);	/* the first connection's forwarder */
	st_pri = reap(ppid, 300);
	st_sec = reap(spid, 60);
	kill(-mitm, SIGKILL);
	waitpid(mitm, NULL, 0);

	ok = protected && exited(st_sec, 0) &&
	     file_has(sout, "TLS record failed authentication") &&
	     file_has(sout, "standing down without fencing, and listening") &&
	     file_has(sout, "finished the guest") &&
	     access(fenced, F_OK) && exited(st_pri, 0) &&
	     file_has(pout, "UNPROTECTED") &&
	     file_has(pout, "re-protection: the secondary at") &&
	     count_lines(pout, "running protected") == 2 &&
	     file_has(pout, "verify: ok");
	tap(ok, "security, %s record mid-run: refused by TLS; the secondary stands down without fencing and listens again, and the primary, unprotected after its grace, joins it again and is protected to the guest's end",
	    replay ? "a replayed" : "a tampered");
	if (!ok) {
		dump(sout);
		dump(pout);
	}
}

void test_security(void)
{
	security_options();
	product_sigusr1();
	impostor_primaries();
	impostor_secondary(false);
	impostor_secondary(true);
	forged_ack();
	tampered_link(false);
	tampered_link(true);
}
