// SPDX-License-Identifier: GPL-2.0-only
/*
 * The secondary: applies checkpoints, whole or not at all, and takes over
 * when the primary is gone.
 *
 * The secondary cannot tell a dead primary from a dead link.  So when the
 * link goes quiet for the heartbeat timeout, it takes over only if the
 * fencing command (--fence) succeeds, that is, says that the primary is
 * dead or has made it so.  Without one it refuses: a second active copy of
 * the guest (split brain) is worse than none.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "replicator.h"
#include "util.h"
#include "tls.h"
#include "vmm.h"
#include "wire.h"

/*
 * --fence-file: a fencing command that holds credentials (a BMC password,
 * an API token) must not sit in argv, where every user sees it.  The file
 * must be a regular file of this user that no one else may read or write
 * (mode 0600 or stricter); its contents, up to the first NUL, are the
 * command for /bin/sh -c.
 */
const char *secondary__read_fence_file(const char *path)
{
	static char cmd[4096];
	struct stat st;
	ssize_t n;
	int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);

	if (fd < 0)
		die("--fence-file %s: %s", path, strerror(errno));
	if (fstat(fd, &st) || !S_ISREG(st.st_mode))
		die("--fence-file %s: not a regular file", path);
	if (st.st_uid != geteuid() || (st.st_mode & 077))
		die("--fence-file %s: mode %04o, owner %u: it must be yours and mode 0600 or stricter, since it may hold credentials",
		    path, (unsigned int)(st.st_mode & 07777),
		    (unsigned int)st.st_uid);
	n = read(fd, cmd, sizeof(cmd) - 1);
	close(fd);
	if (n < 0)
		die("--fence-file %s: %s", path, strerror(errno));
	if ((size_t)n == sizeof(cmd) - 1)
		die("--fence-file %s: longer than %zu bytes", path,
		    sizeof(cmd) - 2);
	cmd[n] = 0;
	if (!cmd[strspn(cmd, " \t\n")])
		die("--fence-file %s: empty", path);
	return cmd;
}

/*
 * Run the fencing command in a process group of its own, its stdin
 * /dev/null, and kill the whole group after --fence-timeout: a fence agent
 * that forks (ssh, ipmitool under a wrapper) must not outlive its time
 * limit and fence the primary after the secondary has given up.  Whatever
 * it left behind when it exits is killed too.
 */
static int secondary__run_fence(const struct options *o)
{
	uint64_t end = now_ns() + o->fence_timeout_ms * 1000000ULL;
	int status, fd;
	pid_t pid = fork();

	if (pid == 0) {
		/* main() ignores these; a fence agent must get its defaults. */
		signal(SIGPIPE, SIG_DFL);
		signal(SIGUSR1, SIG_DFL);
		setpgid(0, 0);
		fd = open("/dev/null", O_RDONLY);
		if (fd >= 0 && fd != STDIN_FILENO) {
			dup2(fd, STDIN_FILENO);
			close(fd);
		}
		execl("/bin/sh", "sh", "-c", o->fence, (char *)NULL);
		_exit(127);
	}
	if (pid < 0)
		return -1;
	/* Both sides set the group, so that kill(-pid) never misses it. */
	setpgid(pid, pid);
	while (waitpid(pid, &status, WNOHANG) != pid) {
		if (now_ns() > end) {
			warn_msg("the fencing command took over %d ms: killed with its process group",
				 o->fence_timeout_ms);
			kill(-pid, SIGKILL);
			waitpid(pid, &status, 0);
			return -1;
		}
		usleep(10000);
	}
	kill(-pid, SIGKILL);
	return status;
}

/*
 * What the fencing command is told, in its environment: whom to fence
 * (KEMARI_FENCE_PEER, the primary's address as the secondary saw it), what
 * to do (KEMARI_FENCE_ACTION: "off", that is, cut the primary's output
 * and stop it; see README.md on what "dead" must mean), why
 * (KEMARI_FENCE_REASON) and the checkpoint the secondary would resume
 * (KEMARI_CHECKPOINT).
 */
