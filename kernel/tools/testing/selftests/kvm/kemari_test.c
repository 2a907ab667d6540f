// SPDX-License-Identifier: GPL-2.0-only
/*
 * kemari_test: KVM_CAP_KEMARI, the capability of Kemari event-driven VM
 * replication.  See Documentation/virt/kvm/kemari.rst.
 *
 * Every case checks one documented rule: what KVM_CHECK_EXTENSION
 * reports, that a Kemari VM runs, and that each bad argument or bad
 * ordering of ioctls fails with its own errno and leaves the VM as it was.
 * It also checks that KVM_RESET_DIRTY_RINGS stops on a signal and ignores
 * garbage that a VMM writes into its ring.
 *
 * The sync cases check KVM_EXIT_KEMARI_SYNC: for each kind of in-kernel
 * device write, the exit comes before the device sees the write, it
 * describes the write, the write lands exactly once after
 * KVM_KEMARI_RESUME and the guest goes on after the instruction.
 *
 * The golden cases check that the dirty rings hold every page written
 * between two sync points, and the tsc cases that KVM_KEMARI_TSC_LOG
 * answers TSC reads in the kernel, logs them exactly, and that a TSC
 * restored per the documented protocol never goes back.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <semaphore.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <asm/kvm_para.h>
#include <asm/pvclock.h>
#include <asm/pvclock-abi.h>
#include <linux/kemari.h>

#include "apic.h"
#include "kvm_util.h"
#include "processor.h"
#include "svm_util.h"
#include "ucall_common.h"
#include "vmx.h"

static int kemari_enable(struct kvm_vm *vm, uint32_t flags, uint64_t a0,
			 uint64_t a1, uint64_t a2, uint64_t a3)
{
	struct kvm_enable_cap cap = {
		.cap = KVM_CAP_KEMARI,
		.flags = flags,
		.args = { a0, a1, a2, a3 },
	};

	return __vm_ioctl(vm, KVM_ENABLE_CAP, &cap);
}

static void assert_enable_fails(struct kvm_vm *vm, int err, uint32_t flags,
				uint64_t a0, uint64_t a1, uint64_t a2,
				uint64_t a3)
{
	int r = kemari_enable(vm, flags, a0, a1, a2, a3);

	TEST_ASSERT(r == -1 && errno == err,
		    "KVM_ENABLE_CAP(KEMARI, flags=%#x, args={%#lx, %#lx, %#lx, %#lx}): want errno %d (%s), got r=%d errno=%d (%s)",
		    flags, a0, a1, a2, a3, err, strerror(err), r, errno,
		    strerror(errno));
}

static void guest_code(void)
{
	GUEST_SYNC(1);
	GUEST_SYNC(2);
	GUEST_DONE();
}

/* Run @vcpu to GUEST_DONE, checking each GUEST_SYNC on the way. */
static void run_guest_to_done(struct kvm_vcpu *vcpu)
{
	uint64_t want = 1;
	struct ucall uc;

	for (;;) {
		vcpu_run(vcpu);
		TEST_ASSERT_KVM_EXIT_REASON(vcpu, KVM_EXIT_IO);

		switch (get_ucall(vcpu, &uc)) {
		case UCALL_SYNC:
			TEST_ASSERT_EQ(uc.args[1], want);
			want++;
			break;
		case UCALL_DONE:
			TEST_ASSERT_EQ(want, 3);
			return;
		case UCALL_ABORT:
			REPORT_GUEST_ASSERT(uc);
			break;
		default:
			TEST_FAIL("Unexpected ucall %lu", uc.cmd);
		}
	}
}

/* The system and the VM report the same, non-empty flag mask. */
static const char *test_check_extension(void)
{
	struct kvm_vm *vm = vm_create_barebones();
	int sys_mask = kvm_check_cap(KVM_CAP_KEMARI);

	TEST_ASSERT(sys_mask & KVM_KEMARI_ENABLE,
		    "KVM_CAP_KEMARI mask %#x lacks KVM_KEMARI_ENABLE", sys_mask);
	TEST_ASSERT_EQ(vm_check_cap(vm, KVM_CAP_KEMARI), sys_mask);
	kvm_vm_free(vm);
	return NULL;
}

/* Kemari enabled before the first vCPU; the guest then runs as usual. */
static const char *test_enable_and_run(void)
{
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm;

	vm = vm_create(1);
	TEST_ASSERT_EQ(kemari_enable(vm, 0, KVM_KEMARI_ENABLE, 0, 0, 0), 0);
	vcpu = vm_vcpu_add(vm, 0, guest_code);
	run_guest_to_done(vcpu);
	kvm_vm_free(vm);
	return NULL;
}

/*
 * Each unknown flag bit, a missing KVM_KEMARI_ENABLE, a reserved argument
 * and a non-zero cap->flags are -EINVAL.  None of them may leave state
 * behind: a valid enable still succeeds afterwards.
 */
static const char *test_bad_args(void)
{
	struct kvm_vm *vm = vm_create_barebones();
	uint64_t valid = kvm_check_cap(KVM_CAP_KEMARI);
	int bit;

	for (bit = 0; bit < 64; bit++) {
		if (valid & (1ull << bit))
			continue;
		assert_enable_fails(vm, EINVAL, 0,
				    KVM_KEMARI_ENABLE | (1ull << bit), 0, 0, 0);
	}
	assert_enable_fails(vm, EINVAL, 0, 0, 0, 0, 0);
	assert_enable_fails(vm, EINVAL, 0, valid & ~KVM_KEMARI_ENABLE, 0, 0, 0);
	assert_enable_fails(vm, EINVAL, 0, KVM_KEMARI_ENABLE, 65537, 0, 0);
	assert_enable_fails(vm, EINVAL, 0, KVM_KEMARI_ENABLE, 0, 1, 0);
	assert_enable_fails(vm, EINVAL, 0, KVM_KEMARI_ENABLE, 0, 0, 1);
	assert_enable_fails(vm, EINVAL, 1, KVM_KEMARI_ENABLE, 0, 0, 0);

	TEST_ASSERT_EQ(kemari_enable(vm, 0, KVM_KEMARI_ENABLE, 0, 0, 0), 0);
	kvm_vm_free(vm);
	return NULL;
}

/*
 * A second enable may switch KVM_KEMARI_TSC_LOG and nothing else: any
 * other change is -EEXIST, and the first enable stays in force.
 */
static const char *test_enable_twice(void)
{
	struct kvm_vm *vm = vm_create_barebones();

	if (!kvm_has_cap(KVM_CAP_DIRTY_LOG_RING)) {
		kvm_vm_free(vm);
		return "no KVM_CAP_DIRTY_LOG_RING";
	}
	vm_enable_dirty_ring(vm, 4096 * sizeof(struct kvm_dirty_gfn));
	TEST_ASSERT_EQ(kemari_enable(vm, 0, KVM_KEMARI_ENABLE, 8, 0, 0), 0);
	assert_enable_fails(vm, EEXIST, 0, KVM_KEMARI_ENABLE, 0, 0, 0);
	assert_enable_fails(vm, EEXIST, 0, KVM_KEMARI_ENABLE, 9, 0, 0);
	assert_enable_fails(vm, EEXIST, 0,
			    KVM_KEMARI_ENABLE | KVM_KEMARI_EXEMPT_IRQCHIP, 8, 0, 0);
	TEST_ASSERT_EQ(kemari_enable(vm, 0, KVM_KEMARI_ENABLE, 8, 0, 0), 0);
	TEST_ASSERT_EQ(kemari_enable(vm, 0, KVM_KEMARI_ENABLE |
				     KVM_KEMARI_TSC_LOG, 8, 0, 0), 0);
	assert_enable_fails(vm, EEXIST, 0, KVM_KEMARI_ENABLE |
			    KVM_KEMARI_TSC_LOG | KVM_KEMARI_EXEMPT_IRQCHIP, 8, 0, 0);
	TEST_ASSERT_EQ(kemari_enable(vm, 0, KVM_KEMARI_ENABLE, 8, 0, 0), 0);
	kvm_vm_free(vm);
	return NULL;
}

/*
 * Enabling after a vCPU exists is -EBUSY, and the VM goes on running
 * without Kemari.
 */
static const char *test_enable_after_vcpu(void)
{
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm;

	vm = vm_create_with_one_vcpu(&vcpu, guest_code);
	assert_enable_fails(vm, EBUSY, 0, KVM_KEMARI_ENABLE, 0, 0, 0);
	run_guest_to_done(vcpu);
	kvm_vm_free(vm);
	return NULL;
}

/* An argument error is reported before the ordering error. */
static const char *test_bad_args_after_vcpu(void)
{
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm;

	vm = vm_create_with_one_vcpu(&vcpu, guest_code);
	assert_enable_fails(vm, EINVAL, 0, 0, 0, 0, 0);
	assert_enable_fails(vm, EINVAL, 0, KVM_KEMARI_ENABLE, 0, 0, 1);
	kvm_vm_free(vm);
	return NULL;
}

/* VMs whose state userspace cannot read cannot be replicated. */
static const char *test_protected_vm(void)
{
	struct kvm_vm *vm;

	if (!(kvm_check_cap(KVM_CAP_VM_TYPES) & BIT(KVM_X86_SW_PROTECTED_VM)))
		return "KVM_X86_SW_PROTECTED_VM not supported";

	vm = vm_create_barebones_type(KVM_X86_SW_PROTECTED_VM);
	TEST_ASSERT_EQ(vm_check_cap(vm, KVM_CAP_KEMARI), 0);
	assert_enable_fails(vm, EOPNOTSUPP, 0, KVM_KEMARI_ENABLE, 0, 0, 0);
	kvm_vm_free(vm);
	return NULL;
}

/*
 * Dirty ring: a reset of many entries stops on a signal.  The guest
 * dirties pages of two slots in turn, so that no two entries in a row can
 * be reset together and the reset takes long enough for an alarm.
 */
#define BIG_RING_ENTRIES	65536
#define BIG_SLOT_PAGES		16384
#define BIG_SLOT_A		20
#define BIG_SLOT_B		21
#define BIG_GPA_A		0x40000000ull
#define BIG_GPA_B		0x50000000ull

static void big_dirty_guest(void)
{
	uint64_t i;

	for (;;) {
		for (i = 0; i < BIG_SLOT_PAGES; i++) {
			WRITE_ONCE(*(uint64_t *)(BIG_GPA_A + i * 4096), i);
			WRITE_ONCE(*(uint64_t *)(BIG_GPA_B + i * 4096), i);
		}
		GUEST_SYNC(0);
	}
}

static void alarm_handler(int sig)
{
}

/* Mark the @n entries from @from harvested. */
static void harvest_all(struct kvm_dirty_gfn *ring, uint32_t from, uint32_t n)
{
	uint32_t i;

	for (i = from; i < from + n; i++) {
		TEST_ASSERT(ring[i % BIG_RING_ENTRIES].flags == KVM_DIRTY_GFN_F_DIRTY,
			    "entry %u not dirty", i);
		ring[i % BIG_RING_ENTRIES].flags |= KVM_DIRTY_GFN_F_RESET;
	}
}

/*
 * The signaller: once the reset has visibly begun (it clears each entry's
 * flags as it goes) and while its last entry is still waiting, signal the
 * resetting thread.  So the signal comes while the reset runs, however
 * fast the machine is; one sent before the ioctl would be delivered
 * before the ioctl starts and prove nothing.
 */
struct reset_signaller {
	struct kvm_dirty_gfn *first, *last;
	pthread_t target;
	bool armed, returned, sent_during;
};

static void *reset_signaller(void *arg)
{
	struct reset_signaller *rs = arg;

	while (!__atomic_load_n(&rs->armed, __ATOMIC_ACQUIRE))
		;
	while (__atomic_load_n(&rs->first->flags, __ATOMIC_ACQUIRE))
		if (__atomic_load_n(&rs->returned, __ATOMIC_ACQUIRE))
			return NULL;
	rs->sent_during = __atomic_load_n(&rs->last->flags, __ATOMIC_ACQUIRE);
	pthread_kill(rs->target, SIGALRM);
	return NULL;
}

static const char *test_dirty_ring_reset_interruptible(void)
{
	struct sigaction sa = { .sa_handler = alarm_handler };
	uint32_t total = 2 * BIG_SLOT_PAGES, done = 0, i, during = 0;
	struct reset_signaller rs;
	struct kvm_dirty_gfn *ring;
	struct kvm_vcpu *vcpu;
	pthread_t thread;
	struct kvm_vm *vm;
	struct ucall uc;
	int r, tries;
	bool eintr = false;

	if (!kvm_has_cap(KVM_CAP_DIRTY_LOG_RING))
		return "no KVM_CAP_DIRTY_LOG_RING";

	/* Extra pages in slot 0 for the page tables of the two slots. */
	vm = __vm_create(VM_SHAPE_DEFAULT, 1, 2 * BIG_SLOT_PAGES / 256);
	vm_enable_dirty_ring(vm, BIG_RING_ENTRIES * sizeof(struct kvm_dirty_gfn));
	vm_userspace_mem_region_add(vm, VM_MEM_SRC_ANONYMOUS, BIG_GPA_A,
				    BIG_SLOT_A, BIG_SLOT_PAGES,
				    KVM_MEM_LOG_DIRTY_PAGES);
	vm_userspace_mem_region_add(vm, VM_MEM_SRC_ANONYMOUS, BIG_GPA_B,
				    BIG_SLOT_B, BIG_SLOT_PAGES,
				    KVM_MEM_LOG_DIRTY_PAGES);
	virt_map(vm, BIG_GPA_A, BIG_GPA_A, BIG_SLOT_PAGES);
	virt_map(vm, BIG_GPA_B, BIG_GPA_B, BIG_SLOT_PAGES);
	vcpu = vm_vcpu_add(vm, 0, big_dirty_guest);
	ring = vcpu_map_dirty_ring(vcpu);

	/* SIGALRM interrupts the reset; no SA_RESTART. */
	TEST_ASSERT_EQ(sigaction(SIGALRM, &sa, NULL), 0);

	/*
	 * Each round dirties every page again (the reset re-protected them)
	 * and signals the reset while it runs.  A reset that ignores signals
	 * finishes all entries; one that heeds them fails with EINTR.  A
	 * round whose reset ended before the signal landed proves nothing
	 * either way, hence a few rounds.
	 */
	for (tries = 0; tries < 5 && !eintr; tries++) {
		vcpu_run(vcpu);
		TEST_ASSERT_KVM_EXIT_REASON(vcpu, KVM_EXIT_IO);
		TEST_ASSERT_EQ(get_ucall(vcpu, &uc), UCALL_SYNC);
		harvest_all(ring, done, total);

		rs = (struct reset_signaller) {
			.first = &ring[done % BIG_RING_ENTRIES],
			.last = &ring[(done + total - 1) % BIG_RING_ENTRIES],
			.target = pthread_self(),
		};
		pthread_create(&thread, NULL, reset_signaller, &rs);
		__atomic_store_n(&rs.armed, true, __ATOMIC_RELEASE);
		r = __vm_ioctl(vm, KVM_RESET_DIRTY_RINGS, NULL);
		__atomic_store_n(&rs.returned, true, __ATOMIC_RELEASE);
		pthread_join(thread, NULL);
		during += rs.sent_during;
		if (r < 0) {
			TEST_ASSERT(errno == EINTR,
				    "KVM_RESET_DIRTY_RINGS: errno %d, want EINTR",
				    errno);
			eintr = true;
			/* What was reset stays reset; the rest follows. */
			r = __vm_ioctl(vm, KVM_RESET_DIRTY_RINGS, NULL);
			TEST_ASSERT(r > 0 && r <= total,
				    "reset after EINTR returned %d of %u", r, total);
		} else {
			TEST_ASSERT_EQ(r, total);
		}
		for (i = done; i < done + total; i++)
			TEST_ASSERT_EQ(ring[i % BIG_RING_ENTRIES].flags, 0);
		TEST_ASSERT_EQ(__vm_ioctl(vm, KVM_RESET_DIRTY_RINGS, NULL), 0);
		done += total;
	}
	signal(SIGALRM, SIG_DFL);
	kvm_vm_free(vm);
	if (!eintr && !during)
		return "no reset ran long enough to be signalled while it ran";
	TEST_ASSERT(eintr, "KVM_RESET_DIRTY_RINGS ignored a signal: %u of %d resets were signalled while they ran and none failed with EINTR",
		    during, tries);
	return NULL;
}

/* Sync exits. */
#define PIO_PORT		0xe0
#define MMIO_GPA		0xc0000000ull
#define MMIO_DATAMATCH		0x12345678ull
#define IOAPIC_GPA		0xfec00000ull
#define REP_OUTS_LEN		100

enum guest_op {
	OP_NONE,
	OP_OUT,		/* out of cmd.len bytes of cmd.val to port cmd.addr */
	OP_MMIO,	/* store of cmd.len bytes of cmd.val at cmd.addr */
	OP_REP_OUTSB,	/* rep outsb of cmd.count bytes of rep_buf */
	OP_SPIN,	/* count in spin_counter for ever */
	OP_HALT,	/* set spin_counter, then cli; hlt */
	OP_FILL,	/* cmd.count stores of cmd.val + i at cmd.addr */
	OP_REP_INSW_BACK, /* std; rep insw, cmd.count words, to cmd.val */
	OP_FILL_SHUTDOWN, /* OP_FILL, then a triple fault */
	OP_FILL_SPIN,	/* OP_FILL, then OP_SPIN */
};

struct guest_cmd {
	uint32_t op;
	uint32_t len;
	uint64_t addr;
	uint64_t val;
	uint32_t count;
	uint32_t done;		/* commands completed, counted by the guest */
};

static struct guest_cmd cmd;
static uint8_t rep_buf[REP_OUTS_LEN];
#define REP_INS_PORT		0x5e0
#define REP_INS_LEN		700
static uint16_t rep_ins_buf[REP_INS_LEN] __aligned(4096);
static uint64_t spin_counter;
/* An IDT that holds no gate: any exception is a triple fault. */
static struct __packed {
	uint16_t limit;
	uint64_t base;
} no_idt;

/* RIP right after the instruction that makes the write; see the asm. */
extern char kemari_after_outb[], kemari_after_movl[];

static noinline void guest_do(uint32_t op, uint32_t len, uint64_t addr,
			      uint64_t val, uint32_t count)
{
	void *src = rep_buf, *dst;

	switch (op) {
	case OP_OUT:
		if (len == 1)
			asm volatile("outb %b0, %w1\n\t"
				     ".globl kemari_after_outb\n"
				     "kemari_after_outb:"
				     : : "a"(val), "d"(addr));
		else if (len == 2)
			asm volatile("outw %w0, %w1" : : "a"(val), "d"(addr));
		else
			outl(addr, val);
		break;
	case OP_MMIO:
		if (len == 1)
			WRITE_ONCE(*(uint8_t *)addr, val);
		else if (len == 2)
			WRITE_ONCE(*(uint16_t *)addr, val);
		else if (len == 4)
			asm volatile("movl %k0, (%1)\n\t"
				     ".globl kemari_after_movl\n"
				     "kemari_after_movl:"
				     : : "r"(val), "r"(addr) : "memory");
		else
			WRITE_ONCE(*(uint64_t *)addr, val);
		break;
	case OP_REP_OUTSB:
		asm volatile("rep outsb"
			     : "+S"(src), "+c"(count) : "d"(addr) : "memory");
		break;
	case OP_SPIN:
		for (;;)
			WRITE_ONCE(spin_counter, READ_ONCE(spin_counter) + 1);
	case OP_HALT:
		WRITE_ONCE(spin_counter, 1);
		for (;;)
			asm volatile("cli; hlt");
	case OP_FILL:
	case OP_FILL_SPIN:
	case OP_FILL_SHUTDOWN:
		for (; count; count--, val++)
			WRITE_ONCE(*(uint64_t *)addr, val);
		if (op == OP_FILL_SHUTDOWN)
			asm volatile("lidt %0; int3" : : "m"(no_idt));
		while (op == OP_FILL_SPIN)
			WRITE_ONCE(spin_counter, READ_ONCE(spin_counter) + 1);
		break;
	case OP_REP_INSW_BACK:
		/* To rep_ins_buf if val is 0; the first word at the top. */
		dst = (val ? (uint16_t *)val : rep_ins_buf) + count - 1;
		asm volatile("std; rep insw; cld"
			     : "+D"(dst), "+c"(count) : "d"(addr) : "memory");
		break;
	}
}

/* Wait at GUEST_SYNC for the host to set cmd, then carry it out. */
static void sync_guest_code(void)
{
	for (;;) {
		GUEST_SYNC(READ_ONCE(cmd.done));
		guest_do(READ_ONCE(cmd.op), READ_ONCE(cmd.len),
			 READ_ONCE(cmd.addr), READ_ONCE(cmd.val),
			 READ_ONCE(cmd.count));
		WRITE_ONCE(cmd.done, READ_ONCE(cmd.done) + 1);
	}
}

static void set_cmd(struct kvm_vm *vm, uint32_t op, uint32_t len,
		    uint64_t addr, uint64_t val, uint32_t count)
{
	struct guest_cmd *c = addr_gva2hva(vm, (vm_vaddr_t)&cmd);

	c->op = op;
	c->len = len;
	c->addr = addr;
	c->val = val;
	c->count = count;
}

static uint32_t cmds_done(struct kvm_vm *vm)
{
	return READ_ONCE(((struct guest_cmd *)addr_gva2hva(vm, (vm_vaddr_t)&cmd))->done);
}

/* Run to the guest's next GUEST_SYNC, which reports cmd.done. */
static void run_to_sync(struct kvm_vcpu *vcpu, uint64_t done)
{
	struct ucall uc;

	vcpu_run(vcpu);
	TEST_ASSERT_KVM_EXIT_REASON(vcpu, KVM_EXIT_IO);
	switch (get_ucall(vcpu, &uc)) {
	case UCALL_SYNC:
		TEST_ASSERT_EQ(uc.args[1], done);
		break;
	case UCALL_ABORT:
		REPORT_GUEST_ASSERT(uc);
		break;
	default:
		TEST_FAIL("Unexpected ucall %lu", uc.cmd);
	}
}

static struct kvm_vm *kemari_vm_create(uint64_t flags, int nr_vcpus,
				       struct kvm_vcpu **vcpus)
{
	struct kvm_vm *vm = vm_create(nr_vcpus);
	int i;

	TEST_ASSERT_EQ(kemari_enable(vm, 0, flags, 0, 0, 0), 0);
	for (i = 0; i < nr_vcpus; i++)
		vcpus[i] = vm_vcpu_add(vm, i, sync_guest_code);
	virt_map(vm, MMIO_GPA, MMIO_GPA, 1);
	virt_map(vm, IOAPIC_GPA, IOAPIC_GPA, 1);
	return vm;
}

static int add_ioeventfd(struct kvm_vm *vm, uint64_t addr, uint32_t len,
			 bool pio, bool datamatch)
{
	struct kvm_ioeventfd io = {
		.addr = addr,
		.len = len,
		.datamatch = MMIO_DATAMATCH,
		.flags = (pio ? KVM_IOEVENTFD_FLAG_PIO : 0) |
			 (datamatch ? KVM_IOEVENTFD_FLAG_DATAMATCH : 0),
	};

	io.fd = eventfd(0, EFD_NONBLOCK);
	TEST_ASSERT(io.fd >= 0, "eventfd");
	vm_ioctl(vm, KVM_IOEVENTFD, &io);
	return io.fd;
}

/* The eventfd's counter, which reading resets to 0. */
static uint64_t eventfd_count(int fd)
{
	uint64_t n;

	if (read(fd, &n, sizeof(n)) == sizeof(n))
		return n;
	TEST_ASSERT(errno == EAGAIN, "eventfd read: %s", strerror(errno));
	return 0;
}

/*
 * A stat from a stats fd.  Reading the fd takes no lock, so a test can
 * watch a vCPU that is in KVM_RUN; KVM_GET_STATS_FD, like every vCPU
 * ioctl, waits for vcpu->mutex, so open the fd before the vCPU runs.
 */
static uint64_t stats_fd_read(int fd, const char *name)
{
	struct kvm_stats_header header;
	struct kvm_stats_desc *descs, *d;
	uint64_t data = -1ull;
	int i;

	read_stats_header(fd, &header);
	descs = read_stats_descriptors(fd, &header);
	for (i = 0; i < header.num_desc; i++) {
		d = get_stats_descriptor(descs, i, &header);
		if (!strcmp(d->name, name)) {
			read_stat_data(fd, &header, d, &data, 1);
			break;
		}
	}
	free(descs);
	TEST_ASSERT(data != -1ull, "no vCPU stat %s", name);
	return data;
}

static uint64_t vcpu_stat(struct kvm_vcpu *vcpu, const char *name)
{
	int fd = vcpu_get_stats_fd(vcpu);
	uint64_t data = stats_fd_read(fd, name);

	close(fd);
	return data;
}

/*
 * Wait for a vCPU to block in the kernel (HLT, or waiting for INIT/SIPI):
 * its "blocking" stat, read from @stats_fd (see stats_fd_read()), since
 * KVM_GET_MP_STATE would wait for the vCPU to leave KVM_RUN.
 */
static void wait_blocking(int stats_fd)
{
	int i;

	for (i = 0; i < 20000 && !stats_fd_read(stats_fd, "blocking"); i++)
		usleep(1000);
	TEST_ASSERT(stats_fd_read(stats_fd, "blocking"), "vCPU never blocked");
}

/* End the freeze if there is one: 0 if it ended one, 1 if there was none. */
static void kemari_resume(struct kvm_vm *vm)
{
	int r = __vm_ioctl(vm, KVM_KEMARI_RESUME, NULL);

	TEST_ASSERT(r == 0 || r == 1, "KVM_KEMARI_RESUME: %d (%s)", r,
		    strerror(errno));
}

/* Run @vcpu and expect a sync exit for @reason with no other bits. */
static struct kvm_kemari_exit *run_to_kemari(struct kvm_vcpu *vcpu,
					     uint32_t reason)
{
	vcpu_run(vcpu);
	TEST_ASSERT_KVM_EXIT_REASON(vcpu, KVM_EXIT_KEMARI_SYNC);
	TEST_ASSERT(vcpu->run->kemari.reason == reason,
		    "sync reason %#x, want %#x", vcpu->run->kemari.reason, reason);
	return &vcpu->run->kemari;
}

