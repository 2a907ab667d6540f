// SPDX-License-Identifier: GPL-2.0-only
/*
 * The primary: runs the guest and sends the checkpoint of every sync
 * point to the secondary.
 *
 * Synchronous mode (the default) waits for the acknowledgment before the
 * guest resumes, so the held write completes only once the secondary has
 * everything.  Pipelined mode (--pipelined) resumes as soon as the
 * checkpoint is sent, holds the network output of the interface given by
 * --plug-dev in a plug qdisc, and lets each epoch's output out when the
 * checkpoint that covers it is acknowledged; at most one checkpoint is in
 * flight.
 *
 * If the link fails, or the secondary refuses a checkpoint three times,
 * the primary cannot tell whether the secondary is about to take over.
 * So it keeps the guest stopped at its next sync point (no output leaves)
 * for the grace period, long enough for the secondary to fence this host;
 * if it is still alive after that, it runs unprotected, lets buffered
 * output out, and says so.
 *
 * Re-protection: once unprotected, the primary connects to --peer again
 * every --rejoin ms.  A secondary that answers, proves the key and passes
 * the handshake joins: the next checkpoint, which the primary asks for at
 * once with KVM_KEMARI_FREEZE, is a full one (all memory, the whole
 * disk), and from its acknowledgment on the guest is protected again.  A
 * secondary that has taken over runs this same code for its own
 * secondary (primary__protect_later).
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "netbuf.h"
#include "replicator.h"
#include "tls.h"
#include "util.h"
#include "vmm.h"
#include "wire.h"

struct link {
	struct wire_link wl;
	bool up;
	bool pipelined;
	int timeout_ms;
	int ack_timeout_ms;		/* --ack-timeout */
	int heartbeat_ms;
	pthread_mutex_t lock;		/* sends, up, inflight */
	pthread_cond_t acked;
	uint64_t inflight;		/* pipelined: checkpoint not yet acked */
	uint64_t sent_at;		/* pipelined: when inflight was sent */
	uint64_t lost_at;		/* when the link was lost */
	int grace_ms;
	bool unprotected;
	int corrupt_every;		/* --corrupt-every */
	struct netbuf *nb;
	FILE *events;			/* --event-log */
	uint8_t digest[TLS_DIGEST_LEN];	/* of the checkpoint in flight */
	uint8_t *buf;
	size_t cap;
	unsigned int gen;		/* of the link; older threads end */
	bool joining;			/* a secondary waits for a full one */
	bool joined;			/* its first checkpoint is in commit */
	bool done;			/* the guest has finished */
	int rejoin_ms;			/* --rejoin; 0: never */
	const char *peer;		/* the secondary's address and port */
	int peer_port;
	const struct options *o;
};

static struct link rlink = { .wl.fd = -1 };
static int drop_link;

#ifdef KEMARI_TEST_HOOKS
/*
 * The test build only: SIGUSR1 cuts the replication link (the split-brain
 * tests).  The product ignores SIGUSR1, which is logrotate's "reopen your
 * logs": it must not start a failover, nor end the primary.
 */
static void on_sigusr1(int sig)
{
	(void)sig;
	__atomic_store_n(&drop_link, 1, __ATOMIC_RELAXED);
}
#endif

/* With rlink.lock held. */
static void link__lost_locked(uint64_t seq, const char *why)
{
	if (!rlink.up)
		return;
	warn_msg("replication link lost at checkpoint %llu (%s): the guest is held at a sync point until %d ms have passed, in case the secondary fences this host",
		 (unsigned long long)seq, why, rlink.grace_ms);
	shutdown(rlink.wl.fd, SHUT_RDWR);
	rlink.up = false;
	rlink.inflight = 0;
	rlink.lost_at = now_ns();
	pthread_cond_broadcast(&rlink.acked);
}

/* When the grace after the lost link is over (lost_at must be set). */
static uint64_t link__grace_end(void)
{
	return rlink.lost_at + rlink.grace_ms * 1000000ULL;
}