static int secondary__fence(const struct options *o, const struct replica *r,
			    const char *peer, const char *reason)
{
	char seq[32];
	int status;

	if (!o->fence) {
		warn_msg("the primary is silent and no fencing command is configured: refusing to take over, the primary may still be running (checkpoint %llu kept)",
			 (unsigned long long)r->seq);
		return -EPERM;
	}
	snprintf(seq, sizeof(seq), "%llu", (unsigned long long)r->seq);
	setenv("KEMARI_CHECKPOINT", seq, 1);
	setenv("KEMARI_FENCE_PEER", peer, 1);
	setenv("KEMARI_FENCE_ACTION", "off", 1);
	setenv("KEMARI_FENCE_REASON", reason, 1);
	info_msg("the primary (%s) is lost (%s): fencing%s", peer, reason,
		 o->fence_file ? " with --fence-file" : "");
	status = secondary__run_fence(o);
	if (status == -1 || !WIFEXITED(status) || WEXITSTATUS(status)) {
		warn_msg("fencing failed (status %#x): refusing to take over (checkpoint %llu kept)",
			 status, (unsigned long long)r->seq);
		return -EPERM;
	}
	return 0;
}

/* The primary's address and port, for the fencing command. */
static void secondary__peer_name(int fd, char *buf, size_t len)
{
	struct sockaddr_in sa;
	socklen_t sl = sizeof(sa);
	char ip[INET_ADDRSTRLEN];

	if (getpeername(fd, (struct sockaddr *)&sa, &sl) ||
	    sa.sin_family != AF_INET ||
	    !inet_ntop(AF_INET, &sa.sin_addr, ip, sizeof(ip)))
		return;
	snprintf(buf, len, "%s:%u", ip, ntohs(sa.sin_port));
}

/*
 * The VMM that takes over: its VM is the replica's shadow, created at the
 * handshake on the replica's memory and loaded with every checkpoint.
 */
static struct vmm takeover_vmm;

/*
 * Run the shadow VM from the replica's checkpoint.  Its state was loaded
 * and checked by KVM when the checkpoint came; it is loaded once more
 * (a refusal may have left the shadow elsewhere), then kvmclock and the
 * TSCs go on from the checkpoint's values (kemari.rst 7).
 */
static int secondary__takeover(const struct options *o, struct replica *rep,
			       uint64_t silent_since)
{
	struct vmm *vmm = &takeover_vmm;
	unsigned int i, pending = 0;
	int r, obs;

	obs = o->observer ? wire__connect(o->observer, o->observer_port,
					  o->timeout_ms) : -1;
	if (o->observer && obs < 0)
		warn_msg("cannot reach the observer at %s:%d (%s): output is dropped",
			 o->observer, o->observer_port, strerror(-obs));
	if (obs >= 0)
		wire__send_timeout(obs, o->timeout_ms);
	r = devices__init(&vmm->dev, &vmm->vm, obs, rep->blk_fd);
	if (!r)
		r = vmm__init(vmm, &o->guest);
	if (r) {
		warn_msg("cannot set up the devices for checkpoint %llu: %s: the guest is not resumed",
			 (unsigned long long)rep->seq, strerror(-r));
		return EXIT_TAKEOVER_FAILED;
	}
	/*
	 * Last, so that kvmclock and the TSCs go on from the checkpoint's
	 * values when the guest runs, not after the observer's connect.
	 */
	r = vm__restore_irq(&vmm->vm, &rep->irq);
	for (i = 0; !r && i < vmm->vm.cfg.nr_vcpus; i++) {
		r = vcpu__restore(&vmm->vm.vcpu[i], &rep->vcpu[i]);
		pending += !!rep->vcpu[i].pending.write.count;
	}
	if (!r)
		r = vm__restore_tsc(&vmm->vm, rep->vcpu);
	if (r) {
		warn_msg("cannot restore checkpoint %llu: %s: the guest is not resumed",
			 (unsigned long long)rep->seq, strerror(-r));
		return EXIT_TAKEOVER_FAILED;
	}
	/*
	 * Output the primary held until this checkpoint's acknowledgment
	 * may never have left: send it (again; the outside world dedups).
	 */
	devices__resend(&vmm->dev, rep->out, rep->nr_out);
	vmm->seq = rep->seq;
	stats__init(&vmm->stats, o->stats_ms);
	if (o->peer)
		primary__protect_later(vmm, o);
	info_msg("takeover: resuming checkpoint %llu with %u pending write(s) and %u held record(s) sent again, %.1f ms after the primary's last message",
		 (unsigned long long)rep->seq, pending, rep->nr_out,
		 (now_ns() - silent_since) / 1e6);
	vmm__run(vmm);
	/* Its own secondary must stand down, not take a finished guest over. */
	if (o->peer) {
		r = primary__finish(vmm);
		if (r)
			warn_msg("last checkpoint: %s", strerror(-r));
	}
	devices__exit(&vmm->dev);
	return vmm__verify(vmm) ? EXIT_VERIFY_FAILED : 0;
}

