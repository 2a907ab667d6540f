// SPDX-License-Identifier: GPL-2.0-only
/*
 * kemari-demo: the smallest VMM that uses Kemari.
 *
 * It asks KVM what Kemari supports, shows that bad requests are refused,
 * enables Kemari on a VM, then runs a tiny real-mode guest that prints a
 * line on a serial port, and says in plain words what happened.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <linux/kvm.h>
#include <linux/kemari.h>

#define GUEST_MEM_SIZE	0x10000
#define GUEST_CODE_GPA	0x1000
#define SERIAL_PORT	0x3f8

/* Real mode: print the string that follows the code on SERIAL_PORT, halt. */
static const uint8_t guest_code[] = {
	0xbe, 0x11, 0x10,	/* mov si, 0x1011 (the message)	*/
	0xba, 0xf8, 0x03,	/* mov dx, 0x3f8			*/
	0xac,			/* 1: lodsb				*/
	0x84, 0xc0,		/* test al, al				*/
	0x74, 0x03,		/* jz 2f				*/
	0xee,			/* out dx, al				*/
	0xeb, 0xf8,		/* jmp 1b				*/
	0xf4,			/* 2: hlt				*/
	0x90, 0x90,		/* padding to 0x1011			*/
	'H', 'e', 'l', 'l', 'o', ' ', 'f', 'r', 'o', 'm', ' ', 'a', ' ',
	'K', 'e', 'm', 'a', 'r', 'i', ' ', 'g', 'u', 'e', 's', 't', '\n', 0,
};

struct demo {
	int kvm_fd;
	int vm_fd;
	int vcpu_fd;
	struct kvm_run *run;
	uint8_t *mem;
	char out[128];
	size_t out_len;
};