static void assert_pending(const struct kvm_kemari_write *w, uint32_t bus,
			   uint64_t addr, uint32_t len, uint32_t count)
{
	TEST_ASSERT(w->bus == bus && w->addr == addr && w->len == len &&
		    w->count == count && !w->flags,
		    "pending write bus %u addr %#llx len %u count %u flags %#x, want bus %u addr %#lx len %u count %u",
		    w->bus, w->addr, w->len, w->count, w->flags, bus, addr, len,
		    count);
}

struct ioeventfd_case {
	const char *name;
	uint32_t op, len;
	bool pio, datamatch;
	uint32_t fd_len;	/* 0: a fast MMIO (any length) ioeventfd */
	uint64_t val;
	uint64_t addr;
};

static const struct ioeventfd_case ioeventfd_cases[] = {
	{ "pio1", OP_OUT, 1, true, false, 1, 0x5a, PIO_PORT },
	{ "pio2", OP_OUT, 2, true, false, 2, 0x5a5b, PIO_PORT },
	{ "pio4", OP_OUT, 4, true, false, 4, 0x5a5b5c5d, PIO_PORT },
	{ "mmio1", OP_MMIO, 1, false, false, 1, 0xa5, MMIO_GPA },
	{ "mmio4", OP_MMIO, 4, false, false, 4, 0xa5a6a7a8, MMIO_GPA },
	{ "mmio8", OP_MMIO, 8, false, false, 8, 0x0102030405060708, MMIO_GPA },
	{ "mmio4_datamatch", OP_MMIO, 4, false, true, 4, MMIO_DATAMATCH, MMIO_GPA },
	{ "fast_mmio", OP_MMIO, 4, false, false, 0, 0xfeedf00d, MMIO_GPA + 8 },
};

/*
 * One write to an ioeventfd: the sync exit comes first and describes
 * the write, the eventfd fires only after KVM_KEMARI_RESUME, once, and the
 * guest goes on after the instruction.
 */
static void check_ioeventfd_case(const struct ioeventfd_case *c)
{
	uint64_t held, completed;
	struct kvm_kemari_exit *e;
	struct kvm_vcpu *vcpu;
	struct kvm_regs regs;
	struct kvm_vm *vm;
	int fd;

	vm = kemari_vm_create(KVM_KEMARI_ENABLE, 1, &vcpu);
	fd = add_ioeventfd(vm, c->addr, c->fd_len, c->pio, c->datamatch);
	run_to_sync(vcpu, 0);
	set_cmd(vm, c->op, c->len, c->addr, c->val, 0);
	held = vcpu_stat(vcpu, "kemari_writes_held");
	completed = vcpu_stat(vcpu, "kemari_writes_completed");

	e = run_to_kemari(vcpu, KVM_KEMARI_SYNC_IO_BUS);
	TEST_ASSERT(!e->flags, "%s: exit flags %#x", c->name, e->flags);
	/*
	 * A fast MMIO (length 0) ioeventfd is held on the MMIO bus, with the
	 * data, where it sits too: VMX sends the write down the slow path.
	 */
	assert_pending(&e->write, c->pio ? KVM_KEMARI_BUS_PIO :
		       KVM_KEMARI_BUS_MMIO, c->addr, c->len, 1);
	TEST_ASSERT(!memcmp(e->data, &c->val, c->len),
		    "%s: exit data differs", c->name);
	TEST_ASSERT(eventfd_count(fd) == 0, "%s: device saw the write before the sync", c->name);
	TEST_ASSERT_EQ(cmds_done(vm), 0);
	TEST_ASSERT_EQ(vcpu_stat(vcpu, "kemari_writes_held"), held + 1);

	/* The instruction has retired: RIP is past it. */
	vcpu_regs_get(vcpu, &regs);
	if (c->op == OP_OUT && c->len == 1)
		TEST_ASSERT_EQ(regs.rip, (uint64_t)kemari_after_outb);
	if (c->op == OP_MMIO && c->len == 4)
		TEST_ASSERT_EQ(regs.rip, (uint64_t)kemari_after_movl);

	kemari_resume(vm);
	run_to_sync(vcpu, 1);
	TEST_ASSERT(eventfd_count(fd) == 1, "%s: write did not land exactly once", c->name);
	TEST_ASSERT_EQ(vcpu_stat(vcpu, "kemari_writes_completed"), completed + 1);

	/* Nothing is pending any more. */
	set_cmd(vm, OP_NONE, 0, 0, 0, 0);
	run_to_sync(vcpu, 2);
	TEST_ASSERT_EQ(eventfd_count(fd), 0);
	close(fd);
	kvm_vm_free(vm);
}

static const char *test_sync_ioeventfd(void)
{
	int i;

	for (i = 0; i < ARRAY_SIZE(ioeventfd_cases); i++)
		check_ioeventfd_case(&ioeventfd_cases[i]);
	return NULL;
}

/*
 * A write that no device takes when it is completed (here: a datamatch
 * that differs) still syncs, because a device is registered there, and
 * then reaches userspace as the KVM_EXIT_MMIO it would have been.
 */
static const char *test_sync_datamatch_miss(void)
{
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm;
	uint32_t val = 0xbad;
	int fd;

	vm = kemari_vm_create(KVM_KEMARI_ENABLE, 1, &vcpu);
	fd = add_ioeventfd(vm, MMIO_GPA, 4, false, true);
	run_to_sync(vcpu, 0);
	set_cmd(vm, OP_MMIO, 4, MMIO_GPA, val, 0);
	run_to_kemari(vcpu, KVM_KEMARI_SYNC_IO_BUS);
	kemari_resume(vm);

	vcpu_run(vcpu);
	TEST_ASSERT_KVM_EXIT_REASON(vcpu, KVM_EXIT_MMIO);
	TEST_ASSERT(vcpu->run->mmio.is_write && vcpu->run->mmio.len == 4 &&
		    vcpu->run->mmio.phys_addr == MMIO_GPA &&
		    !memcmp(vcpu->run->mmio.data, &val, 4),
		    "KVM_EXIT_MMIO does not describe the write");
	run_to_sync(vcpu, 1);
	TEST_ASSERT_EQ(eventfd_count(fd), 0);
	close(fd);
	kvm_vm_free(vm);
	return NULL;
}

/*
 * REP OUTSB to an ioeventfd: each element is a sync point of its own, in
 * order, and the guest goes on only when all have landed.
 */
static const char *test_sync_rep_outs(void)
{
	struct kvm_kemari_pending *p = calloc(1, sizeof(*p));
	struct kvm_kemari_exit *e;
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm;
	uint8_t *buf;
	int fd, i, j;

	vm = kemari_vm_create(KVM_KEMARI_ENABLE, 1, &vcpu);
	fd = add_ioeventfd(vm, PIO_PORT, 1, true, false);
	buf = addr_gva2hva(vm, (vm_vaddr_t)rep_buf);
	for (i = 0; i < REP_OUTS_LEN; i++)
		buf[i] = i * 7 + 1;
	run_to_sync(vcpu, 0);
	set_cmd(vm, OP_REP_OUTSB, 1, PIO_PORT, 0, REP_OUTS_LEN);

	for (i = 0; i < REP_OUTS_LEN; i++) {
		e = run_to_kemari(vcpu, KVM_KEMARI_SYNC_IO_BUS);
		assert_pending(&e->write, KVM_KEMARI_BUS_PIO, PIO_PORT, 1, 1);
		TEST_ASSERT_EQ(e->flags, 0);
		TEST_ASSERT_EQ(e->data[0], buf[i]);
		vcpu_ioctl(vcpu, KVM_KEMARI_GET_PENDING, p);
		assert_pending(&p->write, KVM_KEMARI_BUS_PIO, PIO_PORT, 1, 1);
		TEST_ASSERT_EQ(p->data[0], buf[i]);
		for (j = 1; j < KVM_KEMARI_MAX_DATA; j++)
			TEST_ASSERT_EQ(p->data[j], 0);
		TEST_ASSERT(eventfd_count(fd) == (i ? 1 : 0),
			    "element %d: the previous one did not land once", i);
		kemari_resume(vm);
	}
	run_to_sync(vcpu, 1);
	TEST_ASSERT_EQ(eventfd_count(fd), 1);

	/* Nothing pending after completion: every field reads 0. */
	vcpu_ioctl(vcpu, KVM_KEMARI_GET_PENDING, p);
	assert_pending(&p->write, 0, 0, 0, 0);
	close(fd);
	free(p);
	kvm_vm_free(vm);
	return NULL;
}

/* In-kernel devices: PIT, PIC and IOAPIC, synced unless exempted. */
struct irqchip_case {
	const char *name;
	uint32_t op, len;
	uint64_t addr, val;
	uint32_t bus;
	/* Reads back the device register the write sets, to @want. */
	uint64_t (*read)(struct kvm_vm *vm);
	uint64_t want;
};

static uint64_t pit_ch0_mode(struct kvm_vm *vm)
{
	struct kvm_pit_state2 s;

	vm_ioctl(vm, KVM_GET_PIT2, &s);
	return s.channels[0].mode;
}

static uint64_t pic_master_imr(struct kvm_vm *vm)
{
	struct kvm_irqchip chip = { .chip_id = KVM_IRQCHIP_PIC_MASTER };

	vm_ioctl(vm, KVM_GET_IRQCHIP, &chip);
	return chip.chip.pic.imr;
}

static uint64_t ioapic_ioregsel(struct kvm_vm *vm)
{
	struct kvm_irqchip chip = { .chip_id = KVM_IRQCHIP_IOAPIC };

	vm_ioctl(vm, KVM_GET_IRQCHIP, &chip);
	return chip.chip.ioapic.ioregsel;
}

static const struct irqchip_case irqchip_cases[] = {
	/* Channel 0, lobyte/hibyte, mode 2. */
	{ "pit", OP_OUT, 1, 0x43, 0x34, KVM_KEMARI_BUS_PIO, pit_ch0_mode, 2 },
	{ "pic", OP_OUT, 1, 0x21, 0xa5, KVM_KEMARI_BUS_PIO, pic_master_imr, 0xa5 },
	{ "ioapic", OP_MMIO, 4, IOAPIC_GPA, 0x12, KVM_KEMARI_BUS_MMIO,
	  ioapic_ioregsel, 0x12 },
};

static void check_irqchip(bool exempt)
{
	const struct irqchip_case *c;
	struct kvm_pit_config pit = { 0 };
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm;
	uint64_t before;
	int i, done = 0, fd;

	vm = kemari_vm_create(KVM_KEMARI_ENABLE |
			      (exempt ? KVM_KEMARI_EXEMPT_IRQCHIP : 0), 1, &vcpu);
	vm_ioctl(vm, KVM_CREATE_PIT2, &pit);
	fd = add_ioeventfd(vm, PIO_PORT, 1, true, false);
	run_to_sync(vcpu, done);

	for (i = 0; i < ARRAY_SIZE(irqchip_cases); i++) {
		c = &irqchip_cases[i];
		before = c->read(vm);
		TEST_ASSERT(before != c->want, "%s: register already %#lx", c->name, before);
		set_cmd(vm, c->op, c->len, c->addr, c->val, 0);
		if (!exempt) {
			struct kvm_kemari_exit *e;

			e = run_to_kemari(vcpu, KVM_KEMARI_SYNC_IO_BUS);
			assert_pending(&e->write, c->bus, c->addr, c->len, 1);
			TEST_ASSERT(c->read(vm) == before,
				    "%s: device saw the write before the sync", c->name);
			kemari_resume(vm);
		}
		run_to_sync(vcpu, ++done);
		TEST_ASSERT(c->read(vm) == c->want, "%s: register %#lx, want %#lx",
			    c->name, c->read(vm), c->want);
	}

	/* The exemption does not extend to other devices. */
	set_cmd(vm, OP_OUT, 1, PIO_PORT, 1, 0);
	run_to_kemari(vcpu, KVM_KEMARI_SYNC_IO_BUS);
	kemari_resume(vm);
	run_to_sync(vcpu, ++done);
	TEST_ASSERT_EQ(eventfd_count(fd), 1);
	close(fd);
	kvm_vm_free(vm);
}

static const char *test_sync_irqchip(void)
{
	check_irqchip(false);
	return NULL;
}

static const char *test_sync_irqchip_exempt(void)
{
	check_irqchip(true);
	return NULL;
}

/* Without Kemari an ioeventfd write never stops the vCPU. */
static const char *test_sync_off(void)
{
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm;
	int fd, i;

	vm = vm_create_with_one_vcpu(&vcpu, sync_guest_code);
	virt_map(vm, MMIO_GPA, MMIO_GPA, 1);
	fd = add_ioeventfd(vm, PIO_PORT, 1, true, false);
	run_to_sync(vcpu, 0);
	set_cmd(vm, OP_OUT, 1, PIO_PORT, 1, 0);
	for (i = 1; i <= 3; i++) {
		run_to_sync(vcpu, i);
		TEST_ASSERT_EQ(eventfd_count(fd), 1);
	}
	TEST_ASSERT_EQ(__vcpu_ioctl(vcpu, KVM_KEMARI_GET_PENDING,
				    (struct kvm_kemari_pending *)NULL), -1);
	TEST_ASSERT_EQ(errno, EINVAL);
	TEST_ASSERT_EQ(__vm_ioctl(vm, KVM_KEMARI_RESUME, NULL), -1);
	TEST_ASSERT_EQ(errno, EINVAL);
	close(fd);
	kvm_vm_free(vm);
	return NULL;
}

/* From a GUEST_SYNC, stop at a sync point for an OUT to the PIO ioeventfd. */
static void stop_at_pio_sync(struct kvm_vm *vm, struct kvm_vcpu *vcpu, int fd)
{
	set_cmd(vm, OP_OUT, 1, PIO_PORT, 0x77, 0);
	run_to_kemari(vcpu, KVM_KEMARI_SYNC_IO_BUS);
	TEST_ASSERT_EQ(eventfd_count(fd), 0);
}

static void sigusr1_handler(int sig)
{
}

/*
 * The pending write lands exactly once whatever happens between the sync
 * exit and the guest's next instruction: immediate_exit, a pending signal,
 * KVM_RUN before KVM_KEMARI_RESUME, GET/SET_REGS.
 */
static const char *test_sync_exactly_once(void)
{
	struct {
		struct kvm_signal_mask m;
		sigset_t set;
	} mask = { .m.len = 8 };
	struct kvm_vcpu *vcpu;
	struct kvm_regs regs;
	struct kvm_vm *vm;
	sigset_t usr1, old;
	int fd, sig;

	vm = kemari_vm_create(KVM_KEMARI_ENABLE, 1, &vcpu);
	fd = add_ioeventfd(vm, PIO_PORT, 1, true, false);

	/* KVM_RUN while still frozen: another sync exit, nothing lands. */
	run_to_sync(vcpu, 0);
	stop_at_pio_sync(vm, vcpu, fd);
	vcpu_run(vcpu);
	TEST_ASSERT_KVM_EXIT_REASON(vcpu, KVM_EXIT_KEMARI_SYNC);
	TEST_ASSERT_EQ(vcpu->run->kemari.reason,
		       KVM_KEMARI_SYNC_IO_BUS | KVM_KEMARI_SYNC_PEER);
	assert_pending(&vcpu->run->kemari.write, KVM_KEMARI_BUS_PIO, PIO_PORT, 1, 1);
	TEST_ASSERT_EQ(eventfd_count(fd), 0);

	/* immediate_exit while frozen: EINTR, and still nothing lands. */
	vcpu->run->immediate_exit = 1;
	TEST_ASSERT_EQ(__vcpu_run(vcpu), -1);
	TEST_ASSERT_EQ(errno, EINTR);
	vcpu->run->immediate_exit = 0;
	TEST_ASSERT_EQ(eventfd_count(fd), 0);

	/* immediate_exit completes the write without running the guest. */
	kemari_resume(vm);
	vcpu->run->immediate_exit = 1;
	TEST_ASSERT_EQ(__vcpu_run(vcpu), -1);
	TEST_ASSERT_EQ(errno, EINTR);
	vcpu->run->immediate_exit = 0;
	TEST_ASSERT_EQ(eventfd_count(fd), 1);
	TEST_ASSERT_EQ(cmds_done(vm), 0);
	run_to_sync(vcpu, 1);
	TEST_ASSERT_EQ(eventfd_count(fd), 0);

	/* A signal pending at re-entry: KVM_RUN fails with EINTR, once. */
	stop_at_pio_sync(vm, vcpu, fd);
	sigemptyset(&usr1);
	sigaddset(&usr1, SIGUSR1);
	signal(SIGUSR1, sigusr1_handler);
	pthread_sigmask(SIG_BLOCK, &usr1, &old);
	sigemptyset(&mask.set);
	vcpu_ioctl(vcpu, KVM_SET_SIGNAL_MASK, &mask.m);
	pthread_kill(pthread_self(), SIGUSR1);
	kemari_resume(vm);
	TEST_ASSERT_EQ(__vcpu_run(vcpu), -1);
	TEST_ASSERT_EQ(errno, EINTR);
	TEST_ASSERT_EQ(eventfd_count(fd), 1);
	TEST_ASSERT_EQ(sigwait(&usr1, &sig), 0);
	vcpu_ioctl(vcpu, KVM_SET_SIGNAL_MASK, (struct kvm_signal_mask *)NULL);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	signal(SIGUSR1, SIG_DFL);
	run_to_sync(vcpu, 2);
	TEST_ASSERT_EQ(eventfd_count(fd), 0);

	/* Registers read and written back while stopped change nothing. */
	stop_at_pio_sync(vm, vcpu, fd);
	vcpu_regs_get(vcpu, &regs);
	vcpu_regs_set(vcpu, &regs);
	kemari_resume(vm);
	run_to_sync(vcpu, 3);
	TEST_ASSERT_EQ(eventfd_count(fd), 1);

	/* Closing the VM with a write pending drops it and leaks nothing. */
	stop_at_pio_sync(vm, vcpu, fd);
	kvm_vm_free(vm);
	TEST_ASSERT_EQ(eventfd_count(fd), 0);
	close(fd);
	return NULL;
}

/*
 * A checkpoint taken at a sync exit, restored into a new VM, completes
 * the pending write there exactly once, and the original never does.
 */
static const char *test_sync_restore(void)
{
	struct kvm_kemari_pending *p = calloc(1, sizeof(*p));
	struct kvm_vcpu *vcpu, *vcpu2;
	struct kvm_x86_state *state;
	struct kvm_vm *vm, *vm2;
	int fd, fd2;

	vm = kemari_vm_create(KVM_KEMARI_ENABLE, 1, &vcpu);
	fd = add_ioeventfd(vm, PIO_PORT, 1, true, false);
	run_to_sync(vcpu, 0);
	stop_at_pio_sync(vm, vcpu, fd);
	state = vcpu_save_state(vcpu);
	vcpu_ioctl(vcpu, KVM_KEMARI_GET_PENDING, p);
	assert_pending(&p->write, KVM_KEMARI_BUS_PIO, PIO_PORT, 1, 1);
	TEST_ASSERT_EQ(p->data[0], 0x77);

	vm2 = kemari_vm_create(KVM_KEMARI_ENABLE, 1, &vcpu2);
	fd2 = add_ioeventfd(vm2, PIO_PORT, 1, true, false);
	memcpy(addr_gpa2hva(vm2, 0), addr_gpa2hva(vm, 0),
	       vm_get_mem_region(vm, MEM_REGION_CODE)->region.memory_size);
	vcpu_load_state(vcpu2, state);
	vcpu_ioctl(vcpu2, KVM_KEMARI_SET_PENDING, p);
	/* A second restore on top of a pending write is refused. */
	TEST_ASSERT_EQ(__vcpu_ioctl(vcpu2, KVM_KEMARI_SET_PENDING, p), -1);
	TEST_ASSERT_EQ(errno, EBUSY);

	/*
	 * The guest goes on to its next GUEST_SYNC.  get_ucall() cannot read
	 * that: the copied ucall pool holds host addresses in the first VM.
	 * The command count in guest memory tells that the guest went on.
	 */
	vcpu_run(vcpu2);
	TEST_ASSERT_KVM_EXIT_REASON(vcpu2, KVM_EXIT_IO);
	TEST_ASSERT_EQ(vcpu2->run->io.port, 0x1000 /* UCALL_PIO_PORT */);
	TEST_ASSERT_EQ(cmds_done(vm2), 1);
	TEST_ASSERT_EQ(eventfd_count(fd2), 1);
	/* Its next OUT is a sync point of its own. */
	run_to_kemari(vcpu2, KVM_KEMARI_SYNC_IO_BUS);
	TEST_ASSERT_EQ(eventfd_count(fd2), 0);
	TEST_ASSERT_EQ(eventfd_count(fd), 0);

	kvm_x86_state_cleanup(state);
	close(fd);
	close(fd2);
	kvm_vm_free(vm2);
	kvm_vm_free(vm);
	free(p);
	return NULL;
}

/* Garbage for KVM_KEMARI_SET_PENDING, each with its errno. */
static const struct {
	struct kvm_kemari_write w;
	int err;
} bad_pending[] = {
	{ { .bus = 2, .len = 1, .count = 1 }, EINVAL },
	{ { .bus = 7, .len = 1, .count = 1 }, EINVAL },
	{ { .bus = KVM_KEMARI_BUS_PIO, .len = 3, .count = 1 }, EINVAL },
	{ { .bus = KVM_KEMARI_BUS_PIO, .len = 0, .count = 1 }, EINVAL },
	{ { .bus = KVM_KEMARI_BUS_PIO, .len = 4, .addr = 0xfffe, .count = 1 }, EINVAL },
	{ { .bus = KVM_KEMARI_BUS_PIO, .len = 1, .addr = 0x10000, .count = 1 }, EINVAL },
	{ { .bus = KVM_KEMARI_BUS_PIO, .len = 4, .count = 1025 }, E2BIG },
	{ { .bus = KVM_KEMARI_BUS_PIO, .len = 1, .count = 1, .flags = 1 }, EINVAL },
	{ { .bus = KVM_KEMARI_BUS_MMIO, .len = 4, .count = 2 }, EINVAL },
	{ { .bus = KVM_KEMARI_BUS_MMIO, .len = 0, .count = 1 }, EINVAL },
	{ { .bus = KVM_KEMARI_BUS_MMIO, .len = 8, .addr = -4ull, .count = 1 }, EINVAL },
	{ { .bus = KVM_KEMARI_BUS_MMIO, .len = KVM_KEMARI_MAX_DATA + 1, .count = 1 }, E2BIG },
	{ { .bus = 3, .len = 0, .count = 1 }, EINVAL },
	{ { .bus = KVM_KEMARI_BUS_PIO, .len = 1, .count = 0 }, EINVAL },
};

/*
 * Every malformed pending write is refused with its errno and changes
 * nothing; a well-formed one then still works.
 */
static const char *test_sync_bad_pending(void)
{
	struct kvm_kemari_pending *p = calloc(1, sizeof(*p));
	struct kvm_kemari_pending *q = calloc(1, sizeof(*q));
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm;
	int i, r, fd;

	vm = kemari_vm_create(KVM_KEMARI_ENABLE, 1, &vcpu);
	fd = add_ioeventfd(vm, PIO_PORT, 1, true, false);
	run_to_sync(vcpu, 0);

	for (i = 0; i < ARRAY_SIZE(bad_pending); i++) {
		p->write = bad_pending[i].w;
		r = __vcpu_ioctl(vcpu, KVM_KEMARI_SET_PENDING, p);
		TEST_ASSERT(r == -1 && errno == bad_pending[i].err,
			    "bad pending write %d: r=%d errno=%d, want %d", i,
			    r, errno, bad_pending[i].err);
		vcpu_ioctl(vcpu, KVM_KEMARI_GET_PENDING, q);
		TEST_ASSERT_EQ(q->write.count, 0);
	}
	TEST_ASSERT_EQ(__vcpu_ioctl(vcpu, KVM_KEMARI_SET_PENDING,
				    (struct kvm_kemari_pending *)8), -1);
	TEST_ASSERT_EQ(errno, EFAULT);
	TEST_ASSERT_EQ(__vm_ioctl(vm, KVM_KEMARI_RESUME, (void *)1), -1);
	TEST_ASSERT_EQ(errno, EINVAL);

	/* A valid one lands on the next KVM_RUN, before the guest runs. */
	memset(p, 0, sizeof(*p));
	p->write = (struct kvm_kemari_write) {
		.bus = KVM_KEMARI_BUS_PIO, .len = 1, .addr = PIO_PORT, .count = 3,
	};
	vcpu_ioctl(vcpu, KVM_KEMARI_SET_PENDING, p);
	/* Setting count 0 discards it ... */
	memset(p, 0, sizeof(*p));
	vcpu_ioctl(vcpu, KVM_KEMARI_SET_PENDING, p);
	vcpu_ioctl(vcpu, KVM_KEMARI_GET_PENDING, q);
	TEST_ASSERT_EQ(q->write.count, 0);
	/* ... and another can be set. */
	p->write = (struct kvm_kemari_write) {
		.bus = KVM_KEMARI_BUS_PIO, .len = 1, .addr = PIO_PORT, .count = 3,
	};
	vcpu_ioctl(vcpu, KVM_KEMARI_SET_PENDING, p);
	set_cmd(vm, OP_NONE, 0, 0, 0, 0);
	run_to_sync(vcpu, 1);
	TEST_ASSERT_EQ(eventfd_count(fd), 3);

	/*
	 * A pending write longer than the exit's inline data is flagged; a
	 * write that no device takes reaches userspace piece by piece, in
	 * order, as KVM_EXIT_MMIO.
	 */
	set_cmd(vm, OP_OUT, 1, PIO_PORT, 1, 0);
	run_to_kemari(vcpu, KVM_KEMARI_SYNC_IO_BUS);
	memset(p, 0, sizeof(*p));
	vcpu_ioctl(vcpu, KVM_KEMARI_SET_PENDING, p);
	p->write = (struct kvm_kemari_write) {
		.bus = KVM_KEMARI_BUS_MMIO, .len = 100, .addr = MMIO_GPA, .count = 1,
	};
	for (i = 0; i < 100; i++)
		p->data[i] = 200 - i;
	vcpu_ioctl(vcpu, KVM_KEMARI_SET_PENDING, p);
	vcpu_run(vcpu);
	TEST_ASSERT_KVM_EXIT_REASON(vcpu, KVM_EXIT_KEMARI_SYNC);
	TEST_ASSERT_EQ(vcpu->run->kemari.flags, KVM_KEMARI_EXIT_DATA_TRUNCATED);
	assert_pending(&vcpu->run->kemari.write, KVM_KEMARI_BUS_MMIO, MMIO_GPA, 100, 1);
	TEST_ASSERT(!memcmp(vcpu->run->kemari.data, p->data, KVM_KEMARI_INLINE_DATA),
		    "inline data of a long write");
	kemari_resume(vm);
	for (i = 0; i < 100; i += 8) {
		vcpu_run(vcpu);
		TEST_ASSERT_KVM_EXIT_REASON(vcpu, KVM_EXIT_MMIO);
		TEST_ASSERT(vcpu->run->mmio.is_write &&
			    vcpu->run->mmio.phys_addr == MMIO_GPA + i &&
			    vcpu->run->mmio.len == (i < 96 ? 8 : 4) &&
			    !memcmp(vcpu->run->mmio.data, p->data + i,
				    vcpu->run->mmio.len),
			    "piece at %d of the long write", i);
	}
	run_to_sync(vcpu, 2);
	TEST_ASSERT_EQ(eventfd_count(fd), 0);

	close(fd);
	kvm_vm_free(vm);
	free(p);
	free(q);
	return NULL;
}