/* Apply one message; returns false when the link is to be given up. */
static bool secondary__message(const struct options *o, struct wire_link *l,
			       struct replica *rep, const struct msg_hdr *h,
			       const uint8_t *buf)
{
	uint8_t digest[TLS_DIGEST_LEN];
	const char *why;
	int r;

	switch (h->type) {
	case MSG_HEARTBEAT:
		return true;
	case MSG_CKPT:
		if (replica__apply(rep, buf, h->len, h->seq, &why)) {
			warn_msg("checkpoint %llu refused: %s; keeping checkpoint %llu",
				 (unsigned long long)h->seq, why,
				 (unsigned long long)rep->seq);
			wire__send(l, MSG_NAK, h->seq, why, strlen(why));
			return true;
		}
#ifdef KEMARI_TEST_HOOKS
		if (o->ack_delay_ms)
			usleep(o->ack_delay_ms * 1000);
#else
		(void)o;
#endif
		/* The ack names what is held: the checkpoint's digest. */
		tls__digest(buf, h->len, digest);
		r = wire__send(l, MSG_ACK, h->seq, digest, sizeof(digest));
		/*
		 * What the primary sent before it went (a detach, say) may
		 * still wait to be read: go on reading to the link's end.
		 */
		if (r)
			warn_msg("cannot acknowledge checkpoint %llu: %s",
				 (unsigned long long)h->seq, wire__strerror(r));
		return true;
	default:
		warn_msg("unknown message type %u: dropping the link", h->type);
		return false;
	}
}

/* The longest a fence may run, as the handshake states it: 0 without one. */
static uint32_t secondary__fence_ms(const struct options *o)
{
	return o->fence ? o->fence_timeout_ms : 0;
}

/*
 * The shadow VM (ckpt.h), on the replica's memory, with the guest's TSC
 * rate: a host that cannot give the guest that rate, or cannot create its
 * VM, refuses the primary here, before any checkpoint.
 */
static int secondary__shadow(const struct options *o, struct replica *rep,
			     uint32_t tsc_khz, char *why, size_t len)
{
	struct vm_config cfg = o->vm;
	int r;

	if (!tsc_khz)
		return 0;	/* wire__hello_check() refuses it */
	/* A primary that joins again (after a bad record) meets the same VM. */
	if (rep->shadow) {
		if (tsc_khz == rep->tsc_khz)
			return 0;
		snprintf(why, len, "the guest's TSC rate of %u kHz is not the %u kHz of this secondary's VM",
			 tsc_khz, rep->tsc_khz);
		return -EINVAL;
	}
	r = kvm__check_tsc_khz(tsc_khz, why, len);
	if (r)
		return r;
	cfg.tsc_khz = tsc_khz;
	r = vm__create(&takeover_vmm.vm, &cfg, rep->mem);
	if (r) {
		snprintf(why, len, "this host cannot give the guest its TSC rate of %u kHz, or cannot create its VM (%s; the ioctl is logged)",
			 tsc_khz, strerror(-r));
		return r;
	}
	rep->shadow = &takeover_vmm.vm;
	rep->tsc_khz = tsc_khz;
	return 0;
}