/* At a sync point, with the VM stopped, once the link is down. */
static void link__unprotected(uint64_t seq)
{
	uint64_t until = link__grace_end(), now;

	if (rlink.unprotected || !rlink.lost_at)
		return;
	now = now_ns();
	if (now < until)
		usleep((until - now) / 1000);
	rlink.unprotected = true;
	if (rlink.nb)
		netbuf__release_all(rlink.nb);
	warn_msg("not fenced within %d ms: the guest runs UNPROTECTED from checkpoint %llu on",
		 rlink.grace_ms, (unsigned long long)seq);
}

static void link__lost(uint64_t seq, const char *why)
{
	pthread_mutex_lock(&rlink.lock);
	link__lost_locked(seq, why);
	pthread_mutex_unlock(&rlink.lock);
}

static void *link__heartbeat(void *arg)
{
	unsigned int gen = (unsigned int)(uintptr_t)arg;
	int r;

	/* The first at once: a new secondary has heard nothing since its hello. */
	for (;; usleep(rlink.heartbeat_ms * 1000)) {
		pthread_mutex_lock(&rlink.lock);
		if (rlink.gen != gen) {
			pthread_mutex_unlock(&rlink.lock);
			return NULL;
		}
		/* One cut a signal: a link that joins later is not cut. */
		if (__atomic_exchange_n(&drop_link, 0, __ATOMIC_RELAXED))
			link__lost_locked(0, "cut on request (SIGUSR1)");
		r = rlink.up ? wire__send(&rlink.wl, MSG_HEARTBEAT, now_ns(),
					  NULL, 0) : 0;
		if (r)
			link__lost_locked(0, wire__strerror(r));
		if (!rlink.up) {
			pthread_mutex_unlock(&rlink.lock);
			return NULL;
		}
		pthread_mutex_unlock(&rlink.lock);
	}
}

/* For the tests: which output records this checkpoint holds back. */
static void link__log_pending(struct vmm *vmm, uint64_t seq)
{
	unsigned int i;

	for (i = 0; rlink.events && i < vmm->vm.cfg.nr_vcpus; i++) {
		struct kvm_run *run = vmm->vm.vcpu[i].run;
		uint32_t data;

		if (run->exit_reason != KVM_EXIT_KEMARI_SYNC ||
		    !run->kemari.write.count ||
		    run->kemari.write.addr != ABI_PORT_OUTPUT(i))
			continue;
		memcpy(&data, run->kemari.data, sizeof(data));
		fprintf(rlink.events, "C %llu %u %u\n", (unsigned long long)seq,
			i, data);
	}
}

/*
 * With rlink.lock held: send checkpoint seq (in the test build, damaged if
 * the test asks).
 */
static int link__send_ckpt(struct vmm *vmm, uint64_t seq, unsigned int try)
{
	tls__digest(vmm->ck.p, vmm->ck.len, rlink.digest);
#ifdef KEMARI_TEST_HOOKS
	if (!try && rlink.corrupt_every && seq % rlink.corrupt_every == 0)
		return wire__send_damaged(&rlink.wl, MSG_CKPT, seq, vmm->ck.p,
					  vmm->ck.len, seq * 7919 % vmm->ck.len);
#else
	(void)try;
#endif
	return wire__send(&rlink.wl, MSG_CKPT, seq, vmm->ck.p, vmm->ck.len);
}

/* The text of the secondary's last message, safe to log. */
static const char *link__peer_text(const struct msg_hdr *h)
{
	static __thread char text[128];

	return util__printable(text, sizeof(text), rlink.buf,
			       h->len < rlink.cap ? h->len : rlink.cap);
}

