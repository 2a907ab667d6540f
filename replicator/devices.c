// SPDX-License-Identifier: GPL-2.0-only
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "devices.h"
#include "util.h"

static struct dev_status *status_page(struct devices *d)
{
	return (struct dev_status *)(d->vm->mem + ABI_STATUS);
}

static struct mailbox *mailbox(struct devices *d, unsigned int id)
{
	return (struct mailbox *)(d->vm->mem + ABI_MAILBOX(id));
}

static int ioeventfd__add(struct vm *vm, uint16_t port)
{
	struct kvm_ioeventfd io = {
		.addr = port,
		.len = 4,
		.flags = KVM_IOEVENTFD_FLAG_PIO,
	};

	io.fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (io.fd < 0)
		return -errno;
	if (ioctl(vm->fd, KVM_IOEVENTFD, &io)) {
		warn_msg("KVM_IOEVENTFD port %#x: %s", port, strerror(errno));
		close(io.fd);
		return -errno;
	}
	return io.fd;
}

static bool eventfd__take(int fd)
{
	uint64_t n;

	return read(fd, &n, sizeof(n)) == sizeof(n) && n;
}

static void output__send(struct devices *d, const struct out_record *rec)
{
	/* A lost datagram is a lost output: say so, and keep trying. */
	if (d->observer_fd >= 0 &&
	    send(d->observer_fd, rec, sizeof(*rec), 0) != sizeof(*rec))
		warn_msg("output record vcpu %u seq %llu not sent: %s",
			 rec->vcpu, (unsigned long long)rec->seq,
			 strerror(errno));
}

void devices__resend(struct devices *d, const struct out_record *rec,
		     uint32_t n)
{
	uint32_t i;

	for (i = 0; i < n; i++)
		output__send(d, &rec[i]);
}

static void output__ring(struct devices *d, unsigned int id)
{
	struct out_record rec = mailbox(d, id)->rec;
	struct dev_status *st = status_page(d);

	if (rec.magic != ABI_RECORD_MAGIC || rec.vcpu != id) {
		warn_msg("output %u: bad record (magic %#x), ignored", id,
			 rec.magic);
		return;
	}
	output__send(d, &rec);
	if (d->nr_out_log == CK_MAX_OUT)
		die("output log full: the VM did not checkpoint");
	d->out_log[d->nr_out_log++] = rec;
	__atomic_store_n(&st->emitted[id], rec.seq + 1, __ATOMIC_RELEASE);
}

static void block__ring(struct devices *d, unsigned int id)
{
	struct blk_request *req = &mailbox(d, id)->blk;
	struct dev_status *st = status_page(d);
	struct ck_blk *log;
	uint64_t sector = req->sector, seq = req->seq;

	if (sector >= ABI_SECTORS_PER_VCPU) {
		warn_msg("block %u: sector %llu out of range, ignored", id,
			 (unsigned long long)sector);
		return;
	}
	sector += (uint64_t)id * ABI_SECTORS_PER_VCPU;
	if (d->nr_blk_log == CK_MAX_BLK)
		die("block write log full: the VM did not checkpoint");
	log = &d->blk_log[d->nr_blk_log++];
	log->sector = sector;
	memcpy(log->data, req->data, ABI_SECTOR_SIZE);
	if (pwrite(d->blk_fd, log->data, ABI_SECTOR_SIZE,
		   sector * ABI_SECTOR_SIZE) != ABI_SECTOR_SIZE)
		die("block device write: %m");
	__atomic_store_n(&st->blk_done[id], seq + 1, __ATOMIC_RELEASE);
}

/* With d->lock held. */
static void devices__poll_all(struct devices *d)
{
	unsigned int i;

	for (i = 0; i < d->vm->cfg.nr_vcpus; i++) {
		if (eventfd__take(d->out_efd[i]))
			output__ring(d, i);
		if (eventfd__take(d->blk_efd[i]))
			block__ring(d, i);
	}
}

void devices__drain(struct devices *d)
{
	pthread_mutex_lock(&d->lock);
	devices__poll_all(d);
	pthread_mutex_unlock(&d->lock);
}

static void *devices__thread(void *arg)
{
	struct devices *d = arg;
	struct pollfd pfd[2 * MAX_VCPUS + 1];
	unsigned int i, n = 0;

	for (i = 0; i < d->vm->cfg.nr_vcpus; i++) {
		pfd[n++] = (struct pollfd){ .fd = d->out_efd[i], .events = POLLIN };
		pfd[n++] = (struct pollfd){ .fd = d->blk_efd[i], .events = POLLIN };
	}
	pfd[n++] = (struct pollfd){ .fd = d->stop_fd, .events = POLLIN };
	for (;;) {
		if (poll(pfd, n, -1) < 0 && errno != EINTR)
			die("device poll: %m");
		if (pfd[n - 1].revents)
			return NULL;
		devices__drain(d);
	}
}

int blk__open(const char *path, unsigned int nr_vcpus)
{
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

	if (fd < 0 || ftruncate(fd, (off_t)nr_vcpus * ABI_SECTORS_PER_VCPU *
				    ABI_SECTOR_SIZE))
		die("block device %s: %m", path);
	return fd;
}

int devices__init(struct devices *d, struct vm *vm, int observer_fd,
		  int blk_fd)
{
	unsigned int i;

	memset(d, 0, sizeof(*d));
	d->vm = vm;
	d->observer_fd = observer_fd;
	d->blk_fd = blk_fd;
	pthread_mutex_init(&d->lock, NULL);
	for (i = 0; i < vm->cfg.nr_vcpus; i++) {
		d->out_efd[i] = ioeventfd__add(vm, ABI_PORT_OUTPUT(i));
		d->blk_efd[i] = ioeventfd__add(vm, ABI_PORT_BLOCK(i));
		if (d->out_efd[i] < 0 || d->blk_efd[i] < 0)
			return -EIO;
	}
	d->stop_fd = eventfd(0, EFD_CLOEXEC);
	if (d->stop_fd < 0)
		return -errno;
	return -pthread_create(&d->thread, NULL, devices__thread, d);
}

void devices__exit(struct devices *d)
{
	uint64_t one = 1;

	if (write(d->stop_fd, &one, sizeof(one)) == sizeof(one))
		pthread_join(d->thread, NULL);
	devices__drain(d);
	if (d->observer_fd >= 0)
		close(d->observer_fd);
}

void devices__console(struct devices *d, unsigned int vcpu, uint8_t c)
{
	static char line[MAX_VCPUS][160];
	static unsigned int len[MAX_VCPUS];

	(void)d;
	if (c != '\n' && len[vcpu] < sizeof(line[0]) - 1) {
		line[vcpu][len[vcpu]++] = c;
		return;
	}
	info_msg("console: %.*s", (int)len[vcpu], line[vcpu]);
	len[vcpu] = 0;
}