/*
 * The handshake (wire.h).  Returns the grace the primary holds its output
 * for after losing the link, or 0 if the primary is refused.
 */
static uint32_t secondary__hello(const struct options *o, struct wire_link *l,
				 struct replica *rep)
{
	struct wire_hello mine = {
		.version = WIRE_VERSION,
		.role = HELLO_SECONDARY,
		.nr_vcpus = o->vm.nr_vcpus,
		.mem_size = o->vm.mem_size,
		.timeout_ms = o->timeout_ms,
		.fence_timeout_ms = secondary__fence_ms(o),
	}, peer;
	uint8_t *buf = NULL;
	struct msg_hdr h;
	char why[320];
	size_t cap = 0;
	int r;

	r = wire__recv(l, &h, &buf, &cap, 512, 10000);
	if (r) {
		warn_msg("handshake with the primary: %s", wire__strerror(r));
		free(buf);
		return 0;
	}
	if (h.type != MSG_HELLO || h.len != sizeof(peer)) {
		snprintf(why, sizeof(why), "the first message is type %u, not a handshake",
			 h.type);
	} else {
		memcpy(&peer, buf, sizeof(peer));
		/*
		 * Everything but the CPUID first, so that a refusal names
		 * the first thing wrong; the CPUID compared is the one the
		 * shadow's vCPUs got.
		 */
		memcpy(mine.cpuid, peer.cpuid, sizeof(mine.cpuid));
		if (!wire__hello_check(&mine, &peer, why, sizeof(why)) &&
		    !secondary__shadow(o, rep, peer.tsc_khz, why, sizeof(why))) {
			memcpy(mine.cpuid, takeover_vmm.vm.cpuid_digest,
			       sizeof(mine.cpuid));
			if (!wire__hello_check(&mine, &peer, why, sizeof(why)))
				why[0] = 0;
		}
	}
	free(buf);
	if (why[0]) {
		warn_msg("handshake: refusing the primary: %s", why);
		wire__send(l, MSG_NAK, 0, why, strlen(why));
		return 0;
	}
	if (wire__send(l, MSG_HELLO, 0, &mine, sizeof(mine)))
		return 0;
	return peer.grace_ms ? peer.grace_ms :
	       wire__min_grace_ms(mine.timeout_ms, mine.fence_timeout_ms);
}

/*
 * When the primary last spoke, on this host's clock.  Each heartbeat
 * carries the primary's monotonic time of sending (wire.h).  The least
 * difference between receipt and that time seen so far is the clocks'
 * offset plus the quickest delivery; a heartbeat read later than that
 * waited in a queue (this secondary stopped, its host or the link
 * stalled), and the primary counts as heard when it sent it, not when it
 * was read: it may have given up on this secondary meanwhile.
 */
static void secondary__heard(const struct options *o, const struct msg_hdr *h,
			     uint64_t *last_heard, int64_t *offset, bool *warned)
{
	uint64_t now = now_ns(), sent;
	int64_t d = (int64_t)now - (int64_t)h->seq;

	if (d < *offset)
		*offset = d;
	sent = (uint64_t)((int64_t)h->seq + *offset);
	if (now - sent > o->timeout_ms * 1000000ULL && !*warned) {
		warn_msg("a heartbeat read now was sent %llu ms ago: this secondary or the link was stalled; the primary counts as heard when it sent it",
			 (unsigned long long)(now - sent) / 1000000);
		*warned = true;
	}
	if (sent > *last_heard)
		*last_heard = sent;
}