/* An acknowledgment or refusal of checkpoint seq; false: link lost. */
static bool link__reply(uint64_t seq, int r, const struct msg_hdr *h)
{
	char why[128];

	/*
	 * A secondary that is slow to acknowledge is alive: the link still
	 * carries heartbeats both ways.  Tell it that this primary goes on
	 * unprotected, so that it stands down instead of fencing a healthy
	 * primary; it may not get the message, so the grace still applies.
	 */
	if (r == WIRE_TIMEOUT) {
		snprintf(why, sizeof(why), "not acknowledged within --ack-timeout %d ms; detached",
			 rlink.ack_timeout_ms);
		pthread_mutex_lock(&rlink.lock);
		if (rlink.up)
			wire__send(&rlink.wl, MSG_DETACH, seq, NULL, 0);
		link__lost_locked(seq, why);
		pthread_mutex_unlock(&rlink.lock);
		return false;
	}
	if (r) {
		link__lost(seq, wire__strerror(r));
		return false;
	}
	if (h->type == MSG_NAK) {
		snprintf(why, sizeof(why), "secondary refused it: %s",
			 link__peer_text(h));
		link__lost(seq, why);
		return false;
	}
	if (h->type != MSG_ACK || h->seq != seq) {
		link__lost(seq, "unexpected reply");
		return false;
	}
	/* The ack names what the secondary holds: exactly what was sent. */
	if (h->len != TLS_DIGEST_LEN ||
	    memcmp(rlink.buf, rlink.digest, TLS_DIGEST_LEN)) {
		link__lost(seq, "the acknowledgment's digest is not the checkpoint's");
		return false;
	}
	if (rlink.events)
		fprintf(rlink.events, "A %llu %llu\n", (unsigned long long)seq,
			(unsigned long long)now_ns());
	return true;
}

/*
 * At a sync point: is there a link to commit on?  A secondary that has
 * joined takes the first full checkpoint built after it joined.  Without
 * one the guest runs unprotected (once the grace is over, if a link was
 * lost).
 */
static bool link__ready(struct vmm *vmm, uint64_t seq)
{
	bool up;

	pthread_mutex_lock(&rlink.lock);
	if (!rlink.up && rlink.joining && vmm->ck_full) {
		rlink.joining = false;
		rlink.joined = true;
		rlink.up = true;
		rlink.lost_at = 0;
		/* From here a lost link is waited out again. */
		rlink.unprotected = false;
	}
	up = rlink.up;
	pthread_mutex_unlock(&rlink.lock);
	if (!up)
		link__unprotected(seq);
	return up;
}

/* The first acknowledgment on a link: heartbeats start, and it is said. */
static void link__protected(struct vmm *vmm)
{
	unsigned int gen;
	pthread_t t;

	pthread_mutex_lock(&rlink.lock);
	if (!rlink.joined) {
		pthread_mutex_unlock(&rlink.lock);
		return;
	}
	rlink.joined = false;
	gen = ++rlink.gen;
	pthread_mutex_unlock(&rlink.lock);
	if (pthread_create(&t, NULL, link__heartbeat, (void *)(uintptr_t)gen))
		die("cannot start the heartbeat thread");
	pthread_detach(t);
	info_msg("secondary has the full checkpoint %llu (%zu bytes); running protected, %s",
		 (unsigned long long)vmm->seq, vmm->ck.len,
		 rlink.pipelined ? "pipelined" : "synchronous");
}

/*
 * Synchronous: send vmm->ck and wait until the secondary has applied it.
 * A refused checkpoint is sent again, twice; then the primary detaches.
 */
static int primary__commit(struct vmm *vmm, uint64_t seq)
{
	unsigned int tries;
	struct msg_hdr h;
	int r;

	link__log_pending(vmm, seq);
	if (!link__ready(vmm, seq))
		return 0;
	for (tries = 0; tries < 3; tries++) {
		pthread_mutex_lock(&rlink.lock);
		if (!rlink.up) {
			pthread_mutex_unlock(&rlink.lock);
			link__unprotected(seq);
			return 0;
		}
		r = link__send_ckpt(vmm, seq, tries);
		pthread_mutex_unlock(&rlink.lock);
		/*
		 * A send that fails or stalls is a lost link, not a late ack.
		 * Either way this sync point's held write stays held for the
		 * grace, as at the next one: the secondary may have this
		 * checkpoint's predecessor only, and may still take over.
		 */
		if (r) {
			link__lost(seq, wire__strerror(r));
			link__unprotected(seq);
			return -EPIPE;
		}
		r = wire__recv(&rlink.wl, &h, &rlink.buf, &rlink.cap, 256,
			       rlink.ack_timeout_ms);
		if (r || h.type != MSG_NAK) {
			if (!link__reply(seq, r, &h)) {
				link__unprotected(seq);
				return -EPIPE;
			}
			link__protected(vmm);
			return 0;
		}
		warn_msg("the secondary refused checkpoint %llu (%s); sending it again",
			 (unsigned long long)seq, link__peer_text(&h));
	}
	pthread_mutex_lock(&rlink.lock);
	wire__send(&rlink.wl, MSG_DETACH, seq, NULL, 0);
	pthread_mutex_unlock(&rlink.lock);
	link__reply(seq, r, &h);
	link__unprotected(seq);
	return -EPROTO;
}

