// SPDX-License-Identifier: GPL-2.0
/*
 * The TCP stream of kemari-qemu-test tcp.
 *
 *   kemari-stream serve PORT DISK
 *	In the L2 guest: accept one connection and send records on it for
 *	ever, in bursts of BURST, idle for IDLE_US after each.  The records of
 *	a burst (header and payload)
 *	are first written with O_DSYNC to DISK, one after the other, in one
 *	write; then each is sent with a trailer made just before its send.
 *	Lengths come from getrandom() and CLOCK_MONOTONIC, payloads from
 *	getrandom(), and each record and trailer carries the time, so that a
 *	guest resumed from a checkpoint older than
 *	a send sends other bytes (other lengths, so other framing) than the
 *	primary that let them out too early: output that escaped the sync
 *	point shows as a bad record.
 *
 *   kemari-stream client ADDR PORT DISK KILLS PIDFILE SEED
 *	In L1: read records, checking each one (magic, sequence number, disk
 *	offset, lengths, CRCs, time never going back), and KILLS times
 *	SIGKILL the primary's QEMU (a power loss, no FIN) the moment a record
 *	drawn with SEED arrives.  Kill N is armed once PIDFILE holds "N PID"
 *	(the test writes it when a primary is protected).  24 records after
 *	the last kill, check that each record's header and payload are on
 *	DISK at its offset: no record went out before it was on the disk.  Prints a line per 10 records, then "STREAM-OK ...",
 *	"STREAM-BAD ..." (a record that is not what was sent, or not on the
 *	disk) or "STREAM-BROKEN ..." (a reset, an end of stream, no record
 *	for 120 s).
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define REC_MAGIC	0x4b454d52	/* "KEMR" */
#define TRL_MAGIC	0x4b454d54	/* "KEMT" */
#define REC_MIN		64
#define REC_MAX		2048
#define TRL_MAX		280
#define BURST		8
#define STALL_MS	120000
#define IDLE_US		300000

/* On the disk and on the wire. */
struct rec {
	uint32_t magic;
	uint32_t seq;
	uint32_t len;		/* header and payload */
	uint32_t crc;		/* CRC-32 of header and payload, crc 0 */
	uint64_t offset;	/* on the disk */
	uint64_t mono_ns;	/* made */
};

/* On the wire only, after its record: made just before the send. */
struct trl {
	uint32_t magic;
	uint32_t seq;
	uint32_t len;		/* the trailer, this header included */
	uint32_t crc;		/* CRC-32 of the trailer, crc 0 */
	uint64_t send_ns;
};