/*
 * The takeover bound: once the primary has been silent this long it may
 * have gone on unprotected and released output that no checkpoint here
 * holds.  Half the margin is left for the clock rates and the network, and
 * half for the fence's own slack (README.md, "Split brain").
 */
static bool secondary__too_late(const struct options *o, uint64_t last_heard,
				uint32_t grace_ms, const char *when)
{
	uint64_t bound = grace_ms - wire__margin_ms(o->timeout_ms,
						    secondary__fence_ms(o)) / 2;
	uint64_t silent = (now_ns() - last_heard) / 1000000;

	if (silent <= bound)
		return false;
	warn_msg("%s, the primary has been silent for %llu ms, past the bound of %llu ms it agreed to (its grace %u ms less the margin): it may have gone on unprotected and released output that this checkpoint does not hold; refusing to take over",
		 when, (unsigned long long)silent, (unsigned long long)bound,
		 grace_ms);
	return true;
}

/*
 * Wait for the primary: the first connection whose peer proves that it
 * holds the key.  Any other is refused and closed, and the secondary
 * keeps listening: a port scan or a health check takes no one's place.
 */
static int secondary__pair(const struct options *o, int lfd,
			   struct wire_link *l, char *peer, size_t len)
{
	uint64_t end = now_ns() + 60000 * 1000000ULL;
	char why[256];
	int fd;

	for (;;) {
		uint64_t now = now_ns();

		fd = now < end ? wire__accept(lfd, (end - now) / 1000000 + 1) :
				 -ETIMEDOUT;
		/* accept(2): a connection that went before it was taken. */
		if (fd == -EAGAIN || fd == -ECONNABORTED || fd == -EPROTO ||
		    fd == -EINTR)
			continue;
		if (fd < 0)
			break;
		snprintf(peer, len, "unknown");
		secondary__peer_name(fd, peer, len);
		wire__link_init(l, fd);
#ifdef KEMARI_TEST_HOOKS
		if (o->plain_link)
			break;
#endif
		if (!tls__server(l, &o->key, TLS_SERVER_MS, why, sizeof(why)))
			break;
		warn_msg("refused a connection from %s: %s; still waiting for the primary",
			 peer, why);
		wire__link_close(l);
	}
	return fd < 0 ? fd : 0;
}

/* While paired: refuse every other connection, and keep listening. */
static void secondary__refuse_others(int lfd)
{
	char name[64];
	int fd, n = 0;

	/* A few at a time: a flood must not starve the primary's link. */
	while (n++ < 8 && (fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC)) >= 0) {
		snprintf(name, sizeof(name), "unknown");
		secondary__peer_name(fd, name, sizeof(name));
		warn_msg("refused a connection from %s: this secondary is paired",
			 name);
		close(fd);
	}
}