/* A second vCPU, run by a thread of its own, one KVM_RUN per go. */
struct peer {
	struct kvm_vcpu *vcpu;
	sem_t go, done;
	bool quit;
	int ret;
	uint32_t exit_reason, reason;
};

static void *peer_thread(void *arg)
{
	struct peer *p = arg;

	for (;;) {
		sem_wait(&p->go);
		if (READ_ONCE(p->quit))
			return NULL;
		p->ret = __vcpu_run(p->vcpu);
		p->exit_reason = p->vcpu->run->exit_reason;
		p->reason = p->vcpu->run->kemari.reason;
		sem_post(&p->done);
	}
}

/* Wait for the peer's KVM_RUN to return: it must stop on its own. */
static void peer_wait_stopped(struct peer *p)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += 20;
	TEST_ASSERT(!sem_timedwait(&p->done, &ts), "peer vCPU did not stop");
	TEST_ASSERT(p->ret == 0 && p->exit_reason == KVM_EXIT_KEMARI_SYNC &&
		    p->reason == KVM_KEMARI_SYNC_PEER,
		    "peer: ret %d exit %u reason %#x, want a peer sync exit",
		    p->ret, p->exit_reason, p->reason);
}

static uint64_t spin_count(struct kvm_vm *vm)
{
	return READ_ONCE(*(uint64_t *)addr_gva2hva(vm, (vm_vaddr_t)&spin_counter));
}

/*
 * One vCPU's sync point freezes the other, whether it is running guest
 * code (OP_SPIN) or halted (OP_HALT): it returns with a peer sync exit,
 * runs no guest code until KVM_KEMARI_RESUME, and then goes on.
 */
static void check_peer(uint32_t peer_op)
{
	struct kvm_vcpu *vcpus[2];
	struct peer p = { 0 };
	struct kvm_mp_state mp;
	struct kvm_vm *vm;
	pthread_t thread;
	int fd, i, stats_fd;
	uint64_t c;

	vm = kemari_vm_create(KVM_KEMARI_ENABLE, 2, vcpus);
	fd = add_ioeventfd(vm, PIO_PORT, 1, true, false);
	stats_fd = vcpu_get_stats_fd(vcpus[1]);
	p.vcpu = vcpus[1];
	sem_init(&p.go, 0, 0);
	sem_init(&p.done, 0, 0);

	/* vCPU 1 reaches its command, then spins or halts in the guest. */
	run_to_sync(vcpus[1], 0);
	set_cmd(vm, peer_op, 0, 0, 0, 0);
	pthread_create(&thread, NULL, peer_thread, &p);
	sem_post(&p.go);
	while (!spin_count(vm))
		usleep(1000);
	/* A halting peer must have blocked in the kernel. */
	if (peer_op == OP_HALT)
		wait_blocking(stats_fd);

	/* vCPU 0 finds the command that vCPU 1 took: an OUT to the eventfd. */
	run_to_sync(vcpus[0], 0);
	set_cmd(vm, OP_OUT, 1, PIO_PORT, 1, 0);
	run_to_kemari(vcpus[0], KVM_KEMARI_SYNC_IO_BUS);
	peer_wait_stopped(&p);
	if (peer_op == OP_HALT) {
		vcpu_ioctl(vcpus[1], KVM_GET_MP_STATE, &mp);
		TEST_ASSERT_EQ(mp.mp_state, KVM_MP_STATE_HALTED);
	}

	/* Frozen: no guest code runs, even when the peer is re-entered. */
	c = spin_count(vm);
	for (i = 0; i < 2; i++) {
		usleep(20 * 1000);
		sem_post(&p.go);
		peer_wait_stopped(&p);
	}
	TEST_ASSERT_EQ(spin_count(vm), c);
	TEST_ASSERT_EQ(eventfd_count(fd), 0);
	TEST_ASSERT(vcpu_stat(vcpus[1], "kemari_sync_peer") >= 3,
		    "peer syncs not counted");

	/* Resumed, both go on; a second sync point freezes the peer again. */
	kemari_resume(vm);
	sem_post(&p.go);
	set_cmd(vm, OP_OUT, 1, PIO_PORT, 2, 0);
	run_to_sync(vcpus[0], 1);
	TEST_ASSERT_EQ(eventfd_count(fd), 1);
	if (peer_op == OP_SPIN) {
		for (i = 0; i < 5000 && spin_count(vm) == c; i++)
			usleep(1000);
		TEST_ASSERT(spin_count(vm) != c, "peer did not run after resume");
	}
	run_to_kemari(vcpus[0], KVM_KEMARI_SYNC_IO_BUS);
	peer_wait_stopped(&p);

	WRITE_ONCE(p.quit, true);
	sem_post(&p.go);
	pthread_join(thread, NULL);
	close(stats_fd);
	close(fd);
	kvm_vm_free(vm);
}

static const char *test_sync_peer_running(void)
{
	check_peer(OP_SPIN);
	return NULL;
}

static const char *test_sync_peer_halted(void)
{
	check_peer(OP_HALT);
	return NULL;
}

/* Coalesced MMIO: the ring is flushed only after a sync point. */
#define COALESCED_GPA		(MMIO_GPA + 0x100)

/* Entries in the coalesced MMIO ring page. */
#define COALESCED_SIZE		((getpagesize() - sizeof(struct kvm_coalesced_mmio_ring)) / \
				 sizeof(struct kvm_coalesced_mmio))

/*
 * A Kemari VM with one vCPU and an 8-byte coalesced zone at COALESCED_GPA,
 * run to its first GUEST_SYNC; *@ring is the vCPU's view of the ring.
 */
static struct kvm_vm *coalesced_vm_create(struct kvm_vcpu **vcpu,
					  struct kvm_coalesced_mmio_ring **ring)
{
	struct kvm_vm *vm = kemari_vm_create(KVM_KEMARI_ENABLE, 1, vcpu);

	kvm_vm_register_coalesced_io(vm, COALESCED_GPA, 8, false);
	*ring = (void *)(*vcpu)->run +
		getpagesize() * KVM_COALESCED_MMIO_PAGE_OFFSET;
	run_to_sync(*vcpu, 0);
	return vm;
}

static uint32_t ring_used(struct kvm_coalesced_mmio_ring *ring, uint32_t size)
{
	return (READ_ONCE(ring->last) + size - READ_ONCE(ring->first)) % size;
}

/* The VM is frozen, and @stopped vCPUs have reported it, none running. */
static void assert_stopped(struct kvm_vm *vm, uint32_t stopped)
{
	struct kvm_kemari_freeze st;

	vm_ioctl(vm, KVM_KEMARI_GET_FREEZE, &st);
	TEST_ASSERT(st.flags == KVM_KEMARI_FROZEN && st.stopped == stopped &&
		    !st.running, "freeze flags %#x stopped %u running %u, want %u stopped",
		    st.flags, st.stopped, st.running, stopped);
}

/*
 * Run to an exit that is also a coalesced flush sync: @want, with
 * KVM_RUN_KEMARI_SYNC in kvm_run->flags and the VM frozen.  The vCPU has
 * reported the freeze (@stopped 1) unless it left I/O to complete.
 */
static void run_to_flagged(struct kvm_vcpu *vcpu, uint32_t want,
			   uint32_t stopped)
{
	/*
	 * Not vcpu_run(): for a ucall it completes the I/O at once, with a
	 * KVM_RUN that clears kvm_run->flags.
	 */
	TEST_ASSERT_EQ(__vcpu_run(vcpu), 0);
	TEST_ASSERT_KVM_EXIT_REASON(vcpu, want);
	TEST_ASSERT(vcpu->run->flags & KVM_RUN_KEMARI_SYNC,
		    "exit %u without KVM_RUN_KEMARI_SYNC (flags %#x)",
		    want, vcpu->run->flags);
	assert_stopped(vcpu->vm, stopped);
}

/*
 * A few coalesced writes, then a ucall: the KVM_EXIT_IO comes flagged as a
 * coalesced flush sync.  Then, for every ring start index, the guest fills
 * the ring and makes one more write, which the full ring refuses: the
 * KVM_EXIT_MMIO for it comes flagged, with the ring full.
 */
static const char *test_sync_coalesced(void)
{
	uint32_t size = COALESCED_SIZE;
	struct kvm_coalesced_mmio_ring *ring;
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm;
	uint32_t start, i, idx, done = 0;
	uint64_t val, got;
	struct ucall uc;

	if (!kvm_has_cap(KVM_CAP_COALESCED_MMIO))
		return "no KVM_CAP_COALESCED_MMIO";

	vm = coalesced_vm_create(&vcpu, &ring);

	set_cmd(vm, OP_FILL, 8, COALESCED_GPA, 42, 3);
	run_to_flagged(vcpu, KVM_EXIT_IO, 0);
	/* get_ucall() completes the I/O, with immediate_exit: now reported. */
	TEST_ASSERT_EQ(get_ucall(vcpu, &uc), UCALL_SYNC);
	TEST_ASSERT_EQ(uc.args[1], ++done);
	assert_stopped(vm, 1);
	TEST_ASSERT_EQ(ring_used(ring, size), 3);
	kemari_resume(vm);
	WRITE_ONCE(ring->first, READ_ONCE(ring->last));

	/* No new entries: no sync, no flag. */
	set_cmd(vm, OP_NONE, 0, 0, 0, 0);
	run_to_sync(vcpu, ++done);
	TEST_ASSERT(!(vcpu->run->flags & KVM_RUN_KEMARI_SYNC),
		    "KVM_RUN_KEMARI_SYNC with no new ring entries");

	for (start = 0; start < size; start++) {
		val = start * 1000;
		WRITE_ONCE(ring->first, start);
		WRITE_ONCE(ring->last, start);
		set_cmd(vm, OP_FILL, 8, COALESCED_GPA, val, size);

		run_to_flagged(vcpu, KVM_EXIT_MMIO, 0);
		TEST_ASSERT(ring_used(ring, size) == size - 1,
			    "start %u: ring holds %u entries at the sync, want %u",
			    start, ring_used(ring, size), size - 1);
		memcpy(&got, vcpu->run->mmio.data, 8);
		TEST_ASSERT(vcpu->run->mmio.is_write &&
			    vcpu->run->mmio.phys_addr == COALESCED_GPA &&
			    got == val + size - 1,
			    "start %u: KVM_EXIT_MMIO of %#lx, want %#lx", start,
			    got, val + size - 1);
		vcpu_run_complete_io(vcpu);
		assert_stopped(vm, 1);
		kemari_resume(vm);

		for (i = 0; i < size - 1; i++) {
			idx = (start + i) % size;
			TEST_ASSERT_EQ(*(uint64_t *)ring->coalesced_mmio[idx].data,
				       val + i);
		}
		WRITE_ONCE(ring->first, READ_ONCE(ring->last));
		run_to_sync(vcpu, ++done);
	}
	TEST_ASSERT(vcpu_stat(vcpu, "kemari_sync_coalesced") == size + 1,
		    "kemari_sync_coalesced %lu, want %u",
		    vcpu_stat(vcpu, "kemari_sync_coalesced"), size + 1);
	kvm_vm_free(vm);
	return NULL;
}

/*
 * An exit that reports what has already happened, behind a coalesced
 * flush sync: the guest fills three ring entries and triple-faults, and
 * SVM puts the vCPU through INIT before KVM_EXIT_SHUTDOWN.  Re-executing
 * from a checkpoint would not repeat that, so the exit must reach the VMM
 * at once, flagged, never held in the kernel where no checkpoint sees it,
 * and the ring entries must still be there for the checkpoint to copy.
 */
static const char *test_sync_coalesced_exit(void)
{
	uint32_t size = COALESCED_SIZE;
	struct kvm_coalesced_mmio_ring *ring;
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm;
	uint32_t i;

	if (!kvm_has_cap(KVM_CAP_COALESCED_MMIO))
		return "no KVM_CAP_COALESCED_MMIO";

	vm = coalesced_vm_create(&vcpu, &ring);

	set_cmd(vm, OP_FILL_SHUTDOWN, 8, COALESCED_GPA, 42, 3);
	run_to_flagged(vcpu, KVM_EXIT_SHUTDOWN, 1);
	TEST_ASSERT_EQ(ring_used(ring, size), 3);
	for (i = 0; i < 3; i++)
		TEST_ASSERT_EQ(*(uint64_t *)ring->coalesced_mmio[(ring->first + i) % size].data,
			       42 + i);
	TEST_ASSERT_EQ(vcpu_stat(vcpu, "kemari_sync_coalesced"), 1);
	kemari_resume(vm);
	kvm_vm_free(vm);
	return NULL;
}

/* Signal @arg's thread once the guest has passed its ring writes. */
struct spin_signaller {
	struct kvm_vm *vm;
	pthread_t target;
};

static void *spin_signaller(void *arg)
{
	struct spin_signaller *ss = arg;

	while (!spin_count(ss->vm))
		usleep(1000);
	pthread_kill(ss->target, SIGALRM);
	return NULL;
}

/*
 * A KVM_RUN that a signal ends, with new ring entries: EINTR, flagged,
 * the VM frozen and the vCPU counted as stopped (its I/O is complete).
 */
static const char *test_sync_coalesced_eintr(void)
{
	uint32_t size = COALESCED_SIZE;
	struct sigaction sa = { .sa_handler = alarm_handler };
	struct spin_signaller ss;
	pthread_t thread;
	struct kvm_coalesced_mmio_ring *ring;
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm;
	int r, err;

	if (!kvm_has_cap(KVM_CAP_COALESCED_MMIO))
		return "no KVM_CAP_COALESCED_MMIO";

	vm = coalesced_vm_create(&vcpu, &ring);

	set_cmd(vm, OP_FILL_SPIN, 8, COALESCED_GPA, 42, 3);
	sigaction(SIGALRM, &sa, NULL);
	ss = (struct spin_signaller) { .vm = vm, .target = pthread_self() };
	pthread_create(&thread, NULL, spin_signaller, &ss);
	r = __vcpu_run(vcpu);
	err = errno;
	pthread_join(thread, NULL);
	TEST_ASSERT(r == -1 && err == EINTR, "KVM_RUN: %d, errno %d", r, err);
	TEST_ASSERT(vcpu->run->flags & KVM_RUN_KEMARI_SYNC,
		    "EINTR without KVM_RUN_KEMARI_SYNC (flags %#x)",
		    vcpu->run->flags);
	assert_stopped(vm, 1);
	TEST_ASSERT_EQ(ring_used(ring, size), 3);
	kemari_resume(vm);
	kvm_vm_free(vm);
	return NULL;
}

/*
 * The golden test: replica == primary at every sync point.  Two vCPUs
 * write pseudo-random data at pseudo-random places (8-byte stores, some
 * across a page boundary) into a 4 KiB-backed and a THP-backed slot, and
 * now and then make a write that syncs.  At every sync point the host
 * harvests the dirty rings, copies just those pages into a shadow copy
 * that started as the initial memory, resets the rings, and checks that
 * the shadow equals guest memory byte for byte.  A page that the rings
 * missed shows up as a difference.
 */
#define GOLDEN_SLOT_4K		10
#define GOLDEN_SLOT_THP		11
#define GOLDEN_GPA_4K		0x10000000ull
#define GOLDEN_GPA_THP		0x20000000ull
#define GOLDEN_SIZE_4K		(1ull << 20)
#define GOLDEN_SIZE_THP		(2ull << 20)
#define GOLDEN_SYNCS		1000
#define GOLDEN_VCPUS		2

/* Set by the host; read by the guest. */
static uint64_t golden_stop;
static uint64_t golden_out_every;	/* an OUT every ~golden_out_every stores */

static uint64_t xorshift(uint64_t x)
{
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return x;
}

static void golden_guest(uint64_t seed)
{
	uint64_t x = seed, base, size, off;

	for (;;) {
		if (READ_ONCE(golden_stop))
			GUEST_DONE();
		x = xorshift(x);
		if (x & 1) {
			base = GOLDEN_GPA_4K;
			size = GOLDEN_SIZE_4K;
		} else {
			base = GOLDEN_GPA_THP;
			size = GOLDEN_SIZE_THP;
		}
		off = (x >> 8) % (size - 8);
		/* One store in 16 straddles a page boundary. */
		if (!((x >> 40) & 15) && off > 4096)
			off = (off & ~4095ull) - 3;
		WRITE_ONCE(*(uint64_t *)(base + off), x);
		if (!((x >> 20) % READ_ONCE(golden_out_every)))
			asm volatile("outb %b0, %w1" : : "a"(x), "d"(PIO_PORT));
	}
}

/*
 * An exception in the golden guest would be a triple fault without an
 * IDT, and SVM's shutdown intercept resets the vCPU before the host can
 * look: report the first one, with its registers, instead.
 */
static void golden_exception(struct ex_regs *r)
{
	uint64_t cr2;

	asm volatile("mov %%cr2, %0" : "=r"(cr2));
	GUEST_FAIL("vector %lu error %#lx rip %#lx cs %#lx rflags %#lx cr2 %#lx rax %#lx rbx %#lx rcx %#lx rdx %#lx rsi %#lx rdi %#lx rbp %#lx",
		   r->vector, r->error_code, r->rip, r->cs, r->rflags, cr2,
		   r->rax, r->rbx, r->rcx, r->rdx, r->rsi, r->rdi, r->rbp);
}

static const int golden_vectors[] = {
	DE_VECTOR, DB_VECTOR, BP_VECTOR, UD_VECTOR, DF_VECTOR, TS_VECTOR,
	NP_VECTOR, SS_VECTOR, GP_VECTOR, PF_VECTOR, AC_VECTOR, MC_VECTOR,
};

/*
 * Kemari's tracepoints and KVM's entries, exits and injected exceptions,
 * kept in the trace buffer while a long case runs, so that a watchdog
 * that fires can show what the vCPUs did last.  Without tracefs there is
 * nothing to show.
 */
#define TRACEFS			"/sys/kernel/tracing/"

static void trace_set(const char *file, const char *val)
{
	FILE *f = fopen(file, "w");

	if (f) {
		fputs(val, f);
		fclose(f);
	}
}

/* With @cpus, also who ran where, and which timer ticks and IPIs came in. */
static void kemari_trace(bool on, bool cpus)
{
	static const char * const events[] = {
		TRACEFS "events/kemari/enable",
		TRACEFS "events/kvm/kvm_entry/enable",
		TRACEFS "events/kvm/kvm_exit/enable",
		TRACEFS "events/kvm/kvm_userspace_exit/enable",
		TRACEFS "events/kvm/kvm_inj_exception/enable",
	};
	static const char * const cpu_events[] = {
		TRACEFS "events/sched/sched_switch/enable",
		TRACEFS "events/irq_vectors/enable",
	};
	int i;

	if (on) {
		trace_set(TRACEFS "buffer_size_kb", "2048");
		trace_set(TRACEFS "trace", "");
	}
	for (i = 0; i < ARRAY_SIZE(events); i++)
		trace_set(events[i], on ? "1" : "0");
	for (i = 0; i < ARRAY_SIZE(cpu_events); i++)
		trace_set(cpu_events[i], on && cpus ? "1" : "0");
	trace_set(TRACEFS "tracing_on", on ? "1" : "0");
}

/* The last @lines lines of @file under tracefs, with tracing stopped. */
static void kemari_trace_print(const char *file, long lines)
{
	char line[512], path[128];
	long n = 0, skip;
	FILE *f;

	trace_set(TRACEFS "tracing_on", "0");
	snprintf(path, sizeof(path), TRACEFS "%s", file);
	f = fopen(path, "r");
	if (!f)
		return;
	while (fgets(line, sizeof(line), f))
		n++;
	rewind(f);
	for (skip = n - lines; fgets(line, sizeof(line), f); skip--)
		if (skip < 0)
			ksft_print_msg("%s: %s", file, line);
	fclose(f);
}

static void kemari_trace_dump(void)
{
	kemari_trace_print("trace", 300);
}

enum golden_state { GOLDEN_RUNNING, GOLDEN_STOPPED, GOLDEN_DONE };

struct golden_vcpu {
	struct kvm_vcpu *vcpu;
	struct kvm_dirty_gfn *ring;
	uint32_t fetch;
	pthread_t thread;
	sem_t go;
	sem_t *event;
	enum golden_state state;
	uint32_t reason, dirty_entries;
	pid_t tid;
	int stats_fd;
	struct kvm_regs dump;
	sem_t dumped;
};

static __thread struct golden_vcpu *golden_self;

/*
 * SIGUSR1 in a golden vCPU thread: KVM_RUN has returned EINTR, and
 * _vcpu_run() re-enters once this returns, so take the registers here.
 */
static void golden_dump_handler(int sig)
{
	struct golden_vcpu *g = golden_self;

	if (g && !ioctl(g->vcpu->fd, KVM_GET_REGS, &g->dump))
		sem_post(&g->dumped);
}

/* Where a thread is in the kernel: its state and stack from /proc. */
static void print_task(pid_t tid)
{
	char path[64], line[256];
	FILE *f;

	snprintf(path, sizeof(path), "/proc/self/task/%d/stat", tid);
	f = fopen(path, "r");
	if (f) {
		if (fgets(line, sizeof(line), f))
			ksft_print_msg("task %d: %s", tid, line);
		fclose(f);
	}
	snprintf(path, sizeof(path), "/proc/self/task/%d/stack", tid);
	f = fopen(path, "r");
	if (!f)
		return;
	while (fgets(line, sizeof(line), f))
		ksft_print_msg("task %d stack: %s", tid, line);
	fclose(f);
}

/* Say where the guest was when it stopped unexpectedly (a triple fault). */
static void golden_report_exit(struct kvm_vcpu *vcpu)
{
	struct kvm_vcpu_events ev;
	struct kvm_sregs sregs;
	struct kvm_regs regs;

	vcpu_regs_get(vcpu, &regs);
	vcpu_sregs_get(vcpu, &sregs);
	vcpu_events_get(vcpu, &ev);
	ksft_print_msg("vCPU %u: exit %u at rip %#llx rsp %#llx cr2 %#llx cr3 %#llx efer %#llx\n",
		       vcpu->id, vcpu->run->exit_reason, regs.rip, regs.rsp,
		       sregs.cr2, sregs.cr3, sregs.efer);
	ksft_print_msg("vCPU %u: events: exception inj %u pend %u nr %u err %#x; interrupt inj %u nr %u; nmi inj %u pend %u; triple_fault %u\n",
		       vcpu->id, ev.exception.injected, ev.exception.pending,
		       ev.exception.nr, ev.exception.error_code,
		       ev.interrupt.injected, ev.interrupt.nr, ev.nmi.injected,
		       ev.nmi.pending, ev.triple_fault.pending);
}

/* A golden vCPU has stopped: tell the host, wait until it lets it go. */
static void golden_stopped(struct golden_vcpu *g)
{
	WRITE_ONCE(g->state, GOLDEN_STOPPED);
	sem_post(g->event);
	while (sem_wait(&g->go) && errno == EINTR)
		;
}

/* Any other exit must be the guest's ucall; true once it is done. */
static bool golden_ucall(struct golden_vcpu *g)
{
	struct ucall uc;

	if (g->vcpu->run->exit_reason != KVM_EXIT_IO)
		golden_report_exit(g->vcpu);
	TEST_ASSERT_KVM_EXIT_REASON(g->vcpu, KVM_EXIT_IO);
	switch (get_ucall(g->vcpu, &uc)) {
	case UCALL_DONE:
		WRITE_ONCE(g->state, GOLDEN_DONE);
		sem_post(g->event);
		return true;
	case UCALL_ABORT:
		REPORT_GUEST_ASSERT(uc);
		break;
	default:
		TEST_FAIL("Unexpected ucall %lu", uc.cmd);
	}
	return false;
}

static void *golden_thread(void *arg)
{
	struct golden_vcpu *g = arg;
	struct kvm_run *run = g->vcpu->run;

	g->tid = syscall(SYS_gettid);
	golden_self = g;
	for (;;) {
		vcpu_run(g->vcpu);
		if (run->exit_reason == KVM_EXIT_KEMARI_SYNC) {
			g->reason = run->kemari.reason;
			g->dirty_entries = run->kemari.dirty_entries;
			golden_stopped(g);
		} else if (golden_ucall(g)) {
			return NULL;
		}
	}
}

/* Where KVM's modules are, to name a kernel address that shows up. */
static void print_kvm_modules(void)
{
	char line[256];
	FILE *f = fopen("/proc/modules", "r");

	if (!f)
		return;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, "kvm", 3))
			ksft_print_msg("module %s", line);
	fclose(f);
}

