// SPDX-License-Identifier: GPL-2.0-only
/*
 * The primary: runs the guest, and at every sync point sends the
 * checkpoint to the secondary and waits for its acknowledgment before the
 * held write may complete.  If the secondary refuses a checkpoint or the
 * link fails, the guest keeps running unprotected, and the primary says so.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "replicator.h"
#include "util.h"
#include "vmm.h"
#include "wire.h"

struct link {
	int fd;
	bool up;
	int timeout_ms;
	int heartbeat_ms;
	pthread_mutex_t send_lock;
	pthread_t heartbeat;
	uint8_t *buf;
	size_t cap;
};

static struct link rlink = { .fd = -1 };
static volatile sig_atomic_t drop_link;

/* SIGUSR1 cuts the replication link: the split-brain test's hook. */
static void on_sigusr1(int sig)
{
	(void)sig;
	drop_link = 1;
}

static void link__lost(struct vmm *vmm, const char *why)
{
	pthread_mutex_lock(&rlink.send_lock);
	if (rlink.up) {
		warn_msg("replication link lost at checkpoint %llu (%s): the guest keeps running UNPROTECTED",
			 (unsigned long long)vmm->seq, why);
		shutdown(rlink.fd, SHUT_RDWR);
		rlink.up = false;
	}
	pthread_mutex_unlock(&rlink.send_lock);
}

static void *link__heartbeat(void *arg)
{
	struct vmm *vmm = arg;
	int r;

	for (;;) {
		usleep(rlink.heartbeat_ms * 1000);
		if (drop_link) {
			link__lost(vmm, "cut on request (SIGUSR1)");
			return NULL;
		}
		pthread_mutex_lock(&rlink.send_lock);
		r = rlink.up ? wire__send(rlink.fd, MSG_HEARTBEAT, 0, NULL, 0) : 0;
		pthread_mutex_unlock(&rlink.send_lock);
		if (r)
			link__lost(vmm, wire__strerror(r));
		if (!rlink.up)
			return NULL;
	}
}

/* Send vmm->ck and wait until the secondary has applied it. */
static int primary__commit(struct vmm *vmm, uint64_t seq)
{
	struct msg_hdr h;
	char why[128];
	int r;

	if (!rlink.up)
		return 0;
	pthread_mutex_lock(&rlink.send_lock);
	r = wire__send(rlink.fd, MSG_CKPT, seq, vmm->ck.p, vmm->ck.len);
	pthread_mutex_unlock(&rlink.send_lock);
	if (!r)
		r = wire__recv(rlink.fd, &h, &rlink.buf, &rlink.cap, 256,
			       rlink.timeout_ms);
	if (r) {
		link__lost(vmm, wire__strerror(r));
		return r;
	}
	if (h.type == MSG_NAK) {
		snprintf(why, sizeof(why), "secondary refused it: %.*s",
			 (int)h.len, rlink.buf);
		link__lost(vmm, why);
		return -EPROTO;
	}
	if (h.type != MSG_ACK || h.seq != seq) {
		link__lost(vmm, "unexpected reply");
		return -EPROTO;
	}
	return 0;
}

int blk__open(const char *path, unsigned int nr_vcpus)
{
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

	if (fd < 0 || ftruncate(fd, (off_t)nr_vcpus * ABI_SECTORS_PER_VCPU *
				    ABI_SECTOR_SIZE))
		die("block device %s: %m", path);
	return fd;
}

int primary__main(const struct options *o)
{
	static struct vmm vmm;
	int r, obs, blk;

	prog_role = "primary";
	signal(SIGUSR1, on_sigusr1);
	rlink.timeout_ms = o->timeout_ms;
	rlink.heartbeat_ms = o->heartbeat_ms;
	pthread_mutex_init(&rlink.send_lock, NULL);

	r = vm__create(&vmm.vm, &o->vm, NULL);
	if (r)
		die("cannot create the VM: %s", strerror(-r));
	r = vm__load_guest(&vmm.vm, guest_image, guest_image_end - guest_image,
			   &o->guest);
	if (!r)
		r = vm__start_vcpus(&vmm.vm);
	if (r)
		die("cannot set up the guest: %s", strerror(-r));
	obs = o->observer ? wire__connect(o->observer, o->observer_port, 5000) : -1;
	if (o->observer && obs < 0)
		die("cannot reach the observer at %s:%d: %s", o->observer,
		    o->observer_port, strerror(-obs));
	blk = blk__open(o->block, o->vm.nr_vcpus);
	r = devices__init(&vmm.dev, &vmm.vm, obs, blk);
	if (!r)
		r = vmm__init(&vmm, &o->guest);
	if (r)
		die("cannot set up the devices: %s", strerror(-r));
	stats__init(&vmm.stats, o->stats_ms);

	if (o->peer) {
		rlink.fd = wire__connect(o->peer, o->port, 10000);
		if (rlink.fd < 0)
			die("cannot reach the secondary at %s:%d: %s", o->peer,
			    o->port, strerror(-rlink.fd));
		rlink.up = true;
		vmm.commit = primary__commit;
	} else {
		warn_msg("no secondary given: the guest runs UNPROTECTED");
	}

	/* The first checkpoint is the whole VM, before it runs. */
	r = vmm__checkpoint(&vmm, true);
	if (r)
		die("first checkpoint: %s", strerror(-r));
	if (rlink.up) {
		if (primary__commit(&vmm, vmm.seq))
			die("the secondary did not take the first checkpoint");
		info_msg("secondary has the full checkpoint (%zu bytes); running protected",
			 vmm.ck.len);
		pthread_create(&rlink.heartbeat, NULL, link__heartbeat, &vmm);
	}
	vmm__run(&vmm);

	/* The guest is done: a last checkpoint, then stand the secondary down. */
	r = vmm__checkpoint(&vmm, false);
	if (!r && rlink.up)
		r = primary__commit(&vmm, vmm.seq);
	if (rlink.up) {
		pthread_mutex_lock(&rlink.send_lock);
		wire__send(rlink.fd, MSG_BYE, vmm.seq, NULL, 0);
		rlink.up = false;
		pthread_mutex_unlock(&rlink.send_lock);
	}
	stats__summary(&vmm.stats);
	devices__exit(&vmm.dev);
	return vmm__verify(&vmm) ? EXIT_VERIFY_FAILED : 0;
}