static uint32_t crc32(const unsigned char *p, size_t n)
{
	uint32_t c = 0xffffffff;

	while (n--) {
		c ^= *p++;
		for (int k = 0; k < 8; k++)
			c = (c >> 1) ^ (0xedb88320 & -(c & 1));
	}
	return ~c;
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void fill_random(void *buf, size_t n)
{
	unsigned char *p = buf;

	while (n) {
		ssize_t r = getrandom(p, n, 0);

		if (r < 0) {
			if (errno == EINTR)
				continue;
			perror("getrandom");
			exit(1);
		}
		p += r;
		n -= r;
	}
}

static int write_all(int fd, const void *buf, size_t n)
{
	const char *p = buf;

	while (n) {
		ssize_t r = write(fd, p, n);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		p += r;
		n -= r;
	}
	return 0;
}

/*
 * getrandom() alone would not do: the kernel's CRNG state is in the
 * guest's memory, so a guest resumed from a checkpoint draws the same
 * numbers again.  The clock has moved on.
 */
static uint32_t random_len(uint32_t min, uint32_t max)
{
	uint64_t v;

	fill_random(&v, sizeof(v));
	v ^= now_ns();
	return min + crc32((unsigned char *)&v, sizeof(v)) % (max - min + 1);
}

static int serve(int port, const char *disk)
{
	static unsigned char buf[BURST * REC_MAX] __attribute__((aligned(8)));
	static unsigned char tbuf[TRL_MAX] __attribute__((aligned(8)));
	struct sockaddr_in a = { .sin_family = AF_INET,
				 .sin_port = htons(port) };
	struct trl *t = (struct trl *)tbuf;
	uint32_t seq = 0, at[BURST + 1];
	int one = 1, ls, s, d, i;
	uint64_t off = 0, size;

	d = open(disk, O_RDWR | O_DSYNC);
	if (d < 0) {
		perror(disk);
		return 1;
	}
	size = lseek(d, 0, SEEK_END);
	ls = socket(AF_INET, SOCK_STREAM, 0);
	if (ls < 0 ||
	    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
	    bind(ls, (struct sockaddr *)&a, sizeof(a)) || listen(ls, 1)) {
		perror("listen");
		return 1;
	}
	printf("STREAM-LISTEN %d\n", port);
	s = accept(ls, NULL, NULL);
	if (s < 0) {
		perror("accept");
		return 1;
	}
	setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	for (;;) {
		at[0] = 0;
		for (i = 0; i < BURST; i++) {
			struct rec *r = (struct rec *)(buf + at[i]);
			uint32_t len = random_len(REC_MIN / 8, REC_MAX / 8) * 8;

			fill_random(r + 1, len - sizeof(*r));
			*r = (struct rec){ .magic = REC_MAGIC, .seq = seq + i,
					   .len = len, .offset = off + at[i],
					   .mono_ns = now_ns() };
			r->crc = crc32((unsigned char *)r, len);
			at[i + 1] = at[i] + len;
		}
		if (off + at[BURST] > size) {
			printf("STREAM-DISK-FULL %llu\n", (unsigned long long)off);
			for (;;)
				pause();
		}
		if (pwrite(d, buf, at[BURST], off) != at[BURST]) {
			perror("pwrite");
			return 1;
		}
		for (i = 0; i < BURST; i++) {
			uint32_t tlen = random_len(sizeof(*t), TRL_MAX);

			fill_random(t + 1, tlen - sizeof(*t));
			*t = (struct trl){ .magic = TRL_MAGIC, .seq = seq + i,
					   .len = tlen, .send_ns = now_ns() };
			t->crc = crc32(tbuf, tlen);
			if (write_all(s, buf + at[i], at[i + 1] - at[i]) ||
			    write_all(s, tbuf, tlen)) {
				perror("send");
				return 1;
			}
		}
		off += at[BURST];
		seq += BURST;
		/*
		 * Idle longer than the NIC's TX timer (kemari-qemu-test: 200 ms),
		 * so that it sends what the burst queued before the next
		 * doorbell's checkpoint would cover it.
		 */
		usleep(IDLE_US);
	}
}

/* A record that is not what was sent: bytes the secondary did not hold. */
static int bad(const char *why, uint32_t seq, uint64_t off)
{
	printf("STREAM-BAD %s at record %u, offset %llu\n", why, seq,
	       (unsigned long long)off);
	return 1;
}

/* The connection failed: a reset, an end, a stall. */
static int broken(const char *why, uint32_t seq, uint64_t off)
{
	printf("STREAM-BROKEN %s at record %u, offset %llu\n", why, seq,
	       (unsigned long long)off);
	return 1;
}

/* Read exactly n bytes; 0, or -1 (with a message) on error or a stall. */
static int read_all(int s, void *buf, size_t n, uint32_t seq, uint64_t off)
{
	char *p = buf;

	while (n) {
		struct pollfd pf = { .fd = s, .events = POLLIN };
		ssize_t r;

		r = poll(&pf, 1, STALL_MS);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return broken(strerror(errno), seq, off), -1;
		if (r == 0)
			return broken("no data for 120 s", seq, off), -1;
		r = read(s, p, n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return broken(strerror(errno), seq, off), -1;
		if (r == 0)
			return broken("end of stream", seq, off), -1;
		p += r;
		n -= r;
	}
	return 0;
}

/* One record or trailer: its fixed part, the rest, and its CRC. */
static int read_part(int s, void *p, size_t hdr, uint32_t magic, size_t min,
		     size_t max, uint32_t seq, uint64_t off)
{
	uint32_t *w = p, crc;	/* magic, seq, len, crc: as both start */

	if (read_all(s, p, hdr, seq, off))
		return -1;
	if (w[0] != magic)
		return bad(magic == REC_MAGIC ? "bad record magic" :
			   "bad trailer magic", seq, off), -1;
	if (w[2] < min || w[2] > max)
		return bad("bad length", seq, off), -1;
	if (read_all(s, (char *)p + hdr, w[2] - hdr, seq, off))
		return -1;
	crc = w[3];
	w[3] = 0;
	if (crc32(p, w[2]) != crc)
		return bad("bad CRC", seq, off), -1;
	w[3] = crc;
	if (w[1] != seq)
		return bad("sequence gap", seq, off), -1;
	return 0;
}

static uint32_t xorshift(uint32_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 17;
	*x ^= *x << 5;
	return *x;
}

/* "GEN PID" from @path: the primary to kill at kill GEN; 0 if none yet. */
static uint32_t read_pidfile(const char *path, pid_t *pid)
{
	unsigned int gen = 0;
	FILE *f = fopen(path, "r");

	if (f) {
		if (fscanf(f, "%u %d", &gen, pid) != 2)
			gen = 0;
		fclose(f);
	}
	return gen;
}

static int client(const char *addr, int port, const char *disk,
		  uint32_t kills, const char *pidfile, uint32_t seed)
{
	struct sockaddr_in a = { .sin_family = AF_INET,
				 .sin_port = htons(port) };
	unsigned char tbuf[TRL_MAX] __attribute__((aligned(8)));
	uint64_t off = 0, wire = 0, made_ns = 0, sent_ns = 0, cap = 0;
	uint64_t t, t_prev = 0, gap = 0, killed_ns = 0;
	uint32_t seq, gap_at = 0, killed = 0, kill_at = 0, end = 0;
	struct trl *tr = (struct trl *)tbuf;
	unsigned char *got = NULL, *ondisk;
	uint32_t rnd = seed | 1;
	pid_t pid = 0;
	int s, d;

	if (inet_pton(AF_INET, addr, &a.sin_addr) != 1 || !kills) {
		fprintf(stderr, "kemari-stream: bad address %s or no kill\n",
			addr);
		return 2;
	}
	s = socket(AF_INET, SOCK_STREAM, 0);
	if (s < 0 || connect(s, (struct sockaddr *)&a, sizeof(a))) {
		perror("connect");
		return broken("no connection", 0, 0);
	}
	for (seq = 0; !end || seq < end; seq++) {
		struct rec *r;

		if (off + REC_MAX > cap) {
			cap = cap ? 2 * cap : 1 << 20;
			got = realloc(got, cap);
			if (!got)
				return broken("out of memory", seq, wire);
		}
		r = (struct rec *)(got + off);
		if (read_part(s, r, sizeof(*r), REC_MAGIC, REC_MIN, REC_MAX,
			      seq, wire) ||
		    read_part(s, tr, sizeof(*tr), TRL_MAGIC, sizeof(*tr),
			      TRL_MAX, seq, wire + r->len))
			return 1;
		if (r->offset != off)
			return bad("disk offset gap", seq, wire);
		if (r->mono_ns < made_ns || tr->send_ns < sent_ns ||
		    tr->send_ns < r->mono_ns)
			return bad("time went back", seq, wire);
		made_ns = r->mono_ns;
		sent_ns = tr->send_ns;
		off += r->len;
		wire += r->len + tr->len;
		t = now_ns();
		if (t_prev && t - t_prev > gap) {
			gap = t - t_prev;
			gap_at = seq;
		}
		t_prev = t;
		if (killed_ns) {
			printf("STREAM-NEXT %u: record %u %llu ms after the kill\n",
			       killed, seq,
			       (unsigned long long)((t - killed_ns) / 1000000));
			killed_ns = 0;
		}
		/*
		 * Armed once the test names the next primary: 17 to 47 records
		 * on, once one of the 2nd to 5th records of a burst has come,
		 * those the NIC sends on its timer rather than at a doorbell
		 * ((kill_at - 1) % BURST from 1 to 4).
		 */
		if (killed < kills && !kill_at &&
		    read_pidfile(pidfile, &pid) == killed + 1) {
			kill_at = seq + 17 + xorshift(&rnd) % 24;
			kill_at += (BURST + 2 + xorshift(&rnd) % 4 -
				    kill_at % BURST) % BURST;
		}
		if (kill_at && seq + 1 == kill_at) {
			killed_ns = now_ns();
			if (pid <= 1 || kill(pid, SIGKILL))
				return broken("cannot kill the primary", seq, wire);
			killed++;
			kill_at = 0;
			printf("STREAM-KILLED %u: %d after record %u, %llu bytes\n",
			       killed, pid, seq, (unsigned long long)wire);
			if (killed == kills)
				end = seq + 1 + 24;
		}
		if ((seq + 1) % 10 == 0)
			printf("STREAM-RX %u records %llu bytes\n", seq + 1,
			       (unsigned long long)wire);
	}
	/* Every record that went out was on the disk before it was sent. */
	ondisk = malloc(off);
	d = open(disk, O_RDONLY);
	if (!ondisk || d < 0 || pread(d, ondisk, off, 0) != (ssize_t)off)
		return broken("cannot read the disk", seq, wire);
	if (memcmp(ondisk, got, off)) {
		uint64_t i = 0;

		while (ondisk[i] == got[i])
			i++;
		printf("STREAM-BAD the disk differs from the records at disk offset %llu\n",
		       (unsigned long long)i);
		return 1;
	}
	printf("STREAM-OK %u records, %llu bytes, %u kills, longest gap %llu ms before record %u\n",
	       seq, (unsigned long long)wire, killed,
	       (unsigned long long)(gap / 1000000), gap_at);
	free(ondisk);
	free(got);
	return 0;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	signal(SIGPIPE, SIG_IGN);
	if (argc == 4 && !strcmp(argv[1], "serve"))
		return serve(atoi(argv[2]), argv[3]);
	if (argc == 8 && !strcmp(argv[1], "client"))
		return client(argv[2], atoi(argv[3]), argv[4],
			      strtoul(argv[5], NULL, 0), argv[6],
			      strtoul(argv[7], NULL, 0));
	fprintf(stderr, "usage: kemari-stream serve PORT DISK\n"
		"       kemari-stream client ADDR PORT DISK KILLS PIDFILE SEED\n");
	return 2;
}