/*
 * Pipelined, before the checkpoint is built: the previous one is
 * acknowledged and its epoch released, so the output settles.
 */
static void primary__prepare_pipelined(struct vmm *vmm, uint64_t seq)
{
	(void)vmm;
	(void)seq;
	pthread_mutex_lock(&rlink.lock);
	while (rlink.up && rlink.inflight)
		pthread_cond_wait(&rlink.acked, &rlink.lock);
	pthread_mutex_unlock(&rlink.lock);
}

/*
 * Pipelined: close the epoch and send.  primary__prepare_pipelined, which
 * vmm__checkpoint() called, has waited for the previous acknowledgment.
 */
static int primary__commit_pipelined(struct vmm *vmm, uint64_t seq)
{
	int r;

	pthread_mutex_lock(&rlink.lock);
	if (!rlink.up) {
		pthread_mutex_unlock(&rlink.lock);
		link__unprotected(seq);
		return 0;
	}
	link__log_pending(vmm, seq);
	/*
	 * Count the bytes in the qdisc before closing the epoch: bytes that
	 * TCP sends in between are then carried, never waited for.
	 */
	if (rlink.nb)
		devices__mark(&vmm->dev);
	if (rlink.nb && netbuf__checkpoint(rlink.nb)) {
		link__lost_locked(seq, "cannot buffer network output");
		pthread_mutex_unlock(&rlink.lock);
		return -EIO;
	}
	r = link__send_ckpt(vmm, seq, 0);
	if (r) {
		link__lost_locked(seq, wire__strerror(r));
	} else {
		rlink.inflight = seq;
		rlink.sent_at = now_ns();
	}
	pthread_mutex_unlock(&rlink.lock);
	return r ? -EPIPE : 0;
}

/*
 * Pipelined: the acknowledgments, each releasing one epoch of output.  A
 * refused checkpoint is sent again, twice, from vmm->ck: the next one is
 * not built before this one is acknowledged (primary__prepare_pipelined).
 */
static void *link__reader(void *arg)
{
	struct vmm *vmm = arg;
	unsigned int refusals = 0;
	struct msg_hdr h;
	uint64_t seq;
	int r;

	for (;;) {
		r = wire__recv(&rlink.wl, &h, &rlink.buf, &rlink.cap, 256,
			       rlink.timeout_ms);
		pthread_mutex_lock(&rlink.lock);
		seq = rlink.inflight;
		/* The timeout counts from the send, not from the last ack. */
		if (!rlink.up || (r == WIRE_TIMEOUT &&
				  (!seq || now_ns() - rlink.sent_at <
					   rlink.ack_timeout_ms * 1000000ULL))) {
			bool up = rlink.up;

			pthread_mutex_unlock(&rlink.lock);
			if (!up)
				return NULL;
			continue;
		}
		if (!r && h.type == MSG_NAK && h.seq == seq && refusals < 2) {
			refusals++;
			warn_msg("the secondary refused checkpoint %llu (%s); sending it again",
				 (unsigned long long)seq, link__peer_text(&h));
			r = link__send_ckpt(vmm, seq, refusals);
			rlink.sent_at = now_ns();
			if (r)
				link__lost_locked(seq, wire__strerror(r));
			pthread_mutex_unlock(&rlink.lock);
			if (r)
				return NULL;
			continue;
		}
		if (!r && h.type == MSG_NAK)
			wire__send(&rlink.wl, MSG_DETACH, seq, NULL, 0);
		pthread_mutex_unlock(&rlink.lock);
		if (!link__reply(seq, r, &h))
			return NULL;
		refusals = 0;
		pthread_mutex_lock(&rlink.lock);
		if (rlink.nb && netbuf__release(rlink.nb))
			link__lost_locked(seq, "cannot release network output");
		rlink.inflight = 0;
		pthread_cond_broadcast(&rlink.acked);
		pthread_mutex_unlock(&rlink.lock);
	}
}

