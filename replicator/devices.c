// SPDX-License-Identifier: GPL-2.0-only
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/sockios.h>
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

/* With d->lock held: the oldest n records of out_log are done with. */
static void output__forget(struct devices *d, uint32_t n)
{
	d->nr_out_log -= n;
	memmove(d->out_log, d->out_log + n, d->nr_out_log * sizeof(d->out_log[0]));
	memmove(d->out_end, d->out_end + n, d->nr_out_log * sizeof(d->out_end[0]));
}

/*
 * With d->lock held.  Once the observer link has failed, records are no
 * longer sent, but they stay in out_log (up to CK_MAX_OUT), so that a
 * secondary that takes over, and may reach the observer, sends them.
 */
static void output__send(struct devices *d, const struct out_record *rec)
{
	const uint8_t *p = (const void *)rec;
	size_t left = sizeof(*rec);
	ssize_t n;

	while (d->observer_fd >= 0 && left) {
		n = send(d->observer_fd, p, left, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			warn_msg("observer link failed at vcpu %u seq %llu (%s): output is no longer delivered; checkpoints carry the last %u records for a secondary to send",
				 rec->vcpu, (unsigned long long)rec->seq,
				 n ? strerror(errno) : "closed", CK_MAX_OUT);
			close(d->observer_fd);
			d->observer_fd = -1;
			break;
		}
		p += n;
		left -= n;
		d->out_sent += n;
	}
	if (d->nr_out_log == CK_MAX_OUT) {
		warn_msg("%u output records not acknowledged by the observer: the oldest is no longer protected",
			 CK_MAX_OUT);
		output__forget(d, 1);
	}
	d->out_log[d->nr_out_log] = *rec;
	d->out_end[d->nr_out_log++] = d->out_sent;
}

void devices__resend(struct devices *d, const struct out_record *rec,
		     uint32_t n)
{
	uint32_t i;

	pthread_mutex_lock(&d->lock);
	for (i = 0; i < n; i++)
		output__send(d, &rec[i]);
	pthread_mutex_unlock(&d->lock);
}

/*
 * Bytes of the stream the observer's TCP has acknowledged, or -1 if the
 * connection has failed (the next send says so).
 */
static int64_t output__acked(struct devices *d)
{
	int q, err = 0;
	socklen_t len = sizeof(err);

	if (getsockopt(d->observer_fd, SOL_SOCKET, SO_ERROR, &err, &len) ||
	    err || ioctl(d->observer_fd, SIOCOUTQ, &q) || q < 0)
		return -1;
	return d->out_sent - q;
}

void devices__settle(struct devices *d)
{
	uint64_t target, end, now;
	int64_t acked = 0;
	useconds_t nap = 20;
	uint32_t i;

	pthread_mutex_lock(&d->lock);
	if (d->observer_fd < 0) {
		pthread_mutex_unlock(&d->lock);
		return;
	}
	target = d->out_plugged ? d->out_mark : d->out_sent;
	end = now_ns() + d->settle_ms * 1000000ULL;
	for (;;) {
		acked = output__acked(d);
		now = now_ns();
		if (acked < 0 || (uint64_t)acked >= target || now >= end)
			break;
		usleep(nap);
		if (nap < 1000)
			nap *= 2;
	}
	if (acked >= 0 && (uint64_t)acked < target && d->settle_ms &&
	    now - d->settle_warned_at > 10000000000ULL) {
		warn_msg("the observer has not acknowledged %llu bytes of output within %d ms: checkpoints carry them until it does",
			 (unsigned long long)(target - acked), d->settle_ms);
		d->settle_warned_at = now;
	}
	if (acked < 0)
		acked = 0;
	for (i = 0; i < d->nr_out_log && d->out_end[i] <= (uint64_t)acked; i++)
		;
	output__forget(d, i);
	pthread_mutex_unlock(&d->lock);
}

void devices__mark(struct devices *d)
{
	int nsd = 0;

	pthread_mutex_lock(&d->lock);
	d->out_plugged = true;
	if (d->observer_fd >= 0 && !ioctl(d->observer_fd, SIOCOUTQNSD, &nsd) &&
	    nsd >= 0)
		d->out_mark = d->out_sent - nsd;
	pthread_mutex_unlock(&d->lock);
}

/* With d->lock held. */
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
	__atomic_store_n(&st->emitted[id], rec.seq + 1, __ATOMIC_RELEASE);
}

/* With d->lock held.  One line, made printable. */
static void console__ring(struct devices *d, unsigned int id)
{
	const struct con_line *c = &mailbox(d, id)->con;
	struct dev_status *st = status_page(d);
	uint32_t len = c->len, i;
	uint64_t seq = c->seq;
	char text[ABI_CONSOLE_LINE];

	if (len > ABI_CONSOLE_LINE)
		len = ABI_CONSOLE_LINE;
	for (i = 0; i < len; i++)
		text[i] = isprint((unsigned char)c->text[i]) ? c->text[i] : '?';
	info_msg("console %u: %.*s", id, (int)len, text);
	__atomic_store_n(&st->con_done[id], seq + 1, __ATOMIC_RELEASE);
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
		if (eventfd__take(d->con_efd[i]))
			console__ring(d, i);
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
	struct pollfd pfd[3 * MAX_VCPUS + 1];
	unsigned int i, n = 0;

	for (i = 0; i < d->vm->cfg.nr_vcpus; i++) {
		pfd[n++] = (struct pollfd){ .fd = d->out_efd[i], .events = POLLIN };
		pfd[n++] = (struct pollfd){ .fd = d->blk_efd[i], .events = POLLIN };
		pfd[n++] = (struct pollfd){ .fd = d->con_efd[i], .events = POLLIN };
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
		d->con_efd[i] = ioeventfd__add(vm, ABI_PORT_CONSOLE(i));
		if (d->out_efd[i] < 0 || d->blk_efd[i] < 0 || d->con_efd[i] < 0)
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