/* The vCPU stats that changed over 1 s: is a stuck vCPU exiting at all? */
static void print_stat_deltas(int id, int fd)
{
	struct kvm_stats_header header;
	struct kvm_stats_desc *descs, *d;
	uint64_t *before, now;
	int i;

	read_stats_header(fd, &header);
	descs = read_stats_descriptors(fd, &header);
	before = calloc(header.num_desc, sizeof(*before));
	for (i = 0; i < header.num_desc; i++) {
		d = get_stats_descriptor(descs, i, &header);
		if (d->size == 1)
			read_stat_data(fd, &header, d, &before[i], 1);
	}
	sleep(1);
	for (i = 0; i < header.num_desc; i++) {
		d = get_stats_descriptor(descs, i, &header);
		if (d->size != 1)
			continue;
		read_stat_data(fd, &header, d, &now, 1);
		if (now != before[i])
			ksft_print_msg("vCPU %d: %s +%lu in 1 s (now %lu)\n", id,
				       d->name, now - before[i], now);
	}
	free(before);
	free(descs);
}

/* Where a stuck vCPU's guest is: its registers, five times 200 ms apart. */
static void golden_dump(struct kvm_vm *vm, struct golden_vcpu *g, int id)
{
	struct timespec ts;
	uint8_t *code;
	int n;

	for (n = 0; n < 5; n++) {
		pthread_kill(g->thread, SIGUSR1);
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += 2;
		if (sem_timedwait(&g->dumped, &ts)) {
			ksft_print_msg("vCPU %d: no registers (KVM_RUN did not return on a signal)\n",
				       id);
			return;
		}
		ksft_print_msg("vCPU %d: rip %#llx rsp %#llx rflags %#llx rax %#llx rcx %#llx rdx %#llx\n",
			       id, g->dump.rip, g->dump.rsp, g->dump.rflags,
			       g->dump.rax, g->dump.rcx, g->dump.rdx);
		/* The test's code is in the low 4 GiB; anything else is not its. */
		if (g->dump.rip < (1ull << 32)) {
			code = addr_gva2hva(vm, g->dump.rip);
			ksft_print_msg("vCPU %d: code at rip %02x %02x %02x %02x %02x %02x\n",
				       id, code[0], code[1], code[2], code[3],
				       code[4], code[5]);
		}
		usleep(200000);
	}
}

/* Wait for a vCPU to report; after 60 s, say which did not, and fail. */
static void golden_wait(struct kvm_vm *vm, sem_t *event,
			struct golden_vcpu *g, uint64_t syncs)
{
	struct timespec ts;
	int i;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += 60;
	if (!sem_timedwait(event, &ts))
		return;
	ksft_print_msg("golden_stop as the host sees it: %lu\n",
		       *(uint64_t *)addr_gva2hva(vm, (vm_vaddr_t)&golden_stop));
	print_kvm_modules();
	for (i = 0; i < GOLDEN_VCPUS; i++) {
		ksft_print_msg("vCPU %d: state %d, last reason %#x\n", i,
			       READ_ONCE(g[i].state), g[i].reason);
		if (READ_ONCE(g[i].state) != GOLDEN_RUNNING)
			continue;
		print_task(g[i].tid);
		print_stat_deltas(i, g[i].stats_fd);
		golden_dump(vm, &g[i], i);
		kemari_trace(true, false);
		usleep(300000);
		kemari_trace_dump();
	}
	TEST_FAIL("sync point %lu: a vCPU did not stop within 60 s", syncs);
}

struct golden_region {
	uint32_t slot;
	uint64_t gpa, size;
	uint8_t *mem, *shadow;
};

/* Harvest one ring: returns the entries, copying their pages to the shadow. */
static uint32_t golden_harvest(struct golden_vcpu *g, uint32_t ring_entries,
			       struct golden_region *regions, int nr_regions)
{
	struct kvm_dirty_gfn *e;
	uint32_t n = 0, as_slot;
	uint64_t off;
	int i;

	for (;;) {
		e = &g->ring[g->fetch % ring_entries];
		if (!(__atomic_load_n(&e->flags, __ATOMIC_ACQUIRE) &
		      KVM_DIRTY_GFN_F_DIRTY))
			break;
		as_slot = e->slot;
		off = e->offset;
		for (i = 0; i < nr_regions; i++)
			if (regions[i].slot == as_slot)
				break;
		TEST_ASSERT(i < nr_regions, "dirty entry for slot %u", as_slot);
		TEST_ASSERT(off < regions[i].size / 4096,
			    "dirty entry offset %#lx beyond slot %u", off, as_slot);
		memcpy(regions[i].shadow + off * 4096,
		       regions[i].mem + off * 4096, 4096);
		__atomic_store_n(&e->flags, KVM_DIRTY_GFN_F_RESET,
				 __ATOMIC_RELEASE);
		g->fetch++;
		n++;
	}
	return n;
}

struct golden_mode {
	const char *name;
	uint32_t ring_entries;
	uint32_t quota;
	uint64_t out_every;
	uint64_t syncs;
	bool signals;	/* no Kemari: the host stops the vCPUs itself */
};

/*
 * The golden loop on a VM without Kemari, the control for the flakes that
 * tests/kemari.list records: the same guest, rings and checks, but the
 * host stops the vCPUs itself, at random moments, with immediate_exit and
 * a signal, as a VMM without KVM_KEMARI_FREEZE would; a vCPU also stops on
 * its own at a full dirty ring.  It uses nothing of the Kemari uapi, so
 * its binary runs on the unpatched base too (make soak-base).
 */
static void golden_nop(int sig)
{
}

static void *golden_signal_thread(void *arg)
{
	struct golden_vcpu *g = arg;
	struct kvm_run *run = g->vcpu->run;
	int r;

	g->tid = syscall(SYS_gettid);
	golden_self = g;
	for (;;) {
		r = __vcpu_run(g->vcpu);
		if ((r == -1 && errno == EINTR) ||
		    (!r && run->exit_reason == KVM_EXIT_DIRTY_RING_FULL)) {
			g->reason = r ? KVM_KEMARI_SYNC_PEER :
					KVM_KEMARI_SYNC_DIRTY_QUOTA;
			WRITE_ONCE(run->immediate_exit, 0);
			golden_stopped(g);
			continue;
		}
		TEST_ASSERT(!r, "KVM_RUN: %s", strerror(errno));
		if (golden_ucall(g))
			return NULL;
	}
}

/* After a random pause of up to 2 ms, stop every vCPU that runs. */
static void golden_kick(struct golden_vcpu *g, uint64_t *rng)
{
	int i;

	*rng = xorshift(*rng);
	usleep(*rng % 2000);
	for (i = 0; i < GOLDEN_VCPUS; i++) {
		if (READ_ONCE(g[i].state) != GOLDEN_RUNNING)
			continue;
		WRITE_ONCE(g[i].vcpu->run->immediate_exit, 1);
		pthread_kill(g[i].thread, SIGUSR2);
	}
}

static const struct golden_mode golden_modes[] = {
	/* OUTs alone make the sync points. */
	{ "io", 4096, 0, 48, GOLDEN_SYNCS },
	/* The quota comes first most of the time. */
	{ "quota", 4096, 24, 512, GOLDEN_SYNCS },
	/*
	 * A one-page ring (soft limit 192) fills and wraps at nearly every
	 * sync point; each of those checks ~330 pages, so fewer of them (see
	 * tests/kemari.list on the flakes seen under TCG).
	 */
	{ "ring_full", 256, 0, 4096, GOLDEN_SYNCS / 10 },
	/* The control: no Kemari, stops by signals and at a full ring. */
	{ "signal", 256, 0, 48, GOLDEN_SYNCS, true },
};

static const char *check_golden(const struct golden_mode *m)
{
	struct golden_region regions[2] = {
		{ GOLDEN_SLOT_4K, GOLDEN_GPA_4K, GOLDEN_SIZE_4K },
		{ GOLDEN_SLOT_THP, GOLDEN_GPA_THP, GOLDEN_SIZE_THP },
	};
	struct kvm_vcpu *vcpus[GOLDEN_VCPUS];
	struct sigaction sa = {
		.sa_handler = golden_dump_handler,
		.sa_flags = SA_RESTART,
	};
	struct sigaction kick = { .sa_handler = golden_nop };
	uint64_t rng = 0x2545f4914f6cdd1dull;
	struct golden_vcpu g[GOLDEN_VCPUS];
	uint64_t syncs = 0, pages = 0, quota_syncs = 0, io_syncs = 0;
	uint32_t harvested, total, running, stopped;
	struct kvm_vm *vm;
	sem_t event;
	int i, fd;

	if (!kvm_has_cap(KVM_CAP_DIRTY_LOG_RING))
		return "no KVM_CAP_DIRTY_LOG_RING";

	vm = vm_create(GOLDEN_VCPUS);
	vm_enable_dirty_ring(vm, m->ring_entries * sizeof(struct kvm_dirty_gfn));
	if (!m->signals)
		TEST_ASSERT_EQ(kemari_enable(vm, 0, KVM_KEMARI_ENABLE, m->quota,
					     0, 0), 0);
	vm_userspace_mem_region_add(vm, VM_MEM_SRC_ANONYMOUS, GOLDEN_GPA_4K,
				    GOLDEN_SLOT_4K, GOLDEN_SIZE_4K / 4096,
				    KVM_MEM_LOG_DIRTY_PAGES);
	vm_userspace_mem_region_add(vm, VM_MEM_SRC_ANONYMOUS_THP, GOLDEN_GPA_THP,
				    GOLDEN_SLOT_THP, GOLDEN_SIZE_THP / 4096,
				    KVM_MEM_LOG_DIRTY_PAGES);
	for (i = 0; i < 2; i++) {
		virt_map(vm, regions[i].gpa, regions[i].gpa, regions[i].size / 4096);
		regions[i].mem = addr_gpa2hva(vm, regions[i].gpa);
		regions[i].shadow = malloc(regions[i].size);
		memcpy(regions[i].shadow, regions[i].mem, regions[i].size);
	}
	fd = add_ioeventfd(vm, PIO_PORT, 1, true, false);
	golden_out_every = m->out_every;
	sync_global_to_guest(vm, golden_out_every);

	for (i = 0; i < ARRAY_SIZE(golden_vectors); i++)
		vm_install_exception_handler(vm, golden_vectors[i],
					     golden_exception);

	sigaction(SIGUSR1, &sa, NULL);
	sigaction(SIGUSR2, &kick, NULL);
	sem_init(&event, 0, 0);
	for (i = 0; i < GOLDEN_VCPUS; i++) {
		vcpus[i] = vm_vcpu_add(vm, i, golden_guest);
		vcpu_args_set(vcpus[i], 1, 0x9e3779b97f4a7c15ull * (i + 1));
		g[i] = (struct golden_vcpu) {
			.vcpu = vcpus[i],
			.ring = vcpu_map_dirty_ring(vcpus[i]),
			.event = &event,
			.stats_fd = vcpu_get_stats_fd(vcpus[i]),
		};
		sem_init(&g[i].go, 0, 0);
		sem_init(&g[i].dumped, 0, 0);
	}
	for (i = 0; i < GOLDEN_VCPUS; i++)
		pthread_create(&g[i].thread, NULL, m->signals ?
			       golden_signal_thread : golden_thread, &g[i]);

	running = GOLDEN_VCPUS;
	while (running) {
		if (m->signals)
			golden_kick(g, &rng);
		/* Every vCPU that was let go reports back once, in time. */
		for (i = 0; i < running; i++)
			golden_wait(vm, &event, g, syncs);

		running = stopped = total = 0;
		for (i = 0; i < GOLDEN_VCPUS; i++) {
			harvested = golden_harvest(&g[i], m->ring_entries,
						   regions, 2);
			if (g[i].state == GOLDEN_STOPPED) {
				stopped++;
				TEST_ASSERT(m->signals ||
					    harvested == g[i].dirty_entries,
					    "vCPU %d: harvested %u, exit said %u",
					    i, harvested, g[i].dirty_entries);
				quota_syncs += !!(g[i].reason & KVM_KEMARI_SYNC_DIRTY_QUOTA);
				io_syncs += !!(g[i].reason & KVM_KEMARI_SYNC_IO_BUS);
			}
			total += harvested;
		}
		TEST_ASSERT_EQ(kvm_vm_reset_dirty_ring(vm), total);
		pages += total;
		for (i = 0; i < 2; i++)
			TEST_ASSERT(!memcmp(regions[i].shadow, regions[i].mem,
					    regions[i].size),
				    "%s: sync point %lu: slot %u differs from its replica",
				    m->name, syncs, regions[i].slot);
		if (stopped)
			syncs++;
		if (syncs == m->syncs)
			WRITE_ONCE(*(uint64_t *)addr_gva2hva(vm, (vm_vaddr_t)&golden_stop), 1);

		if (!m->signals)
			kemari_resume(vm);
		for (i = 0; i < GOLDEN_VCPUS; i++) {
			if (g[i].state != GOLDEN_STOPPED)
				continue;
			g[i].state = GOLDEN_RUNNING;
			running++;
			sem_post(&g[i].go);
		}
	}
	for (i = 0; i < GOLDEN_VCPUS; i++) {
		pthread_join(g[i].thread, NULL);
		close(g[i].stats_fd);
	}

	ksft_print_msg("golden %s: %lu sync points (%lu io, %lu dirty quota), %lu pages checked\n",
		       m->name, syncs, io_syncs, quota_syncs, pages);
	TEST_ASSERT(syncs >= m->syncs, "only %lu sync points", syncs);
	if (m->quota || m->ring_entries < 4096)
		TEST_ASSERT(quota_syncs, "%s: no dirty quota or full ring sync",
			    m->name);
	else
		TEST_ASSERT(io_syncs, "%s: no io sync", m->name);
	for (i = 0; i < 2; i++)
		free(regions[i].shadow);
	close(fd);
	kvm_vm_free(vm);
	return NULL;
}

static const char *test_golden_io(void)
{
	return check_golden(&golden_modes[0]);
}

static const char *test_golden_quota(void)
{
	return check_golden(&golden_modes[1]);
}

static const char *test_golden_ring_full(void)
{
	return check_golden(&golden_modes[2]);
}

static const char *test_golden_signal(void)
{
	return check_golden(&golden_modes[3]);
}

/* The dirty quota is capped at the largest ring. */
static const char *test_dirty_quota_bad(void)
{
	struct kvm_vm *vm = vm_create_barebones();
	uint32_t soft_limit;

	/* No dirty ring yet: no quota can fire. */
	assert_enable_fails(vm, EINVAL, 0, KVM_KEMARI_ENABLE, 1, 0, 0);
	assert_enable_fails(vm, EINVAL, 0, KVM_KEMARI_ENABLE, 65536, 0, 0);

	if (!kvm_has_cap(KVM_CAP_DIRTY_LOG_RING)) {
		kvm_vm_free(vm);
		return "no KVM_CAP_DIRTY_LOG_RING";
	}
	vm_enable_dirty_ring(vm, 1024 * sizeof(struct kvm_dirty_gfn));
	/* 64 reserved entries; with Intel's PML, its buffer too. */
	soft_limit = 1024 - 64;
	if (host_cpu_is_intel && get_kvm_intel_param_bool("pml"))
		soft_limit -= 512;
	assert_enable_fails(vm, EINVAL, 0, KVM_KEMARI_ENABLE, soft_limit + 1,
			    0, 0);
	assert_enable_fails(vm, EINVAL, 0, KVM_KEMARI_ENABLE, 1024, 0, 0);
	assert_enable_fails(vm, EINVAL, 0, KVM_KEMARI_ENABLE, -1ull, 0, 0);
	TEST_ASSERT_EQ(kemari_enable(vm, 0, KVM_KEMARI_ENABLE, soft_limit,
				     0, 0), 0);
	kvm_vm_free(vm);
	return NULL;
}

/*
 * A resampling irqfd signals its resample eventfd at the guest's EOI, out
 * of the VM with no sync point: KVM_IRQFD refuses one on a Kemari VM, and
 * KVM_ENABLE_CAP refuses Kemari on a VM that has one, both with EBUSY.
 * Plain irqfds stay allowed, and the refusal leaves nothing behind.
 */
static int irqfd_assign(struct kvm_vm *vm, uint32_t gsi, bool resample,
			int *fds)
{
	struct kvm_irqfd irqfd = {
		.gsi = gsi,
		.flags = resample ? KVM_IRQFD_FLAG_RESAMPLE : 0,
	};

	fds[0] = eventfd(0, 0);
	fds[1] = eventfd(0, 0);
	irqfd.fd = fds[0];
	irqfd.resamplefd = fds[1];
	return __vm_ioctl(vm, KVM_IRQFD, &irqfd);
}

static void irqfd_deassign(struct kvm_vm *vm, uint32_t gsi, int *fds)
{
	struct kvm_irqfd irqfd = {
		.fd = fds[0],
		.gsi = gsi,
		.flags = KVM_IRQFD_FLAG_DEASSIGN,
	};

	vm_ioctl(vm, KVM_IRQFD, &irqfd);
	close(fds[0]);
	close(fds[1]);
}

static const char *test_irqfd_resample_refused(void)
{
	struct kvm_vm *vm;
	int fds[2], r;

	if (!kvm_has_cap(KVM_CAP_IRQFD_RESAMPLE))
		return "no KVM_CAP_IRQFD_RESAMPLE";

	/* Kemari first: no resampler. */
	vm = vm_create(1);
	TEST_ASSERT_EQ(kemari_enable(vm, 0, KVM_KEMARI_ENABLE, 0, 0, 0), 0);
	r = irqfd_assign(vm, 5, true, fds);
	TEST_ASSERT(r == -1 && errno == EBUSY,
		    "resampling irqfd on a Kemari VM: r = %d, errno %d", r, errno);
	close(fds[0]);
	close(fds[1]);
	TEST_ASSERT_EQ(irqfd_assign(vm, 5, false, fds), 0);
	irqfd_deassign(vm, 5, fds);
	kvm_vm_free(vm);

	/* A resampler first: no Kemari, until it is gone. */
	vm = vm_create(1);
	TEST_ASSERT_EQ(irqfd_assign(vm, 5, true, fds), 0);
	assert_enable_fails(vm, EBUSY, 0, KVM_KEMARI_ENABLE, 0, 0, 0);
	irqfd_deassign(vm, 5, fds);
	TEST_ASSERT_EQ(kemari_enable(vm, 0, KVM_KEMARI_ENABLE, 0, 0, 0), 0);
	kvm_vm_free(vm);
	return NULL;
}

/*
 * Xen's EVTCHNOP_send and Hyper-V's HvSignalEvent signal an eventfd from
 * inside KVM, past the buses: a Xen port that delivers to an eventfd and
 * a Hyper-V connection eventfd are refused on a Kemari VM, and Kemari on
 * a VM that has one, with EBUSY.  A Xen port that delivers to the VM's
 * own vCPU stays allowed, and the refusals leave nothing behind.
 */
#define XEN_EVTCHNSTAT_INTERDOMAIN	2

static int xen_port_assign(struct kvm_vm *vm, uint32_t port, int fd)
{
	struct kvm_xen_hvm_attr ha = {
		.type = KVM_XEN_ATTR_TYPE_EVTCHN,
		.u.evtchn.send_port = port,
		.u.evtchn.type = XEN_EVTCHNSTAT_INTERDOMAIN,
	};

	if (fd >= 0) {
		ha.u.evtchn.deliver.eventfd.fd = fd;
	} else {
		ha.u.evtchn.deliver.port.port = port + 100;
		ha.u.evtchn.deliver.port.priority =
			KVM_IRQ_ROUTING_XEN_EVTCHN_PRIO_2LEVEL;
	}
	return __vm_ioctl(vm, KVM_XEN_HVM_SET_ATTR, &ha);
}

static int xen_port_deassign(struct kvm_vm *vm, uint32_t port)
{
	struct kvm_xen_hvm_attr ha = {
		.type = KVM_XEN_ATTR_TYPE_EVTCHN,
		.u.evtchn.send_port = port,
		.u.evtchn.flags = KVM_XEN_EVTCHN_DEASSIGN,
	};

	return __vm_ioctl(vm, KVM_XEN_HVM_SET_ATTR, &ha);
}

static const char *test_xen_eventfd_refused(void)
{
	int efd = eventfd(0, 0), r;
	struct kvm_vm *vm;

	if (!(kvm_check_cap(KVM_CAP_XEN_HVM) & KVM_XEN_HVM_CONFIG_EVTCHN_SEND))
		return "no KVM_XEN_HVM_CONFIG_EVTCHN_SEND";
	TEST_ASSERT(efd >= 0, "eventfd: errno %d", errno);

	/* Kemari first: no eventfd port, but a port to a vCPU. */
	vm = vm_create(1);
	TEST_ASSERT_EQ(kemari_enable(vm, 0, KVM_KEMARI_ENABLE, 0, 0, 0), 0);
	r = xen_port_assign(vm, 3, efd);
	TEST_ASSERT(r == -1 && errno == EBUSY,
		    "Xen eventfd port on a Kemari VM: r = %d, errno %d", r, errno);
	r = xen_port_deassign(vm, 3);
	TEST_ASSERT(r == -1 && errno == ENOENT,
		    "the refused port was left behind: r = %d, errno %d",
		    r, errno);
	TEST_ASSERT_EQ(xen_port_assign(vm, 3, -1), 0);
	kvm_vm_free(vm);

	/* An eventfd port first: no Kemari until it is gone. */
	vm = vm_create(1);
	TEST_ASSERT_EQ(xen_port_assign(vm, 3, efd), 0);
	TEST_ASSERT_EQ(xen_port_assign(vm, 4, -1), 0);
	assert_enable_fails(vm, EBUSY, 0, KVM_KEMARI_ENABLE, 0, 0, 0);
	TEST_ASSERT_EQ(xen_port_deassign(vm, 3), 0);
	TEST_ASSERT_EQ(kemari_enable(vm, 0, KVM_KEMARI_ENABLE, 0, 0, 0), 0);
	kvm_vm_free(vm);
	close(efd);
	return NULL;
}

static int hv_eventfd(struct kvm_vm *vm, uint32_t conn_id, int fd,
		      uint32_t flags)
{
	struct kvm_hyperv_eventfd hvevfd = {
		.conn_id = conn_id,
		.fd = fd,
		.flags = flags,
	};

	return __vm_ioctl(vm, KVM_HYPERV_EVENTFD, &hvevfd);
}

static const char *test_hv_eventfd_refused(void)
{
	int efd = eventfd(0, 0), r;
	struct kvm_vm *vm;

	if (!kvm_has_cap(KVM_CAP_HYPERV_EVENTFD))
		return "no KVM_CAP_HYPERV_EVENTFD";
	TEST_ASSERT(efd >= 0, "eventfd: errno %d", errno);

	/* Kemari first: no connection eventfd. */
	vm = vm_create(1);
	TEST_ASSERT_EQ(kemari_enable(vm, 0, KVM_KEMARI_ENABLE, 0, 0, 0), 0);
	r = hv_eventfd(vm, 7, efd, 0);
	TEST_ASSERT(r == -1 && errno == EBUSY,
		    "Hyper-V eventfd on a Kemari VM: r = %d, errno %d", r, errno);
	r = hv_eventfd(vm, 7, -1, KVM_HYPERV_EVENTFD_DEASSIGN);
	TEST_ASSERT(r == -1 && errno == ENOENT,
		    "the refused eventfd was left behind: r = %d, errno %d",
		    r, errno);
	kvm_vm_free(vm);

	/* A connection eventfd first: no Kemari until it is gone. */
	vm = vm_create(1);
	TEST_ASSERT_EQ(hv_eventfd(vm, 7, efd, 0), 0);
	assert_enable_fails(vm, EBUSY, 0, KVM_KEMARI_ENABLE, 0, 0, 0);
	TEST_ASSERT_EQ(hv_eventfd(vm, 7, -1, KVM_HYPERV_EVENTFD_DEASSIGN), 0);
	TEST_ASSERT_EQ(kemari_enable(vm, 0, KVM_KEMARI_ENABLE, 0, 0, 0), 0);
	kvm_vm_free(vm);
	close(efd);
	return NULL;
}

/*
 * An instruction that writes two pieces to devices, at GPAs that are not
 * adjacent: a PUSH across a page boundary, whose two pages map to device
 * pages apart.  The first piece cannot hold the second, so KVM abandons
 * the instruction: the sync exit comes with no pending write and the
 * guest still before the PUSH (RSP as it was), and neither device has
 * seen anything.  After KVM_KEMARI_RESUME the PUSH runs whole: each
 * device sees its piece once, RSP moves once, and nothing was unsynced.
 */
#define SPLIT_VA		0x70000000ull
#define SPLIT_GPA_LO		(MMIO_GPA + 0x3000)
#define SPLIT_GPA_HI		(MMIO_GPA + 0x1000)
#define SPLIT_SP		(SPLIT_VA + 4096 + 4)
#define SPLIT_VAL		0x1122334455667788ull

static void split_guest(void)
{
	uint64_t sp = SPLIT_SP;

	asm volatile("xchg %0, %%rsp\n\t"
		     "push %1\n\t"
		     "xchg %0, %%rsp"
		     : "+r"(sp) : "r"(SPLIT_VAL) : "memory");
	GUEST_ASSERT_EQ(sp, SPLIT_SP - 8);
	GUEST_DONE();
}

/*
 * The same split as the first element of a REP STOSQ of two: KVM runs that
 * element again after the sync, and only that one; the second, in the
 * upper device page, is held and synced on its own.
 */
#define SPLIT_STOS_GPA		(SPLIT_GPA_HI + 4)

static void split_stos_guest(void)
{
	uint64_t rdi = SPLIT_SP - 8, rcx = 2;

	asm volatile("cld\n\t"
		     "rep stosq"
		     : "+D"(rdi), "+c"(rcx) : "a"(SPLIT_VAL) : "memory");
	GUEST_ASSERT_EQ(rcx, 0);
	GUEST_DONE();
}