/*
 * The handshake (wire.h): the VM's shape, its CPUID and TSC rate, and the
 * timing rule.  Without --grace the primary takes the least grace the
 * secondary allows.  0, or -1 with the reason in why.
 */
static int primary__hello(const struct options *o, const struct vm *vm,
			  char *why, size_t len)
{
	struct wire_hello mine = {
		.version = WIRE_VERSION,
		.role = HELLO_PRIMARY,
		.nr_vcpus = o->vm.nr_vcpus,
		.mem_size = o->vm.mem_size,
		.timeout_ms = o->timeout_ms,
		.grace_ms = o->grace_ms < 0 ? 0 : o->grace_ms,
		.tsc_khz = vm->cfg.tsc_khz,
	}, peer;
	struct msg_hdr h;
	char what[320];
	int r;

	memcpy(mine.cpuid, vm->cpuid_digest, sizeof(mine.cpuid));
	r = wire__send(&rlink.wl, MSG_HELLO, 0, &mine, sizeof(mine));
	if (!r)
		r = wire__recv(&rlink.wl, &h, &rlink.buf, &rlink.cap, 512,
			       10000);
	if (r) {
		snprintf(why, len, "handshake with the secondary: %s",
			 wire__strerror(r));
		return -1;
	}
	if (h.type == MSG_NAK) {
		snprintf(why, len, "the secondary refused the handshake: %s",
			 link__peer_text(&h));
		return -1;
	}
	if (h.type != MSG_HELLO || h.len != sizeof(peer)) {
		snprintf(why, len, "handshake: the secondary answered with message type %u",
			 h.type);
		return -1;
	}
	memcpy(&peer, rlink.buf, sizeof(peer));
	if (wire__hello_check(&mine, &peer, what, sizeof(what))) {
		/* The secondary waits for a checkpoint: tell it why not. */
		wire__send(&rlink.wl, MSG_NAK, 0, what, strlen(what));
		snprintf(why, len, "handshake: refusing the secondary: %s", what);
		return -1;
	}
	rlink.grace_ms = mine.grace_ms ? mine.grace_ms :
			 wire__min_grace_ms(peer.timeout_ms,
					    peer.fence_timeout_ms);
	info_msg("handshake: the secondary times out after %u ms and fences for up to %u ms; this primary holds its output for %d ms after losing it",
		 peer.timeout_ms, peer.fence_timeout_ms, rlink.grace_ms);
	return 0;
}

/*
 * Connect to the secondary, authenticate it and shake hands: 0 with
 * rlink.wl ready (rlink.up is the caller's), or -1 with the reason in why.
 */
static int link__connect(const struct vm *vm, char *why, size_t len)
{
	const struct options *o = rlink.o;
	char what[256];
	int fd, r, tries;

	for (tries = 1;; tries++) {
		fd = wire__connect(rlink.peer, rlink.peer_port, 10000);
		if (fd < 0) {
			snprintf(why, len, "cannot reach the secondary at %s:%d: %s",
				 rlink.peer, rlink.peer_port, strerror(-fd));
			return -1;
		}
		pthread_mutex_lock(&rlink.lock);
		wire__link_close(&rlink.wl);
		wire__link_init(&rlink.wl, fd);
		pthread_mutex_unlock(&rlink.lock);
		/* Nothing is sent before the secondary proves it holds the key. */
#ifdef KEMARI_TEST_HOOKS
		if (o->plain_link)
			break;
#endif
		r = tls__client(&rlink.wl, &o->key, TLS_CLIENT_MS, what,
				sizeof(what));
		if (!r)
			break;
		/* It may be busy refusing others: try again, a few times. */
		if (r != -ETIMEDOUT || tries == 3) {
			snprintf(why, len, "the secondary at %s:%d is not authenticated: %s",
				 rlink.peer, rlink.peer_port, what);
			return -1;
		}
		warn_msg("the secondary at %s:%d: %s; connecting again",
			 rlink.peer, rlink.peer_port, what);
	}
	rlink.wl.send_timeout_ms = o->timeout_ms;
	return primary__hello(o, vm, why, len);
}

