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
#include <sys/wait.h>
#include <unistd.h>

#include "replicator.h"
#include "util.h"
#include "vmm.h"
#include "wire.h"

/* Run the fencing command, killing it after --fence-timeout. */
static int secondary__run_fence(const struct options *o)
{
	uint64_t end = now_ns() + o->fence_timeout_ms * 1000000ULL;
	int status;
	pid_t pid = fork();

	if (pid == 0) {
		execl("/bin/sh", "sh", "-c", o->fence, (char *)NULL);
		_exit(127);
	}
	if (pid < 0)
		return -1;
	while (waitpid(pid, &status, WNOHANG) != pid) {
		if (now_ns() > end) {
			warn_msg("the fencing command took over %d ms: killed",
				 o->fence_timeout_ms);
			kill(pid, SIGKILL);
			waitpid(pid, &status, 0);
			return -1;
		}
		usleep(10000);
	}
	return status;
}

static int secondary__fence(const struct options *o, const struct replica *r)
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
	info_msg("the primary is silent: fencing with \"%s\"", o->fence);
	status = secondary__run_fence(o);
	if (status == -1 || !WIFEXITED(status) || WEXITSTATUS(status)) {
		warn_msg("fencing failed (status %#x): refusing to take over (checkpoint %llu kept)",
			 status, (unsigned long long)r->seq);
		return -EPERM;
	}
	return 0;
}

static int secondary__takeover(const struct options *o, struct replica *rep,
			       uint64_t silent_since)
{
	static struct vmm vmm;
	struct vm_config cfg = o->vm;
	unsigned int i, pending = 0;
	int r, obs;

	cfg.tsc_khz = rep->tsc_khz;
	r = vm__create(&vmm.vm, &cfg, rep->mem);
	if (!r)
		r = vm__restore_irq(&vmm.vm, &rep->irq);
	for (i = 0; !r && i < cfg.nr_vcpus; i++) {
		r = vcpu__restore(&vmm.vm.vcpu[i], &rep->vcpu[i]);
		pending += !!rep->vcpu[i].pending.write.count;
	}
	if (!r)
		r = vm__restore_tsc(&vmm.vm, rep->vcpu);
	if (r)
		die("cannot restore checkpoint %llu: %s",
		    (unsigned long long)rep->seq, strerror(-r));
	obs = o->observer ? wire__connect(o->observer, o->observer_port,
					  o->timeout_ms) : -1;
	if (o->observer && obs < 0)
		warn_msg("cannot reach the observer at %s:%d (%s): output is dropped",
			 o->observer, o->observer_port, strerror(-obs));
	if (obs >= 0)
		wire__send_timeout(obs, o->timeout_ms);
	r = devices__init(&vmm.dev, &vmm.vm, obs, rep->blk_fd);
	if (!r)
		r = vmm__init(&vmm, &o->guest);
	if (r)
		die("cannot set up the devices: %s", strerror(-r));
	/*
	 * Output the primary held until this checkpoint's acknowledgment
	 * may never have left: send it (again; the outside world dedups).
	 */
	devices__resend(&vmm.dev, rep->out, rep->nr_out);
	vmm.seq = rep->seq;
	stats__init(&vmm.stats, o->stats_ms);
	info_msg("takeover: resuming checkpoint %llu with %u pending write(s) and %u held record(s) sent again, %.1f ms after the primary's last message",
		 (unsigned long long)rep->seq, pending, rep->nr_out,
		 (now_ns() - silent_since) / 1e6);
	vmm__run(&vmm);
	devices__exit(&vmm.dev);
	return vmm__verify(&vmm) ? EXIT_VERIFY_FAILED : 0;
}

/* Apply one message; returns false when the link is to be given up. */
static bool secondary__message(const struct options *o, int fd,
			       struct replica *rep, const struct msg_hdr *h,
			       const uint8_t *buf)
{
	const char *why;

	switch (h->type) {
	case MSG_HEARTBEAT:
		return true;
	case MSG_CKPT:
		if (replica__apply(rep, buf, h->len, &why)) {
			warn_msg("checkpoint %llu refused: %s; keeping checkpoint %llu",
				 (unsigned long long)h->seq, why,
				 (unsigned long long)rep->seq);
			wire__send(fd, MSG_NAK, h->seq, why, strlen(why));
			return true;
		}
		if (o->ack_delay_ms)
			usleep(o->ack_delay_ms * 1000);
		return !wire__send(fd, MSG_ACK, h->seq, NULL, 0);
	default:
		warn_msg("unknown message type %u: dropping the link", h->type);
		return false;
	}
}

int secondary__main(const struct options *o)
{
	static struct replica rep;
	uint64_t max_len = o->vm.mem_size + o->vm.mem_size / 256 + (1 << 20);
	uint64_t last_heard;
	struct msg_hdr h;
	uint8_t *buf = NULL;
	size_t cap = 0;
	int lfd, fd, r;

	prog_role = "secondary";
	if (replica__init(&rep, o->vm.mem_size, o->vm.nr_vcpus,
			  blk__open(o->block, o->vm.nr_vcpus),
			  o->vm.nr_vcpus * ABI_SECTORS_PER_VCPU))
		die("no memory for the replica");
	lfd = wire__listen("0.0.0.0", o->port);
	if (lfd < 0)
		die("cannot listen on port %d: %s", o->port, strerror(-lfd));
	info_msg("waiting for the primary on port %d", o->port);
	fd = wire__accept(lfd, 60000);
	if (fd < 0)
		die("no primary connected: %s", strerror(-fd));
	close(lfd);
	wire__send_timeout(fd, o->timeout_ms);

	last_heard = now_ns();
	for (;;) {
		/* The first, full, checkpoint takes the primary a while. */
		r = wire__recv(fd, &h, &buf, &cap, max_len,
			       rep.valid ? o->timeout_ms : 60000);
		if (r == WIRE_BAD_PAYLOAD) {
			warn_msg("message %llu refused: %s; keeping checkpoint %llu",
				 (unsigned long long)h.seq, wire__strerror(r),
				 (unsigned long long)rep.seq);
			wire__send(fd, MSG_NAK, h.seq, "checksum", 8);
			continue;
		}
		if (r) {
			warn_msg("replication link: %s", wire__strerror(r));
			break;
		}
		last_heard = now_ns();
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
		if (!secondary__message(o, fd, &rep, &h, buf))
			break;
	}
	close(fd);

	if (!rep.valid) {
		warn_msg("no complete checkpoint yet: nothing to take over from");
		return EXIT_REFUSED;
	}
	if (secondary__fence(o, &rep))
		return EXIT_REFUSED;
	return secondary__takeover(o, &rep, last_heard);
}