int secondary__main(const struct options *o)
{
	static struct replica rep;
	uint64_t max_len = o->vm.mem_size + o->vm.mem_size / 256 + (1 << 20);
	bool warned, rejoin = false;
	int64_t offset;
	uint64_t last_heard;
	uint32_t grace_ms;
	struct msg_hdr h;
	char peer[64] = "unknown", reason[128] = "replication link lost";
	struct wire_link l;
	uint8_t *buf = NULL;
	size_t cap = 0;
	int lfd, r;

	prog_role = "secondary";
	if (replica__init(&rep, o->vm.mem_size, o->vm.nr_vcpus,
			  blk__open(o->block, o->vm.nr_vcpus),
			  o->vm.nr_vcpus * ABI_SECTORS_PER_VCPU))
		die("no memory for the replica");
	lfd = wire__listen(o->listen, o->port);
	if (lfd < 0)
		die("cannot listen on %s port %d: %s", o->listen, o->port,
		    strerror(-lfd));
	fcntl(lfd, F_SETFL, fcntl(lfd, F_GETFL) | O_NONBLOCK);
	info_msg("waiting for the primary on %s port %d", o->listen, o->port);
pair:
	r = secondary__pair(o, lfd, &l, peer, sizeof(peer));
	if (r && !rejoin)
		die("no primary connected: %s", strerror(-r));
	if (r) {
		warn_msg("the primary did not join again (%s); standing down",
			 strerror(-r));
		close(lfd);
		return EXIT_REFUSED;
	}
	l.send_timeout_ms = o->timeout_ms;
	grace_ms = secondary__hello(o, &l, &rep);
	if (!grace_ms) {
		wire__link_close(&l);
		return EXIT_REFUSED;
	}

	last_heard = now_ns();
	offset = INT64_MAX;
	warned = false;
	for (;;) {
		/* The first, full, checkpoint takes the primary a while. */
		r = wire__recv(&l, &h, &buf, &cap, max_len,
			       rep.valid ? o->timeout_ms : 60000);
		secondary__refuse_others(lfd);
		if (r == WIRE_BAD_PAYLOAD) {
			warn_msg("message %llu refused: %s; keeping checkpoint %llu",
				 (unsigned long long)h.seq, wire__strerror(r),
				 (unsigned long long)rep.seq);
			wire__send(&l, MSG_NAK, h.seq, "checksum", 8);
			continue;
		}
		if (r == WIRE_BAD_RECORD) {
			/*
			 * A record that fails authentication was sent by
			 * someone: the path is attacked or damaged, and the
			 * primary may well be alive.  TLS ends the session.
			 * Fencing would kill a healthy primary, so this
			 * secondary stands down without fencing.  The primary
			 * goes on unprotected after its grace and joins again
			 * (--rejoin): listen for it, with the same key, and
			 * start again from its full checkpoint.
			 */
			warn_msg("replication link: %s after checkpoint %llu: the link is attacked or damaged, not the primary dead; standing down without fencing, and listening for the primary to join again",
				 wire__strerror(r), (unsigned long long)rep.seq);
			wire__link_close(&l);
			rep.valid = false;
			rejoin = true;
			goto pair;
		}
		if (r) {
			warn_msg("replication link: %s", wire__strerror(r));
			snprintf(reason, sizeof(reason), "replication link: %s",
				 wire__strerror(r));
			break;
		}
		if (h.type == MSG_HEARTBEAT)
			secondary__heard(o, &h, &last_heard, &offset, &warned);
		if (h.type == MSG_BYE) {
			info_msg("the primary finished the guest at checkpoint %llu; standing down",
				 (unsigned long long)rep.seq);
			return 0;
		}
		if (h.type == MSG_DETACH) {
			warn_msg("the primary detached at checkpoint %llu and runs unprotected; standing down",
				 (unsigned long long)rep.seq);
			return EXIT_REFUSED;
		}
		if (h.type == MSG_NAK && !rep.valid) {
			char text[128];

			warn_msg("the primary refused this secondary's handshake: %s",
				 util__printable(text, sizeof(text), buf,
						 h.len < cap ? h.len : cap));
			wire__link_close(&l);
			close(lfd);
			return EXIT_REFUSED;
		}
		if (!secondary__message(o, &l, &rep, &h, buf))
			break;
	}
	wire__link_close(&l);
	close(lfd);

	if (!rep.valid) {
		warn_msg("no complete checkpoint yet: nothing to take over from");
		return EXIT_REFUSED;
	}
	if (secondary__too_late(o, last_heard, grace_ms, "before running the fence") ||
	    secondary__fence(o, &rep, peer, reason) ||
	    secondary__too_late(o, last_heard, grace_ms, "when the fence returned"))
		return EXIT_REFUSED;
	return secondary__takeover(o, &rep, last_heard);
}