/*
 * Re-protection: while the guest runs unprotected, connect to the
 * secondary every --rejoin ms.  One that joins gets the next checkpoint,
 * a full one, asked for at once (and again each --rejoin ms: a freeze
 * that joined one under way may come too late for it).
 */
static void *link__rejoin(void *arg)
{
	struct vmm *vmm = arg;
	char why[400], said[400] = "";
	bool idle, joining;

	for (;;) {
		usleep(rlink.rejoin_ms * 1000);
		pthread_mutex_lock(&rlink.lock);
		if (rlink.done) {
			pthread_mutex_unlock(&rlink.lock);
			return NULL;
		}
		joining = rlink.joining;
		idle = !rlink.up && !joining &&
		       (rlink.unprotected ||
			(rlink.lost_at && now_ns() >= link__grace_end()));
		pthread_mutex_unlock(&rlink.lock);
		if (joining)
			vmm__request_checkpoint(vmm, true);
		if (!idle)
			continue;
		if (link__connect(&vmm->vm, why, sizeof(why))) {
			if (strcmp(why, said))
				warn_msg("re-protection: %s; trying again every %d ms",
					 why, rlink.rejoin_ms);
			snprintf(said, sizeof(said), "%s", why);
			continue;
		}
		said[0] = 0;
		pthread_mutex_lock(&rlink.lock);
		if (rlink.done) {
			wire__send(&rlink.wl, MSG_BYE, vmm->seq, NULL, 0);
			pthread_mutex_unlock(&rlink.lock);
			return NULL;
		}
		rlink.joining = true;
		pthread_mutex_unlock(&rlink.lock);
		info_msg("re-protection: the secondary at %s:%d joined; the next checkpoint is a full one",
			 rlink.peer, rlink.peer_port);
		vmm__request_checkpoint(vmm, true);
	}
}

/* What primary__main and primary__protect_later share. */
static void link__init(const struct options *o, const char *peer, int port)
{
	rlink.o = o;
	rlink.peer = peer;
	rlink.peer_port = port;
	rlink.timeout_ms = o->timeout_ms;
	rlink.ack_timeout_ms = o->ack_timeout_ms;
	rlink.heartbeat_ms = o->heartbeat_ms;
	rlink.grace_ms = o->grace_ms;
	rlink.rejoin_ms = o->rejoin_ms;
	rlink.corrupt_every = o->corrupt_every;
	pthread_mutex_init(&rlink.lock, NULL);
	pthread_cond_init(&rlink.acked, NULL);
}

static void link__start_rejoin(struct vmm *vmm)
{
	pthread_t t;

	if (!rlink.peer || !rlink.rejoin_ms)
		return;
	if (pthread_create(&t, NULL, link__rejoin, vmm))
		die("cannot start the re-protection thread");
	pthread_detach(t);
}

void primary__protect_later(struct vmm *vmm, const struct options *o)
{
	link__init(o, o->peer, o->peer_port ? o->peer_port : o->port);
	rlink.unprotected = true;	/* no secondary yet: nothing to wait for */
	vmm->dev.settle_ms = o->timeout_ms;
	vmm->commit = primary__commit;
	link__start_rejoin(vmm);
}