static void check_split_stos(void)
{
	struct kvm_kemari_exit *e;
	struct kvm_vcpu *vcpu;
	struct kvm_regs regs;
	struct kvm_vm *vm;
	int lo, hi, next;
	struct ucall uc;

	vm = vm_create(1);
	TEST_ASSERT_EQ(kemari_enable(vm, 0, KVM_KEMARI_ENABLE, 0, 0, 0), 0);
	vcpu = vm_vcpu_add(vm, 0, split_stos_guest);
	virt_pg_map(vm, SPLIT_VA, SPLIT_GPA_LO);
	virt_pg_map(vm, SPLIT_VA + 4096, SPLIT_GPA_HI);
	lo = add_ioeventfd(vm, SPLIT_GPA_LO + 4092, 4, false, false);
	hi = add_ioeventfd(vm, SPLIT_GPA_HI, 4, false, false);
	next = add_ioeventfd(vm, SPLIT_STOS_GPA, 8, false, false);

	e = run_to_kemari(vcpu, KVM_KEMARI_SYNC_IO_BUS);
	assert_pending(&e->write, 0, 0, 0, 0);
	vcpu_regs_get(vcpu, &regs);
	TEST_ASSERT(regs.rcx == 2 && !eventfd_count(lo) && !eventfd_count(hi),
		    "REP STOSQ: RCX %llu at the first sync, or a piece went out",
		    regs.rcx);

	kemari_resume(vm);
	e = run_to_kemari(vcpu, KVM_KEMARI_SYNC_IO_BUS);
	assert_pending(&e->write, KVM_KEMARI_BUS_MMIO, SPLIT_STOS_GPA, 8, 1);
	TEST_ASSERT(eventfd_count(lo) == 1 && eventfd_count(hi) == 1 &&
		    !eventfd_count(next),
		    "REP STOSQ: the first element must be out once, the second held");

	kemari_resume(vm);
	vcpu_run(vcpu);
	if (get_ucall(vcpu, &uc) == UCALL_ABORT)
		REPORT_GUEST_ASSERT(uc);
	TEST_ASSERT_EQ(uc.cmd, UCALL_DONE);
	TEST_ASSERT_EQ(eventfd_count(next), 1);
	close(lo);
	close(hi);
	close(next);
	kvm_vm_free(vm);
}

static const char *test_sync_split_store(void)
{
	struct kvm_kemari_pending *p = calloc(1, sizeof(*p));
	uint64_t unsynced;
	struct kvm_kemari_exit *e;
	struct kvm_vcpu *vcpu;
	struct kvm_regs regs;
	struct kvm_vm *vm;
	struct ucall uc;
	int lo, hi;

	vm = vm_create(1);
	TEST_ASSERT_EQ(kemari_enable(vm, 0, KVM_KEMARI_ENABLE, 0, 0, 0), 0);
	vcpu = vm_vcpu_add(vm, 0, split_guest);
	virt_pg_map(vm, SPLIT_VA, SPLIT_GPA_LO);
	virt_pg_map(vm, SPLIT_VA + 4096, SPLIT_GPA_HI);
	lo = add_ioeventfd(vm, SPLIT_GPA_LO + 4092, 4, false, false);
	hi = add_ioeventfd(vm, SPLIT_GPA_HI, 4, false, false);
	unsynced = vcpu_stat(vcpu, "kemari_writes_unsynced");

	e = run_to_kemari(vcpu, KVM_KEMARI_SYNC_IO_BUS);
	assert_pending(&e->write, 0, 0, 0, 0);
	vcpu_ioctl(vcpu, KVM_KEMARI_GET_PENDING, p);
	assert_pending(&p->write, 0, 0, 0, 0);
	TEST_ASSERT(!eventfd_count(lo) && !eventfd_count(hi),
		    "a piece of the PUSH reached its device before the sync");
	vcpu_regs_get(vcpu, &regs);
	TEST_ASSERT(regs.rsp == SPLIT_SP,
		    "RSP %#llx at the sync exit, want %#llx: the PUSH ran",
		    regs.rsp, SPLIT_SP);

	kemari_resume(vm);
	vcpu_run(vcpu);
	if (get_ucall(vcpu, &uc) == UCALL_ABORT)
		REPORT_GUEST_ASSERT(uc);
	TEST_ASSERT(uc.cmd == UCALL_DONE,
		    "after the sync: exit %s, ucall %lu, want the guest done",
		    exit_reason_str(vcpu->run->exit_reason), uc.cmd);
	TEST_ASSERT(eventfd_count(lo) == 1 && eventfd_count(hi) == 1,
		    "each piece must reach its device once after the sync");
	TEST_ASSERT_EQ(vcpu_stat(vcpu, "kemari_writes_unsynced"), unsynced);

	close(lo);
	close(hi);
	free(p);
	kvm_vm_free(vm);

	check_split_stos();
	return NULL;
}

/* A VMM that corrupts its dirty ring must not hurt the kernel. */
#define GARBAGE_PAGES		16

static void garbage_guest(void)
{
	int i;

	for (;;) {
		for (i = 0; i < GARBAGE_PAGES; i++)
			WRITE_ONCE(*(uint64_t *)(GOLDEN_GPA_4K + i * 4096), i);
		GUEST_SYNC(0);
	}
}

static void garbage_run(struct kvm_vcpu *vcpu)
{
	struct ucall uc;

	vcpu_run(vcpu);
	TEST_ASSERT_KVM_EXIT_REASON(vcpu, KVM_EXIT_IO);
	TEST_ASSERT_EQ(get_ucall(vcpu, &uc), UCALL_SYNC);
}

/* Check that ring entries [from, from + n) are pages @first.. of the slot. */
static void garbage_expect(struct kvm_dirty_gfn *ring, uint32_t size,
			   uint32_t from, uint32_t n, uint64_t first)
{
	struct kvm_dirty_gfn *e;
	uint32_t i;

	for (i = 0; i < n; i++) {
		e = &ring[(from + i) % size];
		TEST_ASSERT(e->flags == KVM_DIRTY_GFN_F_DIRTY &&
			    e->slot == GOLDEN_SLOT_4K && e->offset == first + i,
			    "entry %u: flags %#x slot %u offset %#llx, want page %lu",
			    from + i, e->flags, e->slot, e->offset, first + i);
	}
	e = &ring[(from + n) % size];
	TEST_ASSERT(!(e->flags & KVM_DIRTY_GFN_F_DIRTY),
		    "entry %u is dirty too", from + n);
}

static sigjmp_buf sigbus_jmp;

static void sigbus_handler(int sig)
{
	siglongjmp(sigbus_jmp, 1);
}

/*
 * Garbage in the ring: bad slot ids and offsets, RESET out of order and on
 * entries KVM never pushed, and the mmap()s the ring forbids.  Each is
 * ignored or refused; the ring goes on working.
 */
static const char *test_dirty_ring_garbage(void)
{
	uint32_t size = 4096, page = getpagesize(), i;
	long ring_off = (long)KVM_DIRTY_LOG_PAGE_OFFSET * page;
	size_t ring_bytes = size * sizeof(struct kvm_dirty_gfn);
	struct sigaction sa = { .sa_handler = sigbus_handler }, old_sa;
	struct kvm_dirty_gfn *ring;
	struct kvm_vcpu *vcpu;
	char *past;
	struct kvm_vm *vm;

	if (!kvm_has_cap(KVM_CAP_DIRTY_LOG_RING))
		return "no KVM_CAP_DIRTY_LOG_RING";

	vm = vm_create(1);
	vm_enable_dirty_ring(vm, ring_bytes);
	TEST_ASSERT_EQ(kemari_enable(vm, 0, KVM_KEMARI_ENABLE, 0, 0, 0), 0);
	vm_userspace_mem_region_add(vm, VM_MEM_SRC_ANONYMOUS, GOLDEN_GPA_4K,
				    GOLDEN_SLOT_4K, GARBAGE_PAGES,
				    KVM_MEM_LOG_DIRTY_PAGES);
	virt_map(vm, GOLDEN_GPA_4K, GOLDEN_GPA_4K, GARBAGE_PAGES);
	vcpu = vm_vcpu_add(vm, 0, garbage_guest);
	ring = vcpu_map_dirty_ring(vcpu);

	/* The ring must be shared, and not executable. */
	TEST_ASSERT(mmap(NULL, ring_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE,
			 vcpu->fd, ring_off) == MAP_FAILED && errno == EINVAL,
		    "private mapping of the dirty ring");
	TEST_ASSERT(mmap(NULL, ring_bytes, PROT_READ | PROT_EXEC, MAP_SHARED,
			 vcpu->fd, ring_off) == MAP_FAILED && errno == EINVAL,
		    "executable mapping of the dirty ring");
	/* A page past the ring maps, but touching it is SIGBUS. */
	past = mmap(NULL, page, PROT_READ, MAP_SHARED, vcpu->fd,
		    ring_off + ring_bytes);
	TEST_ASSERT(past != MAP_FAILED, "mmap past the ring: %s", strerror(errno));
	sigaction(SIGBUS, &sa, &old_sa);
	if (!sigsetjmp(sigbus_jmp, 1)) {
		(void)READ_ONCE(*past);
		TEST_FAIL("reading past the dirty ring did not fault");
	}
	sigaction(SIGBUS, &old_sa, NULL);
	munmap((void *)past, page);

	garbage_run(vcpu);
	garbage_expect(ring, size, 0, GARBAGE_PAGES, 0);

	/* Bad slot ids and offsets in entries 0 to 3. */
	ring[0].slot = 0x7fff;
	ring[1].slot = (7 << 16) | GOLDEN_SLOT_4K;
	ring[2].offset = GARBAGE_PAGES;
	ring[3].offset = -1ull;
	/* RESET on all entries but 4, and on 32 entries KVM never pushed. */
	for (i = 0; i < GARBAGE_PAGES + 32; i++) {
		if (i >= GARBAGE_PAGES) {
			ring[i].slot = i;
			ring[i].offset = i << 20;
		}
		if (i != 4)
			ring[i].flags = (i < GARBAGE_PAGES ? KVM_DIRTY_GFN_F_DIRTY : 0) |
					KVM_DIRTY_GFN_F_RESET;
	}
	/* Resets stop at entry 4, then at the last entry KVM pushed. */
	TEST_ASSERT_EQ(kvm_vm_reset_dirty_ring(vm), 4);
	ring[4].flags |= KVM_DIRTY_GFN_F_RESET;
	TEST_ASSERT_EQ(kvm_vm_reset_dirty_ring(vm), GARBAGE_PAGES - 4);
	TEST_ASSERT_EQ(kvm_vm_reset_dirty_ring(vm), 0);

	/*
	 * The ring goes on: the guest dirties its pages again, and the ring
	 * reports all of them but pages 0 to 3, whose entries were garbage
	 * and so did not write-protect them again.
	 */
	garbage_run(vcpu);
	garbage_expect(ring, size, GARBAGE_PAGES, GARBAGE_PAGES - 4, 4);
	for (i = GARBAGE_PAGES; i < 2 * GARBAGE_PAGES - 4; i++)
		ring[i].flags |= KVM_DIRTY_GFN_F_RESET;
	TEST_ASSERT_EQ(kvm_vm_reset_dirty_ring(vm), GARBAGE_PAGES - 4);
	garbage_run(vcpu);
	garbage_expect(ring, size, 2 * GARBAGE_PAGES - 4, GARBAGE_PAGES - 4, 4);

	kvm_vm_free(vm);
	return NULL;
}

/*
 * Writes that KVM makes to guest memory on a running vCPU's behalf go into
 * that vCPU's ring like the guest's own stores: steal time, written at
 * every KVM_RUN, and the PV clock, written after KVM_SET_CLOCK.  At every
 * sync point the pages the ring names, copied into a shadow, must make
 * the shadow equal guest memory.
 */
#define KW_PAGES	4
#define KW_ROUNDS	50

static void kvm_writes_guest(void)
{
	wrmsr(MSR_KVM_STEAL_TIME, GOLDEN_GPA_4K | KVM_MSR_ENABLED);
	wrmsr(MSR_KVM_SYSTEM_TIME_NEW, (GOLDEN_GPA_4K + 4096) | 1);
	for (;;)
		outl(PIO_PORT, 0);
}

static const char *test_kvm_writes(void)
{
	uint32_t size = 4096, fetch = 0, round, i;
	uint32_t harvested[KW_PAGES] = { 0 };
	struct kvm_clock_data clock = { 0 };
	struct kvm_steal_time *st;
	struct kvm_dirty_gfn *ring, *e;
	struct kvm_vcpu *vcpu;
	uint8_t *mem, *shadow;
	struct kvm_vm *vm;
	int fd;

	if (!kvm_has_cap(KVM_CAP_DIRTY_LOG_RING))
		return "no KVM_CAP_DIRTY_LOG_RING";

	vm = vm_create(1);
	vm_enable_dirty_ring(vm, size * sizeof(struct kvm_dirty_gfn));
	TEST_ASSERT_EQ(kemari_enable(vm, 0, KVM_KEMARI_ENABLE, 0, 0, 0), 0);
	vm_userspace_mem_region_add(vm, VM_MEM_SRC_ANONYMOUS, GOLDEN_GPA_4K,
				    GOLDEN_SLOT_4K, KW_PAGES,
				    KVM_MEM_LOG_DIRTY_PAGES);
	virt_map(vm, GOLDEN_GPA_4K, GOLDEN_GPA_4K, KW_PAGES);
	vcpu = vm_vcpu_add(vm, 0, kvm_writes_guest);
	ring = vcpu_map_dirty_ring(vcpu);
	fd = add_ioeventfd(vm, PIO_PORT, 4, true, false);
	mem = addr_gpa2hva(vm, GOLDEN_GPA_4K);
	st = (struct kvm_steal_time *)mem;
	shadow = calloc(KW_PAGES, 4096);
	TEST_ASSERT(shadow, "calloc");
	memcpy(shadow, mem, KW_PAGES * 4096);

	for (round = 0; round < KW_ROUNDS; round++) {
		run_to_kemari(vcpu, KVM_KEMARI_SYNC_IO_BUS);
		for (;; fetch++) {
			e = &ring[fetch % size];
			if (!(__atomic_load_n(&e->flags, __ATOMIC_ACQUIRE) &
			      KVM_DIRTY_GFN_F_DIRTY))
				break;
			if (e->slot == GOLDEN_SLOT_4K) {
				TEST_ASSERT(e->offset < KW_PAGES,
					    "offset %#llx", e->offset);
				memcpy(shadow + e->offset * 4096,
				       mem + e->offset * 4096, 4096);
				harvested[e->offset]++;
			}
			__atomic_store_n(&e->flags, KVM_DIRTY_GFN_F_RESET,
					 __ATOMIC_RELEASE);
		}
		kvm_vm_reset_dirty_ring(vm);
		for (i = 0; i < KW_PAGES; i++)
			TEST_ASSERT(!memcmp(shadow + i * 4096, mem + i * 4096, 4096),
				    "round %u: page %u changed but is not in the ring",
				    round, i);
		/* The next KVM_RUN writes the PV clock page again. */
		vm_ioctl(vm, KVM_SET_CLOCK, &clock);
		kemari_resume(vm);
	}
	/* Both pages were written, and reported, at (nearly) every sync. */
	TEST_ASSERT(st->version && harvested[0] >= KW_ROUNDS - 1 &&
		    harvested[1] >= KW_ROUNDS - 1,
		    "steal time version %u, harvested %u and %u times",
		    st->version, harvested[0], harvested[1]);
	TEST_ASSERT_EQ(eventfd_count(fd), KW_ROUNDS - 1);
	close(fd);
	free(shadow);
	kvm_vm_free(vm);
	return NULL;
}

/*
 * Lazy TSC logging (KVM_KEMARI_TSC_LOG).  tsc_guest carries out one
 * tsc_cmd per round: it reads or writes its TSC, records what it read in
 * tsc_vals, and ends the round with an OUT to the PIO ioeventfd, a sync
 * point on a Kemari VM.
 */
#define TSC_N		250	/* reads of each kind per TSC_OP_READ */
#define TSC_MAX_VALS	(4 * TSC_N)

enum tsc_op {
	TSC_OP_READ,		/* RDTSC, RDTSCP, RDMSR, then all mixed */
	TSC_OP_WRITE,		/* WRMSR(IA32_TSC, val), then one RDTSC */
	TSC_OP_ADJUST,		/* IA32_TSC_ADJUST += val, then one RDTSC */
};

struct tsc_cmd {
	uint32_t op;
	uint32_t rdtscp;	/* the guest has RDTSCP */
	uint64_t val;
	uint64_t nvals;		/* values in tsc_vals */
};

static struct tsc_cmd tsc_cmd;
static uint64_t tsc_vals[TSC_MAX_VALS];

/* Read kind @k of @kinds: RDTSC, RDTSCP if the guest has it, RDMSR. */
static uint64_t guest_tsc_read(int k, int kinds)
{
	uint32_t aux;

	if (!k)
		return rdtsc();
	if (k == 1 && kinds == 3)
		return rdtscp(&aux);
	return rdmsr(MSR_IA32_TSC);
}

static void tsc_guest(void)
{
	int kinds, i, n;

	for (;;) {
		GUEST_SYNC(0);
		kinds = READ_ONCE(tsc_cmd.rdtscp) ? 3 : 2;
		n = 0;
		switch (READ_ONCE(tsc_cmd.op)) {
		case TSC_OP_READ:
			for (i = 0; i < kinds * TSC_N; i++)
				tsc_vals[n++] = guest_tsc_read(i / TSC_N, kinds);
			for (i = 0; i < TSC_N; i++)
				tsc_vals[n++] = guest_tsc_read(i % kinds, kinds);
			break;
		case TSC_OP_WRITE:
			wrmsr(MSR_IA32_TSC, READ_ONCE(tsc_cmd.val));
			tsc_vals[n++] = rdtsc();
			break;
		case TSC_OP_ADJUST:
			wrmsr(MSR_IA32_TSC_ADJUST, rdmsr(MSR_IA32_TSC_ADJUST) +
						   READ_ONCE(tsc_cmd.val));
			tsc_vals[n++] = rdtsc();
			break;
		}
		WRITE_ONCE(tsc_cmd.nvals, n);
		asm volatile("outb %b0, %w1" : : "a"(0), "d"(PIO_PORT));
	}
}

/*
 * A VM running tsc_guest, stopped at its first GUEST_SYNC.  With Kemari,
 * *@fd is the ioeventfd that makes the guest's OUT a sync point; without,
 * the OUT exits to userspace and *@fd is -1.
 */
static struct kvm_vm *tsc_vm_create(uint64_t kemari_flags,
				    struct kvm_vcpu **vcpu, int *fd)
{
	struct kvm_vm *vm = vm_create(1);

	*fd = -1;
	if (kemari_flags) {
		TEST_ASSERT_EQ(kemari_enable(vm, 0, kemari_flags, 0, 0, 0), 0);
		*fd = add_ioeventfd(vm, PIO_PORT, 1, true, false);
	}
	*vcpu = vm_vcpu_add(vm, 0, tsc_guest);
	run_to_sync(*vcpu, 0);
	return vm;
}

/* Reads of one TSC_OP_READ round. */
static uint64_t tsc_reads_per_round(void)
{
	return (kvm_cpu_has(X86_FEATURE_RDTSCP) ? 4 : 3) * TSC_N;
}

struct tsc_round {
	uint64_t exits;		/* VM exits during the round */
	uint64_t nvals;
	uint64_t first, last;	/* first and last value the guest read */
	uint64_t host_tsc;	/* IA32_TSC read by the host after the round */
	struct kvm_kemari_tsc_log log;	/* of the sync exit; 0 without one */
};

/*
 * From the guest's GUEST_SYNC, carry out one command; with @sync, expect
 * its OUT to stop at a sync point as the very next exit to userspace
 * (so no read exited to userspace), else to reach userspace as an IO
 * exit.  The guest's values must never go backwards within a round.
 */
static void tsc_round(struct kvm_vm *vm, struct kvm_vcpu *vcpu, uint32_t op,
		      uint64_t val, bool sync, struct tsc_round *r)
{
	struct tsc_cmd *c = addr_gva2hva(vm, (vm_vaddr_t)&tsc_cmd);
	uint64_t *vals = addr_gva2hva(vm, (vm_vaddr_t)tsc_vals);
	uint64_t exits, i;

	c->op = op;
	c->val = val;
	c->rdtscp = kvm_cpu_has(X86_FEATURE_RDTSCP);
	exits = vcpu_stat(vcpu, "exits");
	vcpu_run(vcpu);
	r->exits = vcpu_stat(vcpu, "exits") - exits;
	memset(&r->log, 0, sizeof(r->log));
	if (sync) {
		TEST_ASSERT_KVM_EXIT_REASON(vcpu, KVM_EXIT_KEMARI_SYNC);
		TEST_ASSERT_EQ(vcpu->run->kemari.reason, KVM_KEMARI_SYNC_IO_BUS);
		r->log = vcpu->run->kemari.tsc;
	} else {
		TEST_ASSERT_KVM_EXIT_REASON(vcpu, KVM_EXIT_IO);
		TEST_ASSERT_EQ(vcpu->run->io.port, PIO_PORT);
	}
	r->host_tsc = vcpu_get_msr(vcpu, MSR_IA32_TSC);
	r->nvals = READ_ONCE(c->nvals);
	TEST_ASSERT(r->nvals && r->nvals <= TSC_MAX_VALS, "guest read %lu values",
		    r->nvals);
	for (i = 1; i < r->nvals; i++)
		TEST_ASSERT(vals[i] >= vals[i - 1],
			    "TSC went back: read %lu was %#lx, read %lu %#lx",
			    i - 1, vals[i - 1], i, vals[i]);
	r->first = vals[0];
	r->last = vals[r->nvals - 1];
	if (sync)
		kemari_resume(vm);
	run_to_sync(vcpu, 0);
}

/* The log of a round of reads: exact count, bounds, no exit per read. */
static void check_tsc_read_round(const struct tsc_round *r)
{
	uint64_t reads = tsc_reads_per_round();

	TEST_ASSERT_EQ(r->nvals, reads);
	TEST_ASSERT_EQ(r->log.flags, KVM_KEMARI_TSC_LOG_ON);
	TEST_ASSERT_EQ(r->log.reads, reads);
	TEST_ASSERT_EQ(r->log.writes, 0);
	TEST_ASSERT(r->log.max >= r->last && r->log.max <= r->host_tsc,
		    "log max %#llx outside [last read %#lx, host TSC %#lx]",
		    r->log.max, r->last, r->host_tsc);
	TEST_ASSERT(r->exits >= reads,
		    "%lu VM exits for %lu intercepted reads", r->exits, reads);
}

/*
 * A round of reads that KVM does not intercept: no log, and few exits.
 * SVM intercepts RDMSR(IA32_TSC) in any case, so only RDTSC and RDTSCP
 * count: at most half of them may coincide with an exit.
 */
static void check_tsc_native_round(const struct tsc_round *r)
{
	bool rdtscp = kvm_cpu_has(X86_FEATURE_RDTSCP);
	uint64_t reads = tsc_reads_per_round();
	uint64_t msr_reads = TSC_N + (rdtscp ? TSC_N / 3 : TSC_N / 2);

	TEST_ASSERT_EQ(r->nvals, reads);
	TEST_ASSERT(!r->log.max && !r->log.reads && !r->log.writes &&
		    !r->log.flags, "TSC log without KVM_KEMARI_TSC_LOG");
	TEST_ASSERT(r->exits < msr_reads + (reads - msr_reads) / 2,
		    "%lu VM exits for %lu reads, %lu of them RDMSR",
		    r->exits, reads, msr_reads);
}

/*
 * With KVM_KEMARI_TSC_LOG the guest's reads stay monotonic, none reaches
 * userspace, and the sync exit reports their number and an upper bound
 * that the host's own reading of the TSC does not exceed.  Guest writes
 * of IA32_TSC and IA32_TSC_ADJUST move the TSC and the log with them.
 */
static const char *test_tsc_log(void)
{
	struct tsc_round r, w;
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm;
	int fd;

	vm = tsc_vm_create(KVM_KEMARI_ENABLE | KVM_KEMARI_TSC_LOG, &vcpu, &fd);

	tsc_round(vm, vcpu, TSC_OP_READ, 0, true, &r);
	check_tsc_read_round(&r);
	TEST_ASSERT_EQ(eventfd_count(fd), 1);

	/* A second round counts from the last sync exit on. */
	tsc_round(vm, vcpu, TSC_OP_READ, 0, true, &r);
	check_tsc_read_round(&r);

	/* WRMSR(IA32_TSC) far ahead: the log follows the write. */
	tsc_round(vm, vcpu, TSC_OP_WRITE, r.log.max + (1ull << 40), true, &w);
	TEST_ASSERT_EQ(w.log.writes, 1);
	TEST_ASSERT_EQ(w.log.reads, 1);
	TEST_ASSERT(w.first >= r.log.max + (1ull << 40) &&
		    w.log.max >= w.first && w.log.max <= w.host_tsc,
		    "after WRMSR(IA32_TSC, %#llx): read %#lx, log max %#llx, host TSC %#lx",
		    r.log.max + (1ull << 40), w.first, w.log.max, w.host_tsc);
	r = w;

	/* IA32_TSC_ADJUST moves the TSC back: so does the log's maximum. */
	if (kvm_cpu_has(X86_FEATURE_TSC_ADJUST)) {
		tsc_round(vm, vcpu, TSC_OP_ADJUST, -(1ull << 39), true, &w);
		TEST_ASSERT_EQ(w.log.writes, 1);
		TEST_ASSERT_EQ(w.log.reads, 1);
		TEST_ASSERT(w.first < r.log.max &&
			    w.first + (1ull << 39) >= r.first &&
			    w.log.max >= w.first && w.log.max < r.log.max &&
			    w.log.max <= w.host_tsc,
			    "after TSC_ADJUST -2^39: read %#lx (before %#lx), log max %#llx (before %#llx), host TSC %#lx",
			    w.first, r.first, w.log.max, r.log.max, w.host_tsc);
	}

	/* Reads after the writes are logged as before. */
	tsc_round(vm, vcpu, TSC_OP_READ, 0, true, &r);
	check_tsc_read_round(&r);

	close(fd);
	kvm_vm_free(vm);
	return NULL;
}

/*
 * Without the flag, and without Kemari, RDTSC runs natively: no exits, no
 * log.  A repeated KVM_ENABLE_CAP switches the flag at a sync point, and
 * the next KVM_RUN follows it both ways; no other change is allowed.
 */