static void die(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fprintf(stderr, "kemari-demo: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
	exit(1);
}

static int kemari__enable(int vm_fd, uint64_t flags)
{
	struct kvm_enable_cap cap = {
		.cap = KVM_CAP_KEMARI,
		.args = { flags },
	};

	return ioctl(vm_fd, KVM_ENABLE_CAP, &cap) ? -errno : 0;
}

static void demo__expect_refusal(int vm_fd, uint64_t flags, int err,
				 const char *what)
{
	int r = kemari__enable(vm_fd, flags);

	if (r != -err)
		die("%s: expected %s, got %s", what, strerror(err),
		    r ? strerror(-r) : "success");
	printf("  %-46s -> refused: %s\n", what, strerror(err));
}

static void demo__create_vm(struct demo *d)
{
	struct kvm_userspace_memory_region region = {
		.slot = 0,
		.guest_phys_addr = 0,
		.memory_size = GUEST_MEM_SIZE,
	};

	d->vm_fd = ioctl(d->kvm_fd, KVM_CREATE_VM, 0);
	if (d->vm_fd < 0)
		die("KVM_CREATE_VM: %s", strerror(errno));

	d->mem = mmap(NULL, GUEST_MEM_SIZE, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (d->mem == MAP_FAILED)
		die("mmap guest memory: %s", strerror(errno));
	memcpy(d->mem + GUEST_CODE_GPA, guest_code, sizeof(guest_code));

	region.userspace_addr = (uintptr_t)d->mem;
	if (ioctl(d->vm_fd, KVM_SET_USER_MEMORY_REGION, &region))
		die("KVM_SET_USER_MEMORY_REGION: %s", strerror(errno));
}

static void demo__create_vcpu(struct demo *d)
{
	struct kvm_sregs sregs;
	struct kvm_regs regs = {
		.rip = GUEST_CODE_GPA,
		.rflags = 0x2,
	};
	int size;

	d->vcpu_fd = ioctl(d->vm_fd, KVM_CREATE_VCPU, 0);
	if (d->vcpu_fd < 0)
		die("KVM_CREATE_VCPU: %s", strerror(errno));

	size = ioctl(d->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (size < (int)sizeof(*d->run))
		die("KVM_GET_VCPU_MMAP_SIZE: %s", strerror(errno));
	d->run = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED,
		      d->vcpu_fd, 0);
	if (d->run == MAP_FAILED)
		die("mmap kvm_run: %s", strerror(errno));

	if (ioctl(d->vcpu_fd, KVM_GET_SREGS, &sregs))
		die("KVM_GET_SREGS: %s", strerror(errno));
	sregs.cs.base = 0;
	sregs.cs.selector = 0;
	sregs.ds.base = 0;
	sregs.ds.selector = 0;
	if (ioctl(d->vcpu_fd, KVM_SET_SREGS, &sregs))
		die("KVM_SET_SREGS: %s", strerror(errno));
	if (ioctl(d->vcpu_fd, KVM_SET_REGS, &regs))
		die("KVM_SET_REGS: %s", strerror(errno));
}

static void demo__emulate_io(struct demo *d)
{
	struct kvm_run *run = d->run;
	uint8_t *data = (uint8_t *)run + run->io.data_offset;

	if (run->io.port != SERIAL_PORT || run->io.direction != KVM_EXIT_IO_OUT ||
	    run->io.size != 1)
		die("unexpected I/O: port %#x dir %u size %u", run->io.port,
		    run->io.direction, run->io.size);
	if (d->out_len + run->io.count < sizeof(d->out) - 1) {
		memcpy(d->out + d->out_len, data, run->io.count);
		d->out_len += run->io.count;
	}
}

/* The one exit switch: anything it does not know stops the demo loudly. */
static unsigned int demo__run(struct demo *d)
{
	unsigned int exits = 0;

	for (;;) {
		if (ioctl(d->vcpu_fd, KVM_RUN, 0)) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			die("KVM_RUN: %s", strerror(errno));
		}
		exits++;

		switch (d->run->exit_reason) {
		case KVM_EXIT_IO:
			demo__emulate_io(d);
			break;
		case KVM_EXIT_HLT:
			return exits;
		default:
			die("unexpected exit reason %u after %u exits",
			    d->run->exit_reason, exits);
		}
	}
}

int main(void)
{
	struct demo d = { 0 };
	unsigned int exits;
	int mask, busy_vm;

	d.kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (d.kvm_fd < 0)
		die("open /dev/kvm: %s", strerror(errno));

	mask = ioctl(d.kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_KEMARI);
	if (mask <= 0)
		die("this kernel has no Kemari (KVM_CAP_KEMARI = %d)", mask);
	printf("Kemari is supported; KVM_ENABLE_CAP accepts flags %#x.\n", mask);

	demo__create_vm(&d);
	printf("Created a VM with %d KiB of memory and a tiny guest.\n",
	       GUEST_MEM_SIZE / 1024);

	printf("Bad requests are refused and change nothing:\n");
	demo__expect_refusal(d.vm_fd, 0, EINVAL, "no KVM_KEMARI_ENABLE flag");
	demo__expect_refusal(d.vm_fd, KVM_KEMARI_ENABLE | (1ULL << 63), EINVAL,
			     "an unknown flag (bit 63)");

	if (kemari__enable(d.vm_fd, KVM_KEMARI_ENABLE))
		die("KVM_ENABLE_CAP(KVM_CAP_KEMARI): %s", strerror(errno));
	printf("Enabled Kemari on the VM, before creating its vCPU.\n");
	demo__expect_refusal(d.vm_fd,
			     KVM_KEMARI_ENABLE | KVM_KEMARI_EXEMPT_IRQCHIP,
			     EEXIST, "enabling it again with other flags");

	busy_vm = ioctl(d.kvm_fd, KVM_CREATE_VM, 0);
	if (busy_vm < 0 || ioctl(busy_vm, KVM_CREATE_VCPU, 0) < 0)
		die("second VM: %s", strerror(errno));
	demo__expect_refusal(busy_vm, KVM_KEMARI_ENABLE, EBUSY,
			     "enabling it on a VM that already has a vCPU");
	close(busy_vm);

	demo__create_vcpu(&d);
	printf("Running the guest under Kemari...\n");
	exits = demo__run(&d);
	printf("The guest halted after %u exits and wrote %zu bytes to the serial port:\n",
	       exits, d.out_len);
	printf("  | %.*s", (int)d.out_len, d.out);
	if (strcmp(d.out, (const char *)guest_code + 0x11))
		die("the guest's output is not what it was given to print");
	printf("Kemari demo done.\n");
	return 0;
}