static void primary__connect(struct vmm *vmm, const struct options *o)
{
	char why[400];

	if (link__connect(&vmm->vm, why, sizeof(why)))
		die("%s", why);
	rlink.up = true;
	rlink.joined = true;
	rlink.pipelined = o->pipelined;
	vmm->dev.settle_ms = o->timeout_ms;
	if (o->plug_dev) {
		rlink.nb = netbuf__open(o->plug_dev);
		if (!rlink.nb)
			die("cannot buffer the output of %s", o->plug_dev);
		/* Nothing reaches the observer before the first release. */
		devices__mark(&vmm->dev);
	}
	if (o->event_log) {
		rlink.events = fopen(o->event_log, "w");
		if (!rlink.events)
			die("event log %s: %m", o->event_log);
		setvbuf(rlink.events, NULL, _IOLBF, 0);
	}
	vmm->commit = primary__commit;
}

int primary__finish(struct vmm *vmm)
{
	int r = vmm__checkpoint(vmm, false);

	if (r)
		return r;
	if (vmm->commit)
		vmm->commit(vmm, vmm->seq);
	pthread_mutex_lock(&rlink.lock);
	while (rlink.up && rlink.inflight)
		pthread_cond_wait(&rlink.acked, &rlink.lock);
	/* A secondary that joined but holds nothing yet stands down too. */
	if (rlink.up || rlink.joining) {
		wire__send(&rlink.wl, MSG_BYE, vmm->seq, NULL, 0);
		rlink.up = false;
		rlink.joining = false;
	}
	rlink.done = true;
	pthread_mutex_unlock(&rlink.lock);
	link__unprotected(vmm->seq);
	if (rlink.nb)
		netbuf__release_all(rlink.nb);
	return 0;
}

int primary__main(const struct options *o)
{
	static struct vmm vmm;
	pthread_t reader;
	uint64_t t_run;
	int r, obs, blk;

	prog_role = "primary";
#ifdef KEMARI_TEST_HOOKS
	signal(SIGUSR1, on_sigusr1);
#endif
	link__init(o, o->peer, o->port);

	r = vm__create(&vmm.vm, &o->vm, NULL);
	if (r)
		die("cannot create the VM: %s", strerror(-r));
	r = vm__load_guest(&vmm.vm, guest_image, guest_image_end - guest_image,
			   &o->guest);
	if (!r)
		r = vm__start_vcpus(&vmm.vm);
	if (r)
		die("cannot set up the guest: %s", strerror(-r));
	obs = o->observer ? wire__connect(o->observer, o->observer_port,
					  10000) : -1;
	if (o->observer && obs < 0)
		die("cannot reach the observer at %s:%d: %s", o->observer,
		    o->observer_port, strerror(-obs));
	if (obs >= 0)
		wire__send_timeout(obs, o->timeout_ms);
	blk = blk__open(o->block, o->vm.nr_vcpus);
	r = devices__init(&vmm.dev, &vmm.vm, obs, blk);
	if (!r)
		r = vmm__init(&vmm, &o->guest);
	if (r)
		die("cannot set up the devices: %s", strerror(-r));
	stats__init(&vmm.stats, o->stats_ms);

	/* The first checkpoint is the whole VM, before it runs. */
	r = vmm__checkpoint(&vmm, true);
	if (r)
		die("first checkpoint: %s", strerror(-r));
	if (o->peer)
		primary__connect(&vmm, o);
	else
		warn_msg("no secondary given: the guest runs UNPROTECTED");
	if (o->pipelined && !o->plug_dev)
		warn_msg("pipelined without --plug-dev: output is NOT held until acknowledged");
	link__start_rejoin(&vmm);
	if (rlink.up) {
		if (primary__commit(&vmm, vmm.seq))
			die("the secondary did not take the first checkpoint");
		if (rlink.pipelined) {
			vmm.prepare = primary__prepare_pipelined;
			vmm.commit = primary__commit_pipelined;
			pthread_create(&reader, NULL, link__reader, &vmm);
		}
	}

	t_run = now_ns();
	vmm__run(&vmm);
	info_msg("the guest ran %.3f s", (now_ns() - t_run) / 1e9);

	r = primary__finish(&vmm);
	if (r)
		die("last checkpoint: %s", strerror(-r));
	stats__summary(&vmm.stats);
	devices__exit(&vmm.dev);
	return vmm__verify(&vmm) ? EXIT_VERIFY_FAILED : 0;
}