static const char *test_tsc_log_off(void)
{
	struct kvm_vcpu *vcpu;
	struct tsc_round r;
	struct kvm_vm *vm;
	int fd;

	vm = tsc_vm_create(0, &vcpu, &fd);
	tsc_round(vm, vcpu, TSC_OP_READ, 0, false, &r);
	check_tsc_native_round(&r);
	kvm_vm_free(vm);

	vm = tsc_vm_create(KVM_KEMARI_ENABLE, &vcpu, &fd);
	tsc_round(vm, vcpu, TSC_OP_READ, 0, true, &r);
	check_tsc_native_round(&r);

	assert_enable_fails(vm, EEXIST, 0, KVM_KEMARI_ENABLE |
			    KVM_KEMARI_TSC_LOG | KVM_KEMARI_EXEMPT_IRQCHIP, 0, 0, 0);
	assert_enable_fails(vm, EEXIST, 0, KVM_KEMARI_ENABLE |
			    KVM_KEMARI_TSC_LOG, 16, 0, 0);
	TEST_ASSERT_EQ(kemari_enable(vm, 0, KVM_KEMARI_ENABLE |
				     KVM_KEMARI_TSC_LOG, 0, 0, 0), 0);
	tsc_round(vm, vcpu, TSC_OP_READ, 0, true, &r);
	check_tsc_read_round(&r);

	TEST_ASSERT_EQ(kemari_enable(vm, 0, KVM_KEMARI_ENABLE, 0, 0, 0), 0);
	tsc_round(vm, vcpu, TSC_OP_READ, 0, true, &r);
	check_tsc_native_round(&r);

	close(fd);
	kvm_vm_free(vm);
	return NULL;
}

/*
 * Nested: L2's reads.  KVM's RDTSC intercept is combined with L1's: a read
 * that only KVM intercepts is answered with L2's TSC (L1 gives L2 no
 * offset here, so it equals L1's) and logged; a read that L1 intercepts
 * goes to L1 and is not logged.  tsc_nested_l2 makes TSC_NESTED_N reads,
 * calls L1, then reads once more and calls L1 again.
 */
#define TSC_NESTED_N	100
#define TSC_NESTED_STACK	64	/* words of L2 stack */

static uint64_t tsc_nested_vals[TSC_NESTED_N];
static bool tsc_nested_svm;	/* set by the host: how L2 calls L1 */

static void tsc_nested_l1_sync(void)
{
	asm volatile("outb %b0, %w1" : : "a"(0), "d"(PIO_PORT));
}

static void tsc_nested_call_l1(void)
{
	if (tsc_nested_svm)
		vmmcall();
	else
		vmcall();
}

static void tsc_nested_l2(void)
{
	int i;

	for (i = 0; i < TSC_NESTED_N; i++)
		tsc_nested_vals[i] = rdtsc();
	tsc_nested_call_l1();
	rdtsc();
	tsc_nested_call_l1();
}

static void tsc_nested_l1_svm(struct svm_test_data *svm)
{
	unsigned long l2_stack[TSC_NESTED_STACK];
	struct vmcb *vmcb = svm->vmcb;

	generic_svm_setup(svm, tsc_nested_l2, &l2_stack[TSC_NESTED_STACK]);
	vmcb->control.intercept &= ~BIT_ULL(INTERCEPT_RDTSC);
	run_guest(vmcb, svm->vmcb_gpa);
	GUEST_ASSERT_EQ(vmcb->control.exit_code, SVM_EXIT_VMMCALL);
	tsc_nested_l1_sync();

	vmcb->save.rip += 3;		/* VMMCALL */
	vmcb->control.intercept |= BIT_ULL(INTERCEPT_RDTSC);
	run_guest(vmcb, svm->vmcb_gpa);
	GUEST_ASSERT_EQ(vmcb->control.exit_code, SVM_EXIT_RDTSC);
	tsc_nested_l1_sync();
	GUEST_DONE();
}

static void tsc_nested_l1_vmx(struct vmx_pages *vmx)
{
	unsigned long l2_stack[TSC_NESTED_STACK];
	uint32_t ctls;

	GUEST_ASSERT(prepare_for_vmx_operation(vmx));
	GUEST_ASSERT(load_vmcs(vmx));
	prepare_vmcs(vmx, tsc_nested_l2, &l2_stack[TSC_NESTED_STACK]);
	ctls = vmreadz(CPU_BASED_VM_EXEC_CONTROL);
	GUEST_ASSERT(!vmwrite(CPU_BASED_VM_EXEC_CONTROL,
			      ctls & ~CPU_BASED_RDTSC_EXITING));
	GUEST_ASSERT(!vmlaunch());
	GUEST_ASSERT_EQ(vmreadz(VM_EXIT_REASON), EXIT_REASON_VMCALL);
	tsc_nested_l1_sync();

	GUEST_ASSERT(!vmwrite(GUEST_RIP, vmreadz(GUEST_RIP) +
			      vmreadz(VM_EXIT_INSTRUCTION_LEN)));
	GUEST_ASSERT(!vmwrite(CPU_BASED_VM_EXEC_CONTROL,
			      ctls | CPU_BASED_RDTSC_EXITING));
	GUEST_ASSERT(!vmresume());
	GUEST_ASSERT_EQ(vmreadz(VM_EXIT_REASON), EXIT_REASON_RDTSC);
	tsc_nested_l1_sync();
	GUEST_DONE();
}

/* Run L1 to its next sync point; a failed GUEST_ASSERT is reported. */
static void tsc_nested_run(struct kvm_vcpu *vcpu, bool sync)
{
	struct ucall uc;

	vcpu_run(vcpu);
	if (sync && vcpu->run->exit_reason == KVM_EXIT_KEMARI_SYNC)
		return;
	TEST_ASSERT_KVM_EXIT_REASON(vcpu, KVM_EXIT_IO);
	switch (get_ucall(vcpu, &uc)) {
	case UCALL_ABORT:
		REPORT_GUEST_ASSERT(uc);
		break;
	case UCALL_DONE:
		TEST_ASSERT(!sync, "L1 finished before its sync point");
		break;
	default:
		TEST_FAIL("Unexpected ucall %lu", uc.cmd);
	}
}

static const char *tsc_log_nested(bool svm)
{
	struct kvm_kemari_tsc_log log;
	uint64_t exits, host_tsc, *vals;
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm;
	vm_vaddr_t gva;
	int fd, i;

	if (svm && !kvm_cpu_has(X86_FEATURE_SVM))
		return "no SVM on this CPU (tsc_log_nested_vmx covers nesting)";
	if (!svm && !kvm_cpu_has(X86_FEATURE_VMX))
		return "no VMX on this CPU (QEMU TCG emulates only AMD SVM)";

	vm = vm_create(1);
	TEST_ASSERT_EQ(kemari_enable(vm, 0, KVM_KEMARI_ENABLE |
				     KVM_KEMARI_TSC_LOG, 0, 0, 0), 0);
	fd = add_ioeventfd(vm, PIO_PORT, 1, true, false);
	vcpu = vm_vcpu_add(vm, 0, svm ? (void *)tsc_nested_l1_svm :
					(void *)tsc_nested_l1_vmx);
	if (svm)
		vcpu_alloc_svm(vm, &gva);
	else
		vcpu_alloc_vmx(vm, &gva);
	vcpu_args_set(vcpu, 1, gva);
	tsc_nested_svm = svm;
	sync_global_to_guest(vm, tsc_nested_svm);

	/* Only KVM intercepts: answered in the kernel, logged, in order. */
	exits = vcpu_stat(vcpu, "exits");
	tsc_nested_run(vcpu, true);
	log = vcpu->run->kemari.tsc;
	host_tsc = vcpu_get_msr(vcpu, MSR_IA32_TSC);
	vals = addr_gva2hva(vm, (vm_vaddr_t)tsc_nested_vals);
	for (i = 1; i < TSC_NESTED_N; i++)
		TEST_ASSERT(vals[i] >= vals[i - 1],
			    "L2's TSC went back: read %d was %#lx, read %d %#lx",
			    i - 1, vals[i - 1], i, vals[i]);
	TEST_ASSERT_EQ(log.flags, KVM_KEMARI_TSC_LOG_ON);
	TEST_ASSERT_EQ(log.reads, TSC_NESTED_N);
	TEST_ASSERT(log.max >= vals[TSC_NESTED_N - 1] && log.max <= host_tsc,
		    "log max %#llx outside [L2's last read %#lx, host TSC %#lx]",
		    log.max, vals[TSC_NESTED_N - 1], host_tsc);
	TEST_ASSERT(vcpu_stat(vcpu, "exits") - exits >= TSC_NESTED_N,
		    "%lu VM exits for %d intercepted L2 reads",
		    vcpu_stat(vcpu, "exits") - exits, TSC_NESTED_N);
	kemari_resume(vm);

	/* L1 intercepts too: the read is L1's to answer, and not logged. */
	tsc_nested_run(vcpu, true);
	TEST_ASSERT_EQ(vcpu->run->kemari.tsc.reads, 0);
	kemari_resume(vm);
	tsc_nested_run(vcpu, false);

	close(fd);
	kvm_vm_free(vm);
	return NULL;
}

static const char *test_tsc_log_nested_svm(void)
{
	return tsc_log_nested(true);
}

static const char *test_tsc_log_nested_vmx(void)
{
	return tsc_log_nested(false);
}

/*
 * KVM_KEMARI_TSC_LOG switched off and on again by KVM_ENABLE_CAP while
 * the vCPU is in L2: its next KVM_RUN, still in L2, follows the flag.  L2
 * reads the TSC in three rounds and, between them, waits for the host
 * without reading it.  The host switches the log, kicks the vCPU out of
 * KVM_RUN with a signal (vcpu_run() enters again) and only then lets the
 * next round start.  Round 1 is intercepted, round 2 not, round 3 again;
 * the log at the sync point holds round 3 alone, since a log switched on
 * starts afresh.
 */
#define TSC_TOGGLE_N	200

static uint64_t tsc_toggle_go, tsc_toggle_done;

static void tsc_toggle_l2(void)
{
	uint64_t r;
	int i;

	for (r = 1; r <= 3; r++) {
		while (READ_ONCE(tsc_toggle_go) < r)
			;
		for (i = 0; i < TSC_TOGGLE_N; i++)
			rdtsc();
		WRITE_ONCE(tsc_toggle_done, r);
	}
	vmmcall();
}

static void tsc_toggle_l1(struct svm_test_data *svm)
{
	unsigned long l2_stack[TSC_NESTED_STACK];
	struct vmcb *vmcb = svm->vmcb;

	generic_svm_setup(svm, tsc_toggle_l2, &l2_stack[TSC_NESTED_STACK]);
	vmcb->control.intercept &= ~BIT_ULL(INTERCEPT_RDTSC);
	run_guest(vmcb, svm->vmcb_gpa);
	GUEST_ASSERT_EQ(vmcb->control.exit_code, SVM_EXIT_VMMCALL);
	tsc_nested_l1_sync();
	GUEST_DONE();
}

static void *tsc_toggle_vcpu(void *arg)
{
	tsc_nested_run(arg, true);
	return NULL;
}

static void tsc_toggle_nop(int sig)
{
}

/* Wait until L2 has finished round @r; returns the exits it took. */
static uint64_t tsc_toggle_round(struct kvm_vm *vm, int fd, uint64_t r)
{
	uint64_t *go = addr_gva2hva(vm, (vm_vaddr_t)&tsc_toggle_go);
	uint64_t *done = addr_gva2hva(vm, (vm_vaddr_t)&tsc_toggle_done);
	uint64_t exits = stats_fd_read(fd, "exits");
	int i;

	WRITE_ONCE(*go, r);
	for (i = 0; i < 60000 && READ_ONCE(*done) < r; i++)
		usleep(1000);
	TEST_ASSERT(READ_ONCE(*done) >= r, "L2 never finished round %lu", r);
	return stats_fd_read(fd, "exits") - exits;
}

/* Switch the log, and make the vCPU enter KVM_RUN again before round 2. */
static void tsc_toggle_switch(struct kvm_vm *vm, pthread_t thread, int fd,
			      bool on)
{
	uint64_t kicks = stats_fd_read(fd, "signal_exits");
	int i;

	TEST_ASSERT_EQ(kemari_enable(vm, 0, KVM_KEMARI_ENABLE |
				     (on ? KVM_KEMARI_TSC_LOG : 0), 0, 0, 0), 0);
	for (i = 0; i < 5000 && stats_fd_read(fd, "signal_exits") == kicks;
	     i++) {
		pthread_kill(thread, SIGUSR2);
		usleep(1000);
	}
	TEST_ASSERT(stats_fd_read(fd, "signal_exits") > kicks,
		    "the vCPU never left KVM_RUN for the signal");
}

static const char *test_tsc_log_toggle_l2(void)
{
	struct sigaction sa = { .sa_handler = tsc_toggle_nop };
	uint64_t on1, off, on2;
	struct kvm_kemari_tsc_log log;
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm;
	pthread_t thread;
	vm_vaddr_t gva;
	int fd, stats;

	if (!kvm_cpu_has(X86_FEATURE_SVM))
		return "no SVM on this CPU (the toggle is tested with SVM only)";

	vm = vm_create(1);
	TEST_ASSERT_EQ(kemari_enable(vm, 0, KVM_KEMARI_ENABLE |
				     KVM_KEMARI_TSC_LOG, 0, 0, 0), 0);
	fd = add_ioeventfd(vm, PIO_PORT, 1, true, false);
	vcpu = vm_vcpu_add(vm, 0, tsc_toggle_l1);
	vcpu_alloc_svm(vm, &gva);
	vcpu_args_set(vcpu, 1, gva);
	stats = vcpu_get_stats_fd(vcpu);
	sigaction(SIGUSR2, &sa, NULL);
	pthread_create(&thread, NULL, tsc_toggle_vcpu, vcpu);

	on1 = tsc_toggle_round(vm, stats, 1);
	tsc_toggle_switch(vm, thread, stats, false);
	off = tsc_toggle_round(vm, stats, 2);
	tsc_toggle_switch(vm, thread, stats, true);
	on2 = tsc_toggle_round(vm, stats, 3);
	pthread_join(thread, NULL);

	TEST_ASSERT(on1 >= TSC_TOGGLE_N && off < TSC_TOGGLE_N / 2 &&
		    on2 >= TSC_TOGGLE_N,
		    "VM exits for %d L2 reads: %lu logged, %lu with the log off, %lu logged again",
		    TSC_TOGGLE_N, on1, off, on2);
	log = vcpu->run->kemari.tsc;
	TEST_ASSERT_EQ(log.flags, KVM_KEMARI_TSC_LOG_ON);
	TEST_ASSERT_EQ(log.reads, TSC_TOGGLE_N);
	kemari_resume(vm);
	tsc_nested_run(vcpu, false);
	close(stats);
	close(fd);
	kvm_vm_free(vm);
	return NULL;
}

/* Leave IA32_TSC out of a saved state: section 7 sets it once. */
static void drop_tsc_msr(struct kvm_x86_state *state)
{
	int i;

	for (i = 0; i < state->msrs.nmsrs; i++)
		if (state->msrs.entries[i].index == MSR_IA32_TSC)
			state->msrs.entries[i] =
				state->msrs.entries[--state->msrs.nmsrs];
}

/*
 * The restore protocol of kemari.rst: a checkpoint taken at a sync exit
 * is restored into a new VM, whose TSC is set once, to the larger of the
 * checkpoint's IA32_TSC and the log's maximum.  Here the IA32_TSC comes
 * from the sync point before, so only the log covers the reads in
 * between: the guest's first read on the new VM must be at least the last
 * value it read on the old one.
 */
static const char *test_tsc_restore(void)
{
	struct kvm_kemari_tsc_log log;
	struct kvm_x86_state *state;
	uint64_t tsc, last, *vals;
	struct kvm_vcpu *vcpu;
	struct tsc_cmd *c;
	struct kvm_vm *vm;
	int fd;

	vm = tsc_vm_create(KVM_KEMARI_ENABLE | KVM_KEMARI_TSC_LOG, &vcpu, &fd);

	/* Far ahead of any fresh VM's TSC; the IA32_TSC of that sync point. */
	c = addr_gva2hva(vm, (vm_vaddr_t)&tsc_cmd);
	vals = addr_gva2hva(vm, (vm_vaddr_t)tsc_vals);
	c->op = TSC_OP_WRITE;
	c->val = 1ull << 50;
	run_to_kemari(vcpu, KVM_KEMARI_SYNC_IO_BUS);
	tsc = vcpu_get_msr(vcpu, MSR_IA32_TSC);
	kemari_resume(vm);
	run_to_sync(vcpu, 0);

	/* A round of reads, and the checkpoint at its sync point. */
	c->op = TSC_OP_READ;
	c->rdtscp = kvm_cpu_has(X86_FEATURE_RDTSCP);
	run_to_kemari(vcpu, KVM_KEMARI_SYNC_IO_BUS);
	log = vcpu->run->kemari.tsc;
	last = vals[READ_ONCE(c->nvals) - 1];
	TEST_ASSERT_EQ(log.reads, tsc_reads_per_round());
	TEST_ASSERT(log.max >= last && last > tsc,
		    "log max %#llx, last read %#lx, earlier IA32_TSC %#lx",
		    log.max, last, tsc);
	state = vcpu_save_state(vcpu);
	close(fd);

	/*
	 * The secondary: a new VM from the same memory.  IA32_TSC is written
	 * once, per the protocol: a second host write within a second of the
	 * first would be taken as a synchronization and snap back to it.
	 */
	kvm_vm_release(vm);
	vcpu = vm_recreate_with_one_vcpu(vm);
	drop_tsc_msr(state);
	vcpu_load_state(vcpu, state);
	kvm_x86_state_cleanup(state);
	vcpu_set_msr(vcpu, MSR_IA32_TSC, tsc > log.max ? tsc : log.max);

	/* The guest goes on after its OUT, to GUEST_SYNC, then reads. */
	run_to_sync(vcpu, 0);
	c = addr_gva2hva(vm, (vm_vaddr_t)&tsc_cmd);
	vals = addr_gva2hva(vm, (vm_vaddr_t)tsc_vals);
	c->op = TSC_OP_READ;
	vcpu_run(vcpu);
	TEST_ASSERT_KVM_EXIT_REASON(vcpu, KVM_EXIT_IO);
	TEST_ASSERT_EQ(vcpu->run->io.port, PIO_PORT);
	TEST_ASSERT(vals[0] >= last && vals[0] >= log.max,
		    "first read after restore %#lx < last read %#lx or saved maximum %#llx",
		    vals[0], last, log.max);
	kvm_vm_free(vm);
	return NULL;
}

/*
 * The TSC restore of kemari.rst section 7, for several vCPUs: the guest
 * TSC of vCPU 0 is written once, and every other vCPU gets vCPU 0's new
 * KVM_VCPU_TSC_OFFSET plus the difference it had on the primary.  Nothing
 * depends on KVM's "writes within a second are in sync" heuristic, so the
 * vCPUs may be restored far apart, and a difference the guest made on
 * purpose (IA32_TSC_ADJUST) is kept.
 */
#define SMP_VCPUS		4
#define SMP_ADJUST		(1ull << 40)

static void tsc_smp_guest(uint64_t id)
{
	if (id == 1)
		wrmsr(MSR_IA32_TSC_ADJUST, SMP_ADJUST);
	for (;;)
		GUEST_SYNC(rdtsc());
}

static uint64_t tsc_offset(struct kvm_vcpu *vcpu)
{
	uint64_t ofs;

	vcpu_device_attr_get(vcpu, KVM_VCPU_TSC_CTRL, KVM_VCPU_TSC_OFFSET, &ofs);
	return ofs;
}

/* The value of the guest's next GUEST_SYNC. */
static uint64_t run_to_val(struct kvm_vcpu *vcpu)
{
	struct ucall uc;

	vcpu_run(vcpu);
	TEST_ASSERT_KVM_EXIT_REASON(vcpu, KVM_EXIT_IO);
	TEST_ASSERT_EQ(get_ucall(vcpu, &uc), UCALL_SYNC);
	return uc.args[1];
}


static const char *test_tsc_restore_smp(void)
{
	uint64_t read[SMP_VCPUS], tsc[SMP_VCPUS], delta[SMP_VCPUS];
	struct kvm_x86_state *state[SMP_VCPUS];
	struct kvm_vcpu *vcpus[SMP_VCPUS];
	uint64_t base = 0, ofs0, now, adjust;
	struct kvm_vm *vm;
	int i;

	if (!kvm_has_cap(KVM_CAP_VCPU_ATTRIBUTES))
		return "no KVM_CAP_VCPU_ATTRIBUTES";

	vm = vm_create(SMP_VCPUS);
	TEST_ASSERT_EQ(kemari_enable(vm, 0, KVM_KEMARI_ENABLE, 0, 0, 0), 0);
	for (i = 0; i < SMP_VCPUS; i++) {
		vcpus[i] = vm_vcpu_add(vm, i, tsc_smp_guest);
		vcpu_args_set(vcpus[i], 1, i);
	}
	if (__vcpu_has_device_attr(vcpus[0], KVM_VCPU_TSC_CTRL,
				   KVM_VCPU_TSC_OFFSET)) {
		kvm_vm_free(vm);
		return "no KVM_VCPU_TSC_OFFSET";
	}

	/* The checkpoint, with every vCPU stopped after a read. */
	for (i = 0; i < SMP_VCPUS; i++)
		read[i] = run_to_val(vcpus[i]);
	for (i = 0; i < SMP_VCPUS; i++) {
		tsc[i] = vcpu_get_msr(vcpus[i], MSR_IA32_TSC);
		delta[i] = tsc_offset(vcpus[i]) - tsc_offset(vcpus[0]);
		state[i] = vcpu_save_state(vcpus[i]);
		drop_tsc_msr(state[i]);
		TEST_ASSERT(tsc[i] >= read[i], "vCPU %d: IA32_TSC %#lx below its read %#lx",
			    i, tsc[i], read[i]);
		/* base + delta[i] must reach vCPU i's saved TSC (they wrap). */
		if (!i || (int64_t)(tsc[i] - delta[i] - base) > 0)
			base = tsc[i] - delta[i];
	}
	TEST_ASSERT((int64_t)(delta[1] - SMP_ADJUST) > -(int64_t)(SMP_ADJUST / 2) &&
		    (int64_t)(delta[1] - SMP_ADJUST) < (int64_t)(SMP_ADJUST / 2),
		    "vCPU 1's TSC_ADJUST did not move its offset: delta %#lx", delta[1]);

	/* The secondary: vCPU 0 now, the rest more than a second later. */
	kvm_vm_release(vm);
	kvm_vm_restart(vm);
	TEST_ASSERT_EQ(kemari_enable(vm, 0, KVM_KEMARI_ENABLE, 0, 0, 0), 0);
	for (i = 0; i < SMP_VCPUS; i++)
		vcpus[i] = vm_vcpu_recreate(vm, i);
	vcpu_load_state(vcpus[0], state[0]);
	vcpu_set_msr(vcpus[0], MSR_IA32_TSC, base);
	ofs0 = tsc_offset(vcpus[0]);
	usleep(1200 * 1000);
	for (i = 1; i < SMP_VCPUS; i++) {
		vcpu_load_state(vcpus[i], state[i]);
		now = ofs0 + delta[i];
		vcpu_device_attr_set(vcpus[i], KVM_VCPU_TSC_CTRL,
				     KVM_VCPU_TSC_OFFSET, &now);
	}

	/* Exactly the primary's differences, and no vCPU behind its past. */
	for (i = 0; i < SMP_VCPUS; i++) {
		TEST_ASSERT(tsc_offset(vcpus[i]) - tsc_offset(vcpus[0]) == delta[i],
			    "vCPU %d: offset differs from vCPU 0's by %#lx, on the primary by %#lx",
			    i, tsc_offset(vcpus[i]) - tsc_offset(vcpus[0]), delta[i]);
		now = run_to_val(vcpus[i]);
		TEST_ASSERT(now >= read[i] && now >= tsc[i],
			    "vCPU %d: TSC %#lx after the restore, %#lx read and %#lx saved before",
			    i, now, read[i], tsc[i]);
	}
	adjust = vcpu_get_msr(vcpus[1], MSR_IA32_TSC_ADJUST);
	TEST_ASSERT_EQ(adjust, SMP_ADJUST);
	for (i = 0; i < SMP_VCPUS; i++)
		kvm_x86_state_cleanup(state[i]);
	kvm_vm_free(vm);
	return NULL;
}

/*
 * kvmclock across a restore (kemari.rst section 7): the checkpoint saves
 * KVM_GET_CLOCK, and the secondary sets it with KVM_SET_CLOCK before the
 * guest runs, so the guest's kvmclock, and CLOCK_MONOTONIC with it, never
 * goes back.  A new VM's kvmclock starts near 0.
 */
static void kvmclock_guest(vm_paddr_t pvti_pa, struct pvclock_vcpu_time_info *pvti)
{
	wrmsr(MSR_KVM_SYSTEM_TIME_NEW, pvti_pa | KVM_MSR_ENABLED);
	for (;;)
		GUEST_SYNC(__pvclock_read_cycles(pvti, rdtsc()));
}

static const char *test_kvmclock_restore(void)
{
	struct kvm_clock_data clock = { 0 };
	struct kvm_x86_state *state;
	uint64_t before, after, tsc;
	struct kvm_vcpu *vcpu;
	vm_vaddr_t pvti_gva;
	struct kvm_vm *vm;
	int i;

	if (!kvm_has_cap(KVM_CAP_ADJUST_CLOCK))
		return "no KVM_CAP_ADJUST_CLOCK";

	vm = vm_create(1);
	TEST_ASSERT_EQ(kemari_enable(vm, 0, KVM_KEMARI_ENABLE, 0, 0, 0), 0);
	vcpu = vm_vcpu_add(vm, 0, kvmclock_guest);
	pvti_gva = vm_vaddr_alloc_page(vm);
	vcpu_args_set(vcpu, 2, addr_gva2gpa(vm, pvti_gva), pvti_gva);

	/* Let the guest's clock run well past a fresh VM's. */
	for (i = 0; i < 5; i++) {
		before = run_to_val(vcpu);
		usleep(100 * 1000);
	}
	before = run_to_val(vcpu);
	TEST_ASSERT(before > 400 * 1000 * 1000ull,
		    "kvmclock %lu ns after 500 ms", before);

	/* The checkpoint. */
	vm_ioctl(vm, KVM_GET_CLOCK, &clock);
	tsc = vcpu_get_msr(vcpu, MSR_IA32_TSC);
	state = vcpu_save_state(vcpu);
	drop_tsc_msr(state);

	/* The secondary. */
	kvm_vm_release(vm);
	kvm_vm_restart(vm);
	TEST_ASSERT_EQ(kemari_enable(vm, 0, KVM_KEMARI_ENABLE, 0, 0, 0), 0);
	vcpu = vm_vcpu_recreate(vm, 0);
	vcpu_load_state(vcpu, state);
	kvm_x86_state_cleanup(state);
	vcpu_set_msr(vcpu, MSR_IA32_TSC, tsc);
	clock.flags = 0;
	vm_ioctl(vm, KVM_SET_CLOCK, &clock);

	after = run_to_val(vcpu);
	TEST_ASSERT(after >= before,
		    "kvmclock went back across the restore: %lu ns, %lu ns before",
		    after, before);
	kvm_vm_free(vm);
	return NULL;
}

/*
 * The freeze protocol (kemari.rst, "The freeze"): KVM_KEMARI_FREEZE,
 * KVM_KEMARI_GET_FREEZE and the checks of KVM_KEMARI_RESUME.
 */
static int kemari_freeze_vm(struct kvm_vm *vm)
{
	return __vm_ioctl(vm, KVM_KEMARI_FREEZE, NULL);
}

/* Serve the backwards REP INSW of @len words from REP_INS_PORT. */
static void rep_ins_run(struct kvm_vm *vm, struct kvm_vcpu *vcpu,
			uint64_t dst, uint16_t len, bool freeze,
			uint32_t *ins, uint32_t *syncs)
{
	struct kvm_run *run = vcpu->run;
	uint16_t next = 0, *data;
	int i;

	*ins = *syncs = 0;
	set_cmd(vm, OP_REP_INSW_BACK, 2, REP_INS_PORT, dst, len);
	for (;;) {
		vcpu_run(vcpu);
		if (run->exit_reason == KVM_EXIT_KEMARI_SYNC) {
			/* A held element: the one just read, at its place. */
			if (run->kemari.reason & KVM_KEMARI_SYNC_IO_BUS) {
				assert_pending(&run->kemari.write,
					       KVM_KEMARI_BUS_MMIO,
					       dst + 2 * (len - next), 2, 1);
				TEST_ASSERT_EQ(*(uint16_t *)run->kemari.data,
					       (uint16_t)(next - 1));
			}
			(*syncs)++;
			kemari_resume(vm);
			continue;
		}
		TEST_ASSERT_KVM_EXIT_REASON(vcpu, KVM_EXIT_IO);
		if (run->io.port != REP_INS_PORT)
			break;
		TEST_ASSERT(run->io.direction == KVM_EXIT_IO_IN &&
			    run->io.size == 2 && run->io.count,
			    "unexpected PIO exit: direction %u size %u count %u",
			    run->io.direction, run->io.size, run->io.count);
		TEST_ASSERT(next + run->io.count <= len,
			    "the device was read %u times for %u words",
			    next + run->io.count, len);
		data = (void *)run + run->io.data_offset;
		for (i = 0; i < run->io.count; i++)
			data[i] = next++;
		/* Freeze while the first read waits to be consumed. */
		if (!(*ins)++ && freeze)
			TEST_ASSERT_EQ(kemari_freeze_vm(vm), 0);
	}
	TEST_ASSERT_EQ(get_ucall(vcpu, NULL), UCALL_SYNC);
	TEST_ASSERT_EQ(next, len);
}

/*
 * A backwards REP INSW (DF=1) from a port that userspace serves takes the
 * words it reads one per step of the emulator.  A freeze that lands while
 * read words wait to be consumed must not make KVM drop them: the
 * instruction, re-executed after the resume, would read the device again.
 * Into RAM, every word arrives once and in order.  Into an ioeventfd, each
 * element is a held write and a sync point of its own, in order, and none
 * reaches the device unsynced.
 */
#define REP_INS_MMIO_LEN	8

static const char *test_sync_rep_ins(void)
{
	uint64_t dst = MMIO_GPA + 0x200;
	int fds[REP_INS_MMIO_LEN], i;
	struct kvm_vcpu *vcpu;
	uint32_t ins, syncs;
	struct kvm_vm *vm;
	uint16_t *buf;

	vm = kemari_vm_create(KVM_KEMARI_ENABLE, 1, &vcpu);
	buf = addr_gva2hva(vm, (vm_vaddr_t)rep_ins_buf);
	run_to_sync(vcpu, 0);

	rep_ins_run(vm, vcpu, 0, REP_INS_LEN, true, &ins, &syncs);
	TEST_ASSERT(ins > 1 && syncs == 1,
		    "%u PIO exits and %u sync exits; want several and one freeze",
		    ins, syncs);
	for (i = 0; i < REP_INS_LEN; i++)
		TEST_ASSERT(buf[REP_INS_LEN - 1 - i] == i,
			    "word %d of the transfer is %u", i,
			    buf[REP_INS_LEN - 1 - i]);

	for (i = 0; i < REP_INS_MMIO_LEN; i++)
		fds[i] = add_ioeventfd(vm, dst + 2 * i, 2, false, false);
	rep_ins_run(vm, vcpu, dst, REP_INS_MMIO_LEN, false, &ins, &syncs);
	TEST_ASSERT(syncs == REP_INS_MMIO_LEN,
		    "%u sync exits for %u held elements", syncs, REP_INS_MMIO_LEN);
	TEST_ASSERT_EQ(vcpu_stat(vcpu, "kemari_writes_unsynced"), 0);
	for (i = 0; i < REP_INS_MMIO_LEN; i++) {
		TEST_ASSERT_EQ(eventfd_count(fds[i]), 1);
		close(fds[i]);
	}
	kvm_vm_free(vm);
	return NULL;
}

static void get_freeze(struct kvm_vm *vm, struct kvm_kemari_freeze *st)
{
	vm_ioctl(vm, KVM_KEMARI_GET_FREEZE, st);
}

static void assert_freeze(struct kvm_vm *vm, uint32_t flags, uint32_t gen,
			  uint32_t stopped, uint32_t running)
{
	struct kvm_kemari_freeze st;

	get_freeze(vm, &st);
	TEST_ASSERT(st.flags == flags && st.generation == gen &&
		    st.stopped == stopped && st.running == running,
		    "freeze: flags %#x generation %u stopped %u running %u, want %#x %u %u %u",
		    st.flags, st.generation, st.stopped, st.running, flags, gen,
		    stopped, running);
}

static void assert_vm_ioctl_fails(struct kvm_vm *vm, unsigned long cmd,
				  void *arg, int err, const char *what)
{
	int r = ioctl(vm->fd, cmd, arg);

	TEST_ASSERT(r == -1 && errno == err, "%s: want errno %d (%s), got r=%d errno=%d (%s)",
		    what, err, strerror(err), r, errno, strerror(errno));
}

/* Every documented return value and error of FREEZE, RESUME, GET_FREEZE. */
static const char *test_freeze_api(void)
{
	struct kvm_kemari_freeze st;
	struct kvm_vcpu *vcpus[1];
	struct kvm_vm *vm;

	/* Not a Kemari VM. */
	vm = vm_create_barebones();
	assert_vm_ioctl_fails(vm, KVM_KEMARI_FREEZE, NULL, EINVAL, "FREEZE off");
	assert_vm_ioctl_fails(vm, KVM_KEMARI_RESUME, NULL, EINVAL, "RESUME off");
	assert_vm_ioctl_fails(vm, KVM_KEMARI_GET_FREEZE, &st, EINVAL,
			      "GET_FREEZE off");
	kvm_vm_free(vm);

	vm = kemari_vm_create(KVM_KEMARI_ENABLE, 1, vcpus);
	assert_vm_ioctl_fails(vm, KVM_KEMARI_FREEZE, (void *)1, EINVAL,
			      "FREEZE arg 1");
	assert_vm_ioctl_fails(vm, KVM_KEMARI_RESUME, (void *)1, EINVAL,
			      "RESUME arg 1");
	assert_vm_ioctl_fails(vm, KVM_KEMARI_GET_FREEZE, (void *)8, EFAULT,
			      "GET_FREEZE bad address");

	/* Never frozen; RESUME has nothing to end. */
	assert_freeze(vm, 0, 0, 0, 0);
	TEST_ASSERT_EQ(__vm_ioctl(vm, KVM_KEMARI_RESUME, NULL), 1);

	/* No vCPU in KVM_RUN: the freeze is complete at once. */
	TEST_ASSERT_EQ(kemari_freeze_vm(vm), 0);
	assert_freeze(vm, KVM_KEMARI_FROZEN, 1, 0, 0);
	TEST_ASSERT_EQ(kemari_freeze_vm(vm), 1);
	assert_freeze(vm, KVM_KEMARI_FROZEN, 1, 0, 0);

	/* A vCPU that enters reports the freeze and runs no guest code. */
	run_to_kemari(vcpus[0], KVM_KEMARI_SYNC_PEER);
	TEST_ASSERT_EQ(vcpus[0]->run->kemari.generation, 1);
	run_to_kemari(vcpus[0], KVM_KEMARI_SYNC_PEER);
	assert_freeze(vm, KVM_KEMARI_FROZEN, 1, 1, 0);
	TEST_ASSERT_EQ(cmds_done(vm), 0);

	TEST_ASSERT_EQ(__vm_ioctl(vm, KVM_KEMARI_RESUME, NULL), 0);
	assert_freeze(vm, 0, 1, 0, 0);
	TEST_ASSERT_EQ(__vm_ioctl(vm, KVM_KEMARI_RESUME, NULL), 1);
	run_to_sync(vcpus[0], 0);

	/*
	 * A held write froze the VM: FREEZE joins that freeze, and the write
	 * stays pending through it and lands once after RESUME.
	 */
	{
		int fd = add_ioeventfd(vm, PIO_PORT, 1, true, false);

		set_cmd(vm, OP_OUT, 1, PIO_PORT, 7, 0);
		run_to_kemari(vcpus[0], KVM_KEMARI_SYNC_IO_BUS);
		TEST_ASSERT_EQ(vcpus[0]->run->kemari.generation, 2);
		TEST_ASSERT_EQ(kemari_freeze_vm(vm), 1);
		run_to_kemari(vcpus[0], KVM_KEMARI_SYNC_IO_BUS | KVM_KEMARI_SYNC_PEER);
		assert_freeze(vm, KVM_KEMARI_FROZEN, 2, 1, 0);
		TEST_ASSERT_EQ(eventfd_count(fd), 0);
		TEST_ASSERT_EQ(__vm_ioctl(vm, KVM_KEMARI_RESUME, NULL), 0);
		run_to_sync(vcpus[0], 1);
		TEST_ASSERT_EQ(eventfd_count(fd), 1);
		close(fd);
	}
	kvm_vm_free(vm);
	return NULL;
}

/*
 * A halted vCPU and one that waits for INIT/SIPI (KVM_MP_STATE_UNINITIALIZED)
 * both leave KVM_RUN with a peer sync exit when the VM freezes, and keep
 * their state.  The test waits for each to block in the kernel by polling
 * its "blocking" stat, which the stats fd reads without vcpu->mutex.
 */
static const char *test_freeze_halted_uninit(void)
{
	struct kvm_mp_state mp = { .mp_state = KVM_MP_STATE_UNINITIALIZED };
	struct kvm_vcpu *vcpus[2];
	pthread_t threads[2];
	struct peer p[2] = { 0 };
	struct kvm_vm *vm;
	int i, sfd[2];

	vm = kemari_vm_create(KVM_KEMARI_ENABLE, 2, vcpus);
	run_to_sync(vcpus[0], 0);
	set_cmd(vm, OP_HALT, 0, 0, 0, 0);
	vcpu_mp_state_set(vcpus[1], &mp);
	for (i = 0; i < 2; i++) {
		sfd[i] = vcpu_get_stats_fd(vcpus[i]);
		p[i].vcpu = vcpus[i];
		sem_init(&p[i].go, 0, 0);
		sem_init(&p[i].done, 0, 0);
		pthread_create(&threads[i], NULL, peer_thread, &p[i]);
		sem_post(&p[i].go);
		wait_blocking(sfd[i]);
	}

	for (i = 0; i < 2; i++) {
		TEST_ASSERT_EQ(kemari_freeze_vm(vm), 0);
		peer_wait_stopped(&p[0]);
		peer_wait_stopped(&p[1]);
		assert_freeze(vm, KVM_KEMARI_FROZEN, i + 1, 2, 0);
		vcpu_mp_state_get(vcpus[0], &mp);
		TEST_ASSERT_EQ(mp.mp_state, KVM_MP_STATE_HALTED);
		vcpu_mp_state_get(vcpus[1], &mp);
		TEST_ASSERT_EQ(mp.mp_state, KVM_MP_STATE_UNINITIALIZED);

		/* Re-entered while frozen: straight back, no blocking. */
		sem_post(&p[1].go);
		peer_wait_stopped(&p[1]);

		TEST_ASSERT_EQ(__vm_ioctl(vm, KVM_KEMARI_RESUME, NULL), 0);
		if (i)
			break;
		/* Both block again after the freeze; the next one ends it. */
		sem_post(&p[0].go);
		sem_post(&p[1].go);
		wait_blocking(sfd[0]);
		wait_blocking(sfd[1]);
	}

	for (i = 0; i < 2; i++) {
		WRITE_ONCE(p[i].quit, true);
		sem_post(&p[i].go);
		pthread_join(threads[i], NULL);
		close(sfd[i]);
	}
	kvm_vm_free(vm);
	return NULL;
}

/*
 * An irqfd signalled during a freeze: KVM takes the interrupt into the
 * IRR (no hidden state), counts it, and the guest handles it once after
 * RESUME.  Two KVM_GET_LAPIC in one quiescent freeze agree on IRR and ISR.
 */
#define IRQFD_GSI		20
#define IRQFD_VECTOR		0x81
#define LAPIC_ISR		0x100

#define TIMER_VECTOR		0x82

static uint64_t irqfd_handled, timer_handled;

static void irqfd_handler(struct ex_regs *regs)
{
	WRITE_ONCE(irqfd_handled, READ_ONCE(irqfd_handled) + 1);
	x2apic_write_reg(APIC_EOI, 0);
}

static void timer_handler(struct ex_regs *regs)
{
	WRITE_ONCE(timer_handled, READ_ONCE(timer_handled) + 1);
	x2apic_write_reg(APIC_EOI, 0);
}

static uint32_t *lapic_reg(struct kvm_lapic_state *l, uint32_t reg)
{
	return (uint32_t *)&l->regs[reg];
}

static void irqfd_guest(void)
{
	x2apic_enable();
	GUEST_SYNC(0);
	for (;;)
		asm volatile("sti; hlt; cli");
}

static bool lapic_bit(const struct kvm_lapic_state *l, uint32_t base, int v)
{
	return *(const uint32_t *)&l->regs[base + (v / 32) * 0x10] &
	       (1u << (v % 32));
}

static const char *test_freeze_irqfd(void)
{
	struct kvm_irqchip chip = { .chip_id = KVM_IRQCHIP_IOAPIC };
	struct kvm_lapic_state l1, l2;
	struct kvm_kemari_freeze st;
	struct kvm_irqfd irqfd = { .gsi = IRQFD_GSI };
	struct kvm_vcpu *vcpu;
	struct peer p = { 0 };
	pthread_t thread;
	struct kvm_vm *vm;
	uint64_t one = 1, before, *handled;
	struct ucall uc;
	int sfd;

	vm = vm_create(1);
	TEST_ASSERT_EQ(kemari_enable(vm, 0, KVM_KEMARI_ENABLE, 0, 0, 0), 0);
	vcpu = vm_vcpu_add(vm, 0, irqfd_guest);
	sfd = vcpu_get_stats_fd(vcpu);
	vm_install_exception_handler(vm, IRQFD_VECTOR, irqfd_handler);
	vm_install_exception_handler(vm, TIMER_VECTOR, timer_handler);
	vcpu_run(vcpu);
	TEST_ASSERT_EQ(get_ucall(vcpu, &uc), UCALL_SYNC);
	handled = addr_gva2hva(vm, (vm_vaddr_t)&irqfd_handled);

	/* IOAPIC pin 20: edge, fixed, physical, to APIC 0. */
	vm_ioctl(vm, KVM_GET_IRQCHIP, &chip);
	chip.chip.ioapic.redirtbl[IRQFD_GSI].bits = IRQFD_VECTOR;
	vm_ioctl(vm, KVM_SET_IRQCHIP, &chip);
	irqfd.fd = eventfd(0, 0);
	vm_ioctl(vm, KVM_IRQFD, &irqfd);

	p.vcpu = vcpu;
	sem_init(&p.go, 0, 0);
	sem_init(&p.done, 0, 0);
	pthread_create(&thread, NULL, peer_thread, &p);
	sem_post(&p.go);
	wait_blocking(sfd);

	/* Thawed: taken at once, and not counted. */
	TEST_ASSERT_EQ(write(irqfd.fd, &one, sizeof(one)), sizeof(one));
	for (int i = 0; i < 20000 && !READ_ONCE(*handled); i++)
		usleep(1000);
	TEST_ASSERT_EQ(READ_ONCE(*handled), 1);
	get_freeze(vm, &st);
	TEST_ASSERT_EQ(st.injections, 0);
	wait_blocking(sfd);

	TEST_ASSERT_EQ(kemari_freeze_vm(vm), 0);
	peer_wait_stopped(&p);
	get_freeze(vm, &st);
	before = st.injections;

	TEST_ASSERT_EQ(write(irqfd.fd, &one, sizeof(one)), sizeof(one));
	/* The irqfd injects from a workqueue: wait for it to be counted. */
	for (int i = 0; i < 5000 && st.injections == before; i++) {
		usleep(1000);
		get_freeze(vm, &st);
	}
	TEST_ASSERT_EQ(st.injections, before + 1);

	vcpu_ioctl(vcpu, KVM_GET_LAPIC, &l1);
	TEST_ASSERT(lapic_bit(&l1, APIC_IRR, IRQFD_VECTOR),
		    "vector %#x not in the IRR during the freeze", IRQFD_VECTOR);

	/*
	 * A LAPIC timer that expires while the vCPU is out of KVM_RUN: KVM
	 * keeps it pending, and KVM_GET_LAPIC must show it in the IRR.
	 */
	l2 = l1;
	*lapic_reg(&l2, APIC_LVTT) = TIMER_VECTOR;
	*lapic_reg(&l2, APIC_TDCR) = 0xb;
	*lapic_reg(&l2, APIC_TMICT) = 1000;
	vcpu_ioctl(vcpu, KVM_SET_LAPIC, &l2);
	usleep(20 * 1000);
	vcpu_ioctl(vcpu, KVM_GET_LAPIC, &l1);
	TEST_ASSERT(lapic_bit(&l1, APIC_IRR, TIMER_VECTOR),
		    "an expired LAPIC timer is not in the IRR during the freeze");
	TEST_ASSERT(lapic_bit(&l1, APIC_IRR, IRQFD_VECTOR), "IRR lost a vector");
	get_freeze(vm, &st);
	TEST_ASSERT_EQ(st.injections, before + 2);
	vcpu_ioctl(vcpu, KVM_GET_LAPIC, &l2);
	TEST_ASSERT(!memcmp(&l1.regs[APIC_IRR], &l2.regs[APIC_IRR], 0x80) &&
		    !memcmp(&l1.regs[LAPIC_ISR], &l2.regs[LAPIC_ISR], 0x80),
		    "IRR or ISR changed within one quiescent freeze");
	TEST_ASSERT_EQ(READ_ONCE(*handled), 1);

	/* Resumed, the guest takes the interrupt once and halts again. */
	TEST_ASSERT_EQ(__vm_ioctl(vm, KVM_KEMARI_RESUME, NULL), 0);
	sem_post(&p.go);
	for (int i = 0; i < 20000 && READ_ONCE(*handled) < 2; i++)
		usleep(1000);
	wait_blocking(sfd);
	TEST_ASSERT_EQ(kemari_freeze_vm(vm), 0);
	peer_wait_stopped(&p);
	TEST_ASSERT_EQ(READ_ONCE(*handled), 2);
	/*
	 * The timer was handled.  The debug kernel once saw it twice: a
	 * one-shot timer restored with KVM_SET_LAPIC may fire again after
	 * the resume, so at least once; the injections counted while the VM
	 * was frozen are the exact check.
	 */
	TEST_ASSERT(READ_ONCE(*(uint64_t *)addr_gva2hva(vm, (vm_vaddr_t)&timer_handled)) >= 1,
		    "the LAPIC timer was not handled after the resume");
	get_freeze(vm, &st);
	TEST_ASSERT(st.injections >= before + 2, "injections went down");
	TEST_ASSERT_EQ(__vm_ioctl(vm, KVM_KEMARI_RESUME, NULL), 0);

	WRITE_ONCE(p.quit, true);
	sem_post(&p.go);
	pthread_join(thread, NULL);
	close(sfd);
	close(irqfd.fd);
	kvm_vm_free(vm);
	return NULL;
}

/*
 * Async page faults leave tokens in the guest that no checkpoint carries:
 * a Kemari VM refuses to enable them, the guest gets #GP, a host-initiated
 * write fails; writing 0 (off) works.  Other VMs are unaffected.
 */
static void async_pf_guest(void)
{
	GUEST_ASSERT_EQ(wrmsr_safe(MSR_KVM_ASYNC_PF_EN,
				   0x100000 | KVM_ASYNC_PF_ENABLED), GP_VECTOR);
	GUEST_ASSERT_EQ(wrmsr_safe(MSR_KVM_ASYNC_PF_EN, 0), 0);
	GUEST_DONE();
}

static const char *test_async_pf_refused(void)
{
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm;
	struct ucall uc;

	vm = vm_create(1);
	TEST_ASSERT_EQ(kemari_enable(vm, 0, KVM_KEMARI_ENABLE, 0, 0, 0), 0);
	vcpu = vm_vcpu_add(vm, 0, async_pf_guest);
	TEST_ASSERT_EQ(_vcpu_set_msr(vcpu, MSR_KVM_ASYNC_PF_EN,
				     0x100000 | KVM_ASYNC_PF_ENABLED), 0);
	TEST_ASSERT_EQ(_vcpu_set_msr(vcpu, MSR_KVM_ASYNC_PF_EN, 0), 1);
	vcpu_run(vcpu);
	TEST_ASSERT_KVM_EXIT_REASON(vcpu, KVM_EXIT_IO);
	if (get_ucall(vcpu, &uc) == UCALL_ABORT)
		REPORT_GUEST_ASSERT(uc);
	TEST_ASSERT_EQ(uc.cmd, UCALL_DONE);
	kvm_vm_free(vm);

	/* The control: without Kemari the same write is taken. */
	vm = vm_create(1);
	vcpu = vm_vcpu_add(vm, 0, async_pf_guest);
	TEST_ASSERT_EQ(_vcpu_set_msr(vcpu, MSR_KVM_ASYNC_PF_EN,
				     0x100000 | KVM_ASYNC_PF_ENABLED), 1);
	kvm_vm_free(vm);
	return NULL;
}

/*
 * The dirty quota is exact: each quota sync comes when the ring holds the
 * quota's worth of entries (one more push may land on the way out, such
 * as steal time), never later at the ring's soft limit, and the exit's
 * count is what the ring holds.
 */
#define QUOTA_SLOT		13
#define QUOTA_GPA		0x38000000ull
#define QUOTA_PAGES		2048
#define QUOTA			50

static void quota_guest(void)
{
	uint64_t i;

	for (;;)
		for (i = 0; i < QUOTA_PAGES; i++)
			WRITE_ONCE(*(uint64_t *)(QUOTA_GPA + i * 4096), i);
}

static const char *test_dirty_quota_exact(void)
{
	struct golden_region region = { QUOTA_SLOT, QUOTA_GPA,
					QUOTA_PAGES * 4096ull };
	struct golden_vcpu g = { 0 };
	struct kvm_kemari_exit *e;
	struct kvm_vm *vm;
	uint32_t n, slack;
	int round;

	/* One push on the way out; with Intel's PML, its whole buffer. */
	slack = host_cpu_is_intel ? 512 : 1;

	if (!kvm_has_cap(KVM_CAP_DIRTY_LOG_RING))
		return "no KVM_CAP_DIRTY_LOG_RING";

	vm = vm_create(1);
	vm_enable_dirty_ring(vm, 4096 * sizeof(struct kvm_dirty_gfn));
	TEST_ASSERT_EQ(kemari_enable(vm, 0, KVM_KEMARI_ENABLE, QUOTA, 0, 0), 0);
	vm_userspace_mem_region_add(vm, VM_MEM_SRC_ANONYMOUS, QUOTA_GPA,
				    QUOTA_SLOT, QUOTA_PAGES,
				    KVM_MEM_LOG_DIRTY_PAGES);
	virt_map(vm, QUOTA_GPA, QUOTA_GPA, QUOTA_PAGES);
	region.mem = addr_gpa2hva(vm, QUOTA_GPA);
	region.shadow = malloc(region.size);
	g.vcpu = vm_vcpu_add(vm, 0, quota_guest);
	g.ring = vcpu_map_dirty_ring(g.vcpu);

	for (round = 0; round < 100; round++) {
		vcpu_run(g.vcpu);
		TEST_ASSERT_KVM_EXIT_REASON(g.vcpu, KVM_EXIT_KEMARI_SYNC);
		e = &g.vcpu->run->kemari;
		TEST_ASSERT(e->reason == KVM_KEMARI_SYNC_DIRTY_QUOTA,
			    "round %d: reason %#x", round, e->reason);
		TEST_ASSERT(e->dirty_entries >= QUOTA &&
			    e->dirty_entries <= QUOTA + slack,
			    "round %d: quota sync at %u entries, quota %u",
			    round, e->dirty_entries, QUOTA);
		n = golden_harvest(&g, 4096, &region, 1);
		TEST_ASSERT(n == e->dirty_entries, "round %d: harvested %u, exit said %u",
			    round, n, e->dirty_entries);
		TEST_ASSERT_EQ(kvm_vm_reset_dirty_ring(vm), n);
		TEST_ASSERT_EQ(__vm_ioctl(vm, KVM_KEMARI_RESUME, NULL), 0);
	}
	free(region.shadow);
	kvm_vm_free(vm);
	return NULL;
}

/*
 * Freeze stress: four vCPUs mix spinning, HLT (woken by their LAPIC
 * timer), userspace MMIO exits, doorbell writes (sync points) and dirty
 * quota stops, while the host alternates waiting for a kernel-initiated
 * freeze with starting one by KVM_KEMARI_FREEZE.  Every freeze must
 * complete within the watchdog's time (it names the vCPU that did not
 * stop), every vCPU reports the current generation, no vCPU's progress
 * counter moves between its exit and RESUME (also across a re-entry while
 * frozen), RESUME never needs a re-freeze, and GET_FREEZE agrees.
 */
#define STRESS_VCPUS		4
#define STRESS_SLOT		12
#define STRESS_GPA		0x30000000ull
#define STRESS_PAGES		256
#define STRESS_MMIO_GPA		(MMIO_GPA + 0x800)
#define STRESS_PORT		0xe4
#define STRESS_TIMER_VECTOR	0xec
#define STRESS_QUOTA		4
#define STRESS_RING		4096
#define STRESS_WATCHDOG_S	20
#define STRESS_SECONDS		40

enum stress_mode { STRESS_MIXED, STRESS_SPIN };

static uint64_t stress_progress[STRESS_VCPUS];

static void stress_timer(struct ex_regs *regs)
{
	x2apic_write_reg(APIC_EOI, 0);
}

static void stress_guest(uint64_t id, uint64_t mode)
{
	uint64_t x = 0x9e3779b97f4a7c15ull * (id + 1), n;

	/*
	 * A periodic timer wakes HLT: a one-shot one that fires before the
	 * HLT (QEMU TCG delivers it at the HLT that follows STI, see
	 * tests/kemari.list) would leave the vCPU halted for good.
	 */
	x2apic_enable();
	x2apic_write_reg(APIC_TDCR, 0xb);	/* divide by 1 */
	x2apic_write_reg(APIC_LVTT, APIC_LVT_TIMER_PERIODIC | STRESS_TIMER_VECTOR);
	x2apic_write_reg(APIC_TMICT, 1000000);	/* 1 ms at 1 GHz */
	for (;;) {
		x = xorshift(x);
		switch (mode == STRESS_SPIN ? 15 : x % 16) {
		case 0:
			asm volatile("sti; hlt; cli");
			break;
		case 1:
			WRITE_ONCE(*(uint32_t *)STRESS_MMIO_GPA, (uint32_t)x);
			break;
		case 2:
			asm volatile("outb %b0, %w1" : : "a"(x), "d"(STRESS_PORT));
			break;
		case 3 ... 5:
			for (n = 0; n < 4; n++)
				WRITE_ONCE(*(uint64_t *)(STRESS_GPA +
					   ((x >> (16 + 8 * n)) % STRESS_PAGES) * 4096), x);
			break;
		default:
			for (n = 0; n < 100; n++)
				WRITE_ONCE(stress_progress[id],
					   READ_ONCE(stress_progress[id]) + 1);
		}
		WRITE_ONCE(stress_progress[id], READ_ONCE(stress_progress[id]) + 1);
	}
}

struct stress;

struct stress_vcpu {
	struct stress *s;
	struct kvm_vcpu *vcpu;
	pthread_t thread;
	sem_t go;
	bool stopped, quit, in_run;
	uint32_t generation, reason;
	uint64_t progress;	/* the guest's counter when KVM_RUN returned */
	uint32_t fetch;
	pid_t tid;
	int stats_fd;	/* opened before KVM_RUN: it waits for vcpu->mutex */
};

struct stress {
	struct kvm_vm *vm;
	struct stress_vcpu v[STRESS_VCPUS];
	sem_t event;
	uint64_t *progress;	/* host view of stress_progress[] */
	/* What the main thread does, for the hang monitor. */
	const char *phase;
	uint64_t round, beat;
	pid_t tid;
	pthread_t monitor;
	bool done;
};

static void stress_sigusr1(int sig)
{
}

static void *stress_thread(void *arg)
{
	struct stress_vcpu *t = arg;
	struct kvm_run *run = t->vcpu->run;
	struct ucall uc;
	int r;

	t->tid = syscall(SYS_gettid);
	for (;;) {
		WRITE_ONCE(t->in_run, true);
		r = __vcpu_run(t->vcpu);
		WRITE_ONCE(t->in_run, false);
		if (r < 0) {
			TEST_ASSERT(errno == EINTR || errno == EAGAIN,
				    "vCPU %u: KVM_RUN: %s", t->vcpu->id,
				    strerror(errno));
			continue;
		}
		switch (run->exit_reason) {
		case KVM_EXIT_MMIO:
			continue;
		case KVM_EXIT_KEMARI_SYNC:
			t->progress = READ_ONCE(t->s->progress[t->vcpu->id]);
			t->generation = run->kemari.generation;
			t->reason = run->kemari.reason;
			__atomic_store_n(&t->stopped, true, __ATOMIC_RELEASE);
			sem_post(&t->s->event);
			sem_wait(&t->go);
			if (READ_ONCE(t->quit))
				return NULL;
			continue;
		case KVM_EXIT_IO:
			if (get_ucall(t->vcpu, &uc) == UCALL_ABORT)
				REPORT_GUEST_ASSERT(uc);
			fallthrough;
		default:
			TEST_FAIL("vCPU %u: unexpected exit %u", t->vcpu->id,
				  run->exit_reason);
		}
	}
}

/*
 * Wait until every vCPU has reported the freeze.  Returns -1, or after
 * @secs the index of a vCPU that did not stop, having said which.
 */
static int stress_watchdog(struct stress *s, int secs)
{
	struct timespec ts;
	int i, late;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += secs;
	for (;;) {
		late = -1;
		for (i = STRESS_VCPUS - 1; i >= 0; i--)
			if (!__atomic_load_n(&s->v[i].stopped, __ATOMIC_ACQUIRE))
				late = i;
		if (late < 0)
			return -1;
		/* Each report posts once; a late one wakes this up. */
		if (sem_timedwait(&s->event, &ts) && errno == ETIMEDOUT)
			break;
	}
	ksft_print_msg("watchdog: vCPU %d did not stop within %d s (progress %lu)\n",
		       late, secs, READ_ONCE(s->progress[late]));
	usleep(100 * 1000);
	ksft_print_msg("watchdog: vCPU %d progress %lu 100 ms later\n", late,
		       READ_ONCE(s->progress[late]));
	return late;
}

/*
 * stress_watchdog() covers the vCPUs, not the main thread: a hang in an
 * ioctl, or of the whole L1 kernel, would end only at the boot's per-test
 * timeout, with nothing said.  This thread says where every thread is once
 * the main thread has not moved on for STRESS_HANG_S, and fails the test.
 * It sleeps on a timer itself: a CPU that lost its timer interrupt
 * (patches/qemu 0009) can stall it too, until the next IPI there.
 */
#define STRESS_HANG_S		90

static void stress_phase(struct stress *s, const char *phase)
{
	WRITE_ONCE(s->phase, phase);
	__atomic_add_fetch(&s->beat, 1, __ATOMIC_RELEASE);
}

/* Print the lines of @path that contain one of @keys (NULL-terminated). */
static void print_file_lines(const char *path, const char * const *keys)
{
	const char * const *k;
	char line[512];
	FILE *f = fopen(path, "r");

	if (!f)
		return;
	while (fgets(line, sizeof(line), f))
		for (k = keys; *k; k++)
			if (strstr(line, *k)) {
				ksft_print_msg("%s: %s", path, line);
				break;
			}
	fclose(f);
}

/*
 * Each CPU's timer interrupts and next timer event.  A CPU whose
 * expires_next is in the past and whose LOC count stands still has lost
 * its local APIC timer interrupt (see tests/kemari.list).
 */
static void print_cpu_timers(void)
{
	static const char * const irqs[] = { "LOC:", "RES:", "CAL:", NULL };
	static const char * const timers[] = { "now at", "cpu:", "expires_next", NULL };

	print_file_lines("/proc/interrupts", irqs);
	print_file_lines("/proc/timer_list", timers);
}

static void stress_hang_dump(struct stress *s)
{
	struct kvm_kemari_freeze st;
	int i, cpu, ncpus = sysconf(_SC_NPROCESSORS_ONLN);
	struct timespec mono;
	cpu_set_t set;

	clock_gettime(CLOCK_MONOTONIC, &mono);
	ksft_print_msg("hang: main thread in \"%s\" for %d s, round %lu (at %ld s)\n",
		       READ_ONCE(s->phase), STRESS_HANG_S, READ_ONCE(s->round),
		       (long)mono.tv_sec);
	/* First, before anything here sends an IPI. */
	print_cpu_timers();
	/* Then with this thread moved onto each CPU in turn: a wakeup there. */
	for (cpu = 0; cpu < CPU_SETSIZE && cpu < ncpus; cpu++) {
		CPU_ZERO(&set);
		CPU_SET(cpu, &set);
		if (sched_setaffinity(0, sizeof(set), &set))
			continue;
		ksft_print_msg("hang: the monitor now runs on CPU %d\n",
			       sched_getcpu());
		print_cpu_timers();
	}
	print_kvm_modules();
	print_task(s->tid);
	if (!__vm_ioctl(s->vm, KVM_KEMARI_GET_FREEZE, &st))
		ksft_print_msg("hang: freeze flags %#x generation %u stopped %u running %u\n",
			       st.flags, st.generation, st.stopped, st.running);
	for (cpu = 0; cpu < ncpus; cpu++) {
		char file[64];

		snprintf(file, sizeof(file), "per_cpu/cpu%d/trace", cpu);
		kemari_trace_print(file, 150);
	}
	for (i = 0; i < STRESS_VCPUS; i++) {
		ksft_print_msg("hang: vCPU %d: %s, %s, gen %u, reason %#x, progress %lu (%lu)\n",
			       i, READ_ONCE(s->v[i].in_run) ? "in KVM_RUN" :
			       "out of KVM_RUN",
			       READ_ONCE(s->v[i].stopped) ? "reported" :
			       "not reported",
			       READ_ONCE(s->v[i].generation),
			       READ_ONCE(s->v[i].reason),
			       READ_ONCE(s->progress[i]),
			       READ_ONCE(s->v[i].progress));
		print_task(s->v[i].tid);
		print_stat_deltas(i, s->v[i].stats_fd);
	}
}

static void *stress_monitor(void *arg)
{
	struct stress *s = arg;
	uint64_t beat = 0, b;
	int idle = 0;

	while (!READ_ONCE(s->done)) {
		b = __atomic_load_n(&s->beat, __ATOMIC_ACQUIRE);
		if (b != beat) {
			beat = b;
			idle = 0;
		} else if (++idle >= STRESS_HANG_S) {
			stress_hang_dump(s);
			/* test_assert() takes an EACCES left here for a skip. */
			errno = 0;
			TEST_FAIL("round %lu: the main thread hung in \"%s\"",
				  READ_ONCE(s->round), READ_ONCE(s->phase));
		}
		sleep(1);
	}
	return NULL;
}

static void stress_go(struct stress *s)
{
	int i;

	for (i = 0; i < STRESS_VCPUS; i++) {
		s->v[i].stopped = false;
		sem_post(&s->v[i].go);
	}
}

static void stress_create(struct stress *s, enum stress_mode mode)
{
	struct sigaction sa = { .sa_handler = stress_sigusr1 };
	struct kvm_vcpu *vcpus[STRESS_VCPUS];
	int i;

	memset(s, 0, sizeof(*s));
	s->vm = vm_create(STRESS_VCPUS);
	vm_enable_dirty_ring(s->vm, STRESS_RING * sizeof(struct kvm_dirty_gfn));
	TEST_ASSERT_EQ(kemari_enable(s->vm, 0, KVM_KEMARI_ENABLE, STRESS_QUOTA,
				     0, 0), 0);
	vm_userspace_mem_region_add(s->vm, VM_MEM_SRC_ANONYMOUS, STRESS_GPA,
				    STRESS_SLOT, STRESS_PAGES,
				    KVM_MEM_LOG_DIRTY_PAGES);
	virt_map(s->vm, STRESS_GPA, STRESS_GPA, STRESS_PAGES);
	virt_map(s->vm, MMIO_GPA, MMIO_GPA, 1);
	add_ioeventfd(s->vm, STRESS_PORT, 1, true, false);
	vm_install_exception_handler(s->vm, STRESS_TIMER_VECTOR, stress_timer);
	s->progress = addr_gva2hva(s->vm, (vm_vaddr_t)stress_progress);
	sigaction(SIGUSR1, &sa, NULL);
	sem_init(&s->event, 0, 0);
	for (i = 0; i < STRESS_VCPUS; i++) {
		vcpus[i] = vm_vcpu_add(s->vm, i, stress_guest);
		vcpu_args_set(vcpus[i], 2, i, mode);
		s->v[i] = (struct stress_vcpu) {
			.s = s,
			.vcpu = vcpus[i],
			.stats_fd = vcpu_get_stats_fd(vcpus[i]),
		};
		sem_init(&s->v[i].go, 0, 0);
	}
	for (i = 0; i < STRESS_VCPUS; i++)
		pthread_create(&s->v[i].thread, NULL, stress_thread, &s->v[i]);
	s->tid = syscall(SYS_gettid);
	stress_phase(s, "start");
	pthread_create(&s->monitor, NULL, stress_monitor, s);
}

/* Stop every vCPU once more, let the threads go, free the VM. */
static void stress_destroy(struct stress *s)
{
	int i;

	stress_phase(s, "the last FREEZE");
	kemari_freeze_vm(s->vm);
	TEST_ASSERT_EQ(stress_watchdog(s, STRESS_WATCHDOG_S), -1);
	for (i = 0; i < STRESS_VCPUS; i++)
		WRITE_ONCE(s->v[i].quit, true);
	stress_phase(s, "the vCPU threads' end");
	stress_go(s);
	for (i = 0; i < STRESS_VCPUS; i++)
		pthread_join(s->v[i].thread, NULL);
	WRITE_ONCE(s->done, true);
	pthread_join(s->monitor, NULL);
	for (i = 0; i < STRESS_VCPUS; i++)
		close(s->v[i].stats_fd);
	kvm_vm_free(s->vm);
}

static void stress_harvest(struct stress *s)
{
	struct kvm_dirty_gfn *ring, *e;
	int i;

	for (i = 0; i < STRESS_VCPUS; i++) {
		ring = vcpu_map_dirty_ring(s->v[i].vcpu);
		for (;;) {
			e = &ring[s->v[i].fetch % STRESS_RING];
			if (!(__atomic_load_n(&e->flags, __ATOMIC_ACQUIRE) &
			      KVM_DIRTY_GFN_F_DIRTY))
				break;
			__atomic_store_n(&e->flags, KVM_DIRTY_GFN_F_RESET,
					 __ATOMIC_RELEASE);
			s->v[i].fetch++;
		}
	}
	kvm_vm_reset_dirty_ring(s->vm);
}

/* Every vCPU reports generation @gen and has not moved since its exit. */
static void stress_check_cut(struct stress *s, uint32_t gen, uint64_t round)
{
	int i;

	assert_freeze(s->vm, KVM_KEMARI_FROZEN, gen, STRESS_VCPUS, 0);
	for (i = 0; i < STRESS_VCPUS; i++) {
		TEST_ASSERT(s->v[i].generation == gen,
			    "round %lu: vCPU %d reported generation %u, want %u",
			    round, i, s->v[i].generation, gen);
		TEST_ASSERT(READ_ONCE(s->progress[i]) == s->v[i].progress,
			    "round %lu: vCPU %d ran guest code while frozen (%lu -> %lu)",
			    round, i, s->v[i].progress, READ_ONCE(s->progress[i]));
	}
}

static const char *test_freeze_stress(void)
{
	uint64_t round, user = 0, joined = 0, reasons[4] = { 0 }, refreezes = 0;
	uint64_t start = time(NULL), max_rounds = 1000000;
	struct kvm_kemari_freeze st;
	struct stress s;
	uint32_t gen = 0;
	int i, r, bit;

	if (!kvm_has_cap(KVM_CAP_DIRTY_LOG_RING))
		return "no KVM_CAP_DIRTY_LOG_RING";

	stress_create(&s, STRESS_MIXED);
	kemari_trace(true, true);
	for (round = 0; round < max_rounds && time(NULL) - start < STRESS_SECONDS;
	     round++) {
		WRITE_ONCE(s.round, round);
		if (round & 1) {
			stress_phase(&s, "a sleep before FREEZE");
			usleep(xorshift(round) % 500);
			stress_phase(&s, "FREEZE");
			r = kemari_freeze_vm(s.vm);
			TEST_ASSERT(r == 0 || r == 1, "FREEZE: %d (%s)", r,
				    strerror(errno));
			user += !r;
			joined += r;
		}
		stress_phase(&s, "the wait for every vCPU's report");
		i = stress_watchdog(&s, STRESS_WATCHDOG_S);
		if (i >= 0) {
			get_freeze(s.vm, &st);
			ksft_print_msg("freeze: flags %#x generation %u stopped %u running %u\n",
				       st.flags, st.generation, st.stopped,
				       st.running);
			kemari_trace_dump();
		}
		TEST_ASSERT(i < 0, "round %lu: vCPU %d did not stop", round, i);
		stress_phase(&s, "the check of the cut");
		stress_check_cut(&s, ++gen, round);
		for (i = 0; i < STRESS_VCPUS; i++)
			for (bit = 0; bit < 4; bit++)
				reasons[bit] += !!(s.v[i].reason & (1u << bit));

		/* Now and then re-enter every vCPU: straight back, no progress. */
		if (!(round % 8)) {
			stress_phase(&s, "a re-entry while frozen");
			stress_go(&s);
			TEST_ASSERT_EQ(stress_watchdog(&s, STRESS_WATCHDOG_S), -1);
			for (i = 0; i < STRESS_VCPUS; i++)
				TEST_ASSERT(s.v[i].reason & KVM_KEMARI_SYNC_PEER,
					    "vCPU %d re-entered: reason %#x", i,
					    s.v[i].reason);
			stress_check_cut(&s, gen, round);
		}

		stress_phase(&s, "the harvest of the dirty rings");
		stress_harvest(&s);
		stress_phase(&s, "RESUME");
		TEST_ASSERT_EQ(__vm_ioctl(s.vm, KVM_KEMARI_RESUME, NULL), 0);
		stress_go(&s);
	}
	stress_phase(&s, "the final stats");
	kemari_trace(false, false);
	get_freeze(s.vm, &st);
	for (i = 0; i < STRESS_VCPUS; i++)
		refreezes += vcpu_stat(s.v[i].vcpu, "kemari_refreezes");
	stress_destroy(&s);

	ksft_print_msg("freeze stress: %lu freezes in %lu s (%lu by KVM_KEMARI_FREEZE, %lu joined one under way); reports: %lu io_bus %lu coalesced %lu peer %lu dirty_quota; %lu injections while frozen; %lu re-freezes\n",
		       round, (uint64_t)time(NULL) - start, user, joined,
		       reasons[0], reasons[1], reasons[2], reasons[3],
		       (uint64_t)st.injections, refreezes);
	TEST_ASSERT(round >= 1000, "only %lu freezes", round);
	TEST_ASSERT(user && reasons[0] && reasons[3],
		    "the mix lacked a kind of freeze");
	/* RESUME waits for every vCPU, so a held write never meets one. */
	TEST_ASSERT_EQ(refreezes, 0);
	return NULL;
}

/*
 * The watchdog can fire: kvm.kemari_drop_kick leaves out one vCPU's kick,
 * as a lost kick would.  The watchdog names that vCPU, GET_FREEZE shows
 * it running, RESUME refuses with EBUSY, and a signal gets it out.
 */
#define DROP_KICK_PARAM		"/sys/module/kvm/parameters/kemari_drop_kick"

static void write_param(const char *path, int val)
{
	FILE *f = fopen(path, "w");

	TEST_ASSERT(f, "%s: %s", path, strerror(errno));
	fprintf(f, "%d\n", val);
	TEST_ASSERT(!fclose(f), "%s: %s", path, strerror(errno));
}

static const char *test_freeze_watchdog(void)
{
	struct kvm_kemari_freeze st;
	struct stress s;
	uint64_t p;
	int victim = 2, i;

	stress_create(&s, STRESS_SPIN);
	for (i = 0; i < STRESS_VCPUS; i++)
		while (!READ_ONCE(s.progress[i]))
			usleep(1000);

	write_param(DROP_KICK_PARAM, victim + 1);
	TEST_ASSERT_EQ(kemari_freeze_vm(s.vm), 0);
	TEST_ASSERT_EQ(stress_watchdog(&s, 10), victim);
	get_freeze(s.vm, &st);
	TEST_ASSERT(st.running == 1 && st.stopped == STRESS_VCPUS - 1,
		    "running %u stopped %u", st.running, st.stopped);
	assert_vm_ioctl_fails(s.vm, KVM_KEMARI_RESUME, NULL, EBUSY,
			      "RESUME with a vCPU still running");
	p = READ_ONCE(s.progress[victim]);
	usleep(100 * 1000);
	TEST_ASSERT(READ_ONCE(s.progress[victim]) != p,
		    "the un-kicked vCPU did not run on");

	/* A signal makes KVM_RUN return; re-entered, it reports the freeze. */
	pthread_kill(s.v[victim].thread, SIGUSR1);
	TEST_ASSERT_EQ(stress_watchdog(&s, STRESS_WATCHDOG_S), -1);
	assert_freeze(s.vm, KVM_KEMARI_FROZEN, 1, STRESS_VCPUS, 0);
	TEST_ASSERT_EQ(__vm_ioctl(s.vm, KVM_KEMARI_RESUME, NULL), 0);
	stress_go(&s);
	stress_destroy(&s);
	return NULL;
}

struct kemari_testcase {
	const char *name;
	/* Returns NULL if the case passed, or why it was skipped. */
	const char *(*fn)(void);
};

static const struct kemari_testcase testcases[] = {
	{ "check_extension", test_check_extension },
	{ "enable_and_run", test_enable_and_run },
	{ "bad_args", test_bad_args },
	{ "enable_twice", test_enable_twice },
	{ "enable_after_vcpu", test_enable_after_vcpu },
	{ "bad_args_after_vcpu", test_bad_args_after_vcpu },
	{ "protected_vm", test_protected_vm },
	{ "dirty_ring_reset_interruptible", test_dirty_ring_reset_interruptible },
	{ "sync_ioeventfd", test_sync_ioeventfd },
	{ "sync_datamatch_miss", test_sync_datamatch_miss },
	{ "sync_rep_outs", test_sync_rep_outs },
	{ "sync_rep_ins", test_sync_rep_ins },
	{ "sync_split_store", test_sync_split_store },
	{ "sync_irqchip", test_sync_irqchip },
	{ "sync_irqchip_exempt", test_sync_irqchip_exempt },
	{ "sync_off", test_sync_off },
	{ "sync_exactly_once", test_sync_exactly_once },
	{ "sync_restore", test_sync_restore },
	{ "sync_bad_pending", test_sync_bad_pending },
	{ "sync_peer_running", test_sync_peer_running },
	{ "sync_peer_halted", test_sync_peer_halted },
	{ "sync_coalesced", test_sync_coalesced },
	{ "sync_coalesced_exit", test_sync_coalesced_exit },
	{ "sync_coalesced_eintr", test_sync_coalesced_eintr },
	{ "dirty_quota_bad", test_dirty_quota_bad },
	{ "irqfd_resample_refused", test_irqfd_resample_refused },
	{ "xen_eventfd_refused", test_xen_eventfd_refused },
	{ "hv_eventfd_refused", test_hv_eventfd_refused },
	{ "dirty_quota_exact", test_dirty_quota_exact },
	{ "freeze_api", test_freeze_api },
	{ "freeze_halted_uninit", test_freeze_halted_uninit },
	{ "freeze_irqfd", test_freeze_irqfd },
	{ "freeze_watchdog", test_freeze_watchdog },
	{ "freeze_stress", test_freeze_stress },
	{ "async_pf_refused", test_async_pf_refused },
	{ "golden_io", test_golden_io },
	{ "golden_quota", test_golden_quota },
	{ "golden_ring_full", test_golden_ring_full },
	{ "golden_signal", test_golden_signal },
	{ "dirty_ring_garbage", test_dirty_ring_garbage },
	{ "kvm_writes", test_kvm_writes },
	{ "tsc_log", test_tsc_log },
	{ "tsc_log_off", test_tsc_log_off },
	{ "tsc_restore", test_tsc_restore },
	{ "tsc_restore_smp", test_tsc_restore_smp },
	{ "kvmclock_restore", test_kvmclock_restore },
	{ "tsc_log_nested_svm", test_tsc_log_nested_svm },
	{ "tsc_log_toggle_l2", test_tsc_log_toggle_l2 },
	{ "tsc_log_nested_vmx", test_tsc_log_nested_vmx },
};

/* Is case @name selected?  With no arguments, every case is. */
static bool selected(int argc, char *argv[], const char *name)
{
	int i;

	for (i = 1; i < argc; i++)
		if (!strcmp(argv[i], name))
			return true;
	return argc < 2;
}

/* Usage: kemari_test [case...]; with no case named, all of them run. */
int main(int argc, char *argv[])
{
	const char *skip;
	int i, n = 0;

	/* golden_signal alone is the control, and runs on any KVM. */
	if (argc != 2 || strcmp(argv[1], "golden_signal"))
		TEST_REQUIRE(kvm_has_cap(KVM_CAP_KEMARI));

	for (i = 0; i < ARRAY_SIZE(testcases); i++)
		n += selected(argc, argv, testcases[i].name);
	TEST_ASSERT(n == (argc < 2 ? ARRAY_SIZE(testcases) : argc - 1),
		    "unknown test case name");

	ksft_print_header();
	ksft_set_plan(n);

	for (i = 0; i < ARRAY_SIZE(testcases); i++) {
		if (!selected(argc, argv, testcases[i].name))
			continue;
		skip = testcases[i].fn();
		if (skip)
			ksft_test_result_skip("%s: %s\n", testcases[i].name, skip);
		else
			ksft_test_result_pass("%s\n", testcases[i].name);
	}

	ksft_finished();
}
