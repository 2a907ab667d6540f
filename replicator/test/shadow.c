// SPDX-License-Identifier: GPL-2.0-only
/*
 * What only KVM can check, checked before the acknowledgment (needs KVM).
 *
 *   shadow     checkpoints of a real VM applied to a replica with a shadow
 *              VM (ckpt.h): state that KVM refuses (a reserved CR4 bit,
 *              an XSAVE feature the host lacks, an MP state that does not
 *              exist, a PAT memory type that does not exist) is refused
 *              with its reason, the replica and the shadow keep the last
 *              good state, and a held write carried from one checkpoint
 *              to the next is taken each time
 *   handshake  the hosts must agree: a primary whose host has another
 *              CPUID, or whose guest runs at a TSC rate the secondary's
 *              KVM cannot give (or, without TSC scaling, would only
 *              approximate), is refused by the secondary; a secondary
 *              with another CPUID is refused by the primary, which then
 *              sends it nothing of the guest
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ckpt.h"
#include "kvm.h"
#include "replicator.h"
#include "test/ft.h"
#include "tls.h"
#include "util.h"
#include "wire.h"

#define SH_MEM		(256 * PAGE_SIZE)
#define SH_VCPUS	2
#define SH_SECTORS	(SH_VCPUS * ABI_SECTORS_PER_VCPU)

/* The state of a real VM, as a primary would send it. */
struct sh_state {
	struct vcpu_state vcpu[SH_VCPUS];
	struct irq_state irq;
	uint32_t tsc_khz;
};

static void sh__build(struct ck_buf *b, const struct sh_state *st,
		      uint64_t seq, bool full)
{
	struct ck_vm vm = {
		.seq = seq, .mem_size = SH_MEM, .nr_vcpus = SH_VCPUS,
		.full = full, .tsc_khz = st->tsc_khz,
	};
	unsigned int i;

	static const struct out_record no_out;
	static const struct ck_blk no_blk;
	static const uint8_t no_mem[1];
	static const uint64_t no_gfn[1];

	ck__reset(b);
	ck__add_vm(b, &vm);
	ck__add_pages(b, no_mem, no_gfn, 0);
	for (i = 0; i < SH_VCPUS; i++)
		ck__add_vcpu(b, i, &st->vcpu[i]);
	ck__add_irq(b, &st->irq);
	ck__add_dev(b, &no_blk, 0, &no_out, 0, 0);
	ck__add_end(b);
}

/* The shadow's vCPU i holds the replica's registers and control state. */
static bool sh__shadow_is(struct vm *shadow, const struct replica *r,
			  unsigned int i)
{
	struct vcpu_state s;

	if (vcpu__save(&shadow->vcpu[i], &s))
		return false;
	return !memcmp(&s.regs, &r->vcpu[i].regs, sizeof(s.regs)) &&
	       s.sregs.cr4 == r->vcpu[i].sregs.cr4 &&
	       s.mp_state.mp_state == r->vcpu[i].mp_state.mp_state &&
	       s.pending.write.count == r->vcpu[i].pending.write.count;
}

static void test_shadow_vm(void)
{
	static struct vm primary, shadow;
	struct vm_config cfg = { .mem_size = SH_MEM, .nr_vcpus = SH_VCPUS,
				 .ring_entries = 256 };
	struct ck_buf b = { 0 };
	struct sh_state good, bad;
	struct replica r;
	char path[PATH_MAX];
	const char *why;
	unsigned int i, k;
	bool ok;
	int fd, ret;
	static const char *const names[] = {
		"a reserved CR4 bit on vCPU 1",
		"an XSAVE feature the host lacks on vCPU 0",
		"MP state 42 on vCPU 1",
		"PAT memory type 2 on vCPU 0",
	};
	static const char *const reasons[] = {
		"KVM refused vCPU 1's state",
		"KVM refused vCPU 0's state",
		"KVM refused vCPU 1's state",
		"KVM refused vCPU 0's state",
	};

	snprintf(path, sizeof(path), "%s/shadow.img", dir);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || ftruncate(fd, SH_SECTORS * ABI_SECTOR_SIZE) ||
	    replica__init(&r, SH_MEM, SH_VCPUS, fd, SH_SECTORS))
		die("shadow set-up: %m");
	if (vm__create(&primary, &cfg, NULL))
		die("shadow: cannot create the primary's VM");
	for (i = 0; i < SH_VCPUS; i++)
		if (vcpu__save(&primary.vcpu[i], &good.vcpu[i]))
			die("shadow: cannot save vCPU %u", i);
	if (vm__save_irq(&primary, &good.irq))
		die("shadow: cannot save the irqchip");
	good.tsc_khz = primary.cfg.tsc_khz;
	cfg.tsc_khz = good.tsc_khz;
	if (vm__create(&shadow, &cfg, r.mem))
		die("shadow: cannot create the shadow VM");
	r.shadow = &shadow;
	r.tsc_khz = good.tsc_khz;

	/* A held write, carried by every checkpoint: the shadow takes it. */
	good.vcpu[1].pending.write = (struct kvm_kemari_write){
		.bus = KVM_KEMARI_BUS_PIO, .len = 1, .addr = 0x80, .count = 1,
	};
	sh__build(&b, &good, 1, true);
	ret = replica__apply(&r, b.p, b.len, 1, &why);
	sh__build(&b, &good, 2, false);
	if (!ret)
		ret = replica__apply(&r, b.p, b.len, 2, &why);
	tap(!ret && sh__shadow_is(&shadow, &r, 1),
	    "shadow: a real VM's full checkpoint and the next, each holding a write on vCPU 1, are taken by the shadow VM%s%s",
	    ret ? ": " : "", ret ? why : "");

	for (k = 0; k < ARRAY_SIZE(names); k++) {
		bad = good;
		switch (k) {
		case 0:
			bad.vcpu[1].sregs.cr4 |= 1ULL << 63;
			break;
		case 1:	/* XSTATE_BV, in the XSAVE header at byte 512 */
			((uint64_t *)bad.vcpu[0].xsave.region)[64] |= 1ULL << 62;
			break;
		case 2:
			bad.vcpu[1].mp_state.mp_state = 42;
			break;
		case 3:
			for (i = 0; i < NR_SAVED_MSRS; i++)
				if (bad.vcpu[0].msrs.entries[i].index == 0x277)
					bad.vcpu[0].msrs.entries[i].data =
						0x0202020202020202ULL;
			break;
		}
		/*
		 * Both vCPUs differ from the good state, whichever KVM
		 * refuses: the shadow must get the good state back on both.
		 */
		bad.vcpu[0].regs.rax = 0xbad;
		bad.vcpu[1].regs.rax = 0xbad;
		sh__build(&b, &bad, r.seq + 1, false);
		ret = replica__apply(&r, b.p, b.len, r.seq + 1, &why);
		ok = ret == -EBADMSG &&
		     !strncmp(why, reasons[k], strlen(reasons[k])) &&
		     r.vcpu[0].regs.rax != 0xbad &&
		     r.vcpu[1].regs.rax != 0xbad &&
		     sh__shadow_is(&shadow, &r, 0) &&
		     sh__shadow_is(&shadow, &r, 1);
		tap(ok, "shadow: %s is refused, \"%s\", and the replica and the shadow keep the last good state%s%s",
		    names[k], reasons[k], ok ? "" : "; got: ",
		    ok ? "" : ret ? why : "accepted");
	}
	good.vcpu[1].regs.rax = 0x600d;
	sh__build(&b, &good, r.seq + 1, false);
	ret = replica__apply(&r, b.p, b.len, r.seq + 1, &why);
	tap(!ret && sh__shadow_is(&shadow, &r, 1) &&
	    r.vcpu[1].regs.rax == 0x600d,
	    "shadow: the next good checkpoint is taken%s%s",
	    ret ? ": " : "", ret ? why : "");
	close(fd);
	free(b.p);
}

/* A TSC rate this host's KVM refuses to give a vCPU, or 0. */
static uint32_t sh__unattainable_tsc_khz(void)
{
	static const uint32_t rates[] = { 1, 0xffffffff };
	struct kvm_scratch k;
	uint32_t found = 0;
	unsigned int i;

	if (!kvm__scratch_open(&k))
		for (i = 0; !found && i < ARRAY_SIZE(rates); i++)
			if (ioctl(k.vcpu, KVM_SET_TSC_KHZ, rates[i]) < 0)
				found = rates[i];
	kvm__scratch_close(&k);
	return found;
}

void fake_hello(struct wire_hello *h, uint32_t role)
{
	bool control;

	*h = (struct wire_hello){
		.version = WIRE_VERSION, .role = role, .nr_vcpus = 2,
		.mem_size = 16 << 20, .timeout_ms = 1000,
		.tsc_khz = role == HELLO_PRIMARY ? kvm__host_tsc_khz(&control) : 0,
	};
	if (kvm__cpuid_digest(h->cpuid))
		die("handshake: cannot read the CPUID");
}

/*
 * A primary with the key whose hello says what this host cannot give:
 * the secondary must answer with a refusal that says why, and stop.
 */
static void refused_primary(const char *what, const struct wire_hello *hello,
			    const char *reason, int port)
{
	char sout[PATH_MAX], sblk[PATH_MAX], portstr[16];
	char *sec[] = { exe, "secondary", "--port", portstr, "--block", sblk,
			"--timeout", "1000", "--stats", "0", NULL };
	uint8_t *buf = NULL;
	struct wire_link l;
	struct tls_psk psk;
	struct msg_hdr h;
	char why[256];
	size_t cap = 0;
	int fd = -1, i, st;
	bool nak = false;
	pid_t pid;

	snprintf(portstr, sizeof(portstr), "%d", port);
	snprintf(sout, sizeof(sout), "%s/hello-%d.out", dir, port);
	snprintf(sblk, sizeof(sblk), "%s/hello-%d.img", dir, port);
	if (tls__load_psk(psk_file, &psk, why, sizeof(why)))
		die("%s", why);
	pid = spawn(sout, sec);
	for (i = 0; i < 100 && fd < 0; i++) {
		fd = wire__connect("127.0.0.1", port, 5000);
		if (fd < 0)
			usleep(50000);
	}
	wire__link_init(&l, fd);
	if (fd >= 0 && !tls__client(&l, &psk, 8000, why, sizeof(why)) &&
	    !wire__send(&l, MSG_HELLO, 0, hello, sizeof(*hello)) &&
	    !wire__recv(&l, &h, &buf, &cap, sizeof(why) - 1, 10000) &&
	    h.type == MSG_NAK) {
		memcpy(why, buf, h.len);
		why[h.len] = 0;
		nak = strstr(why, reason);
	}
	wire__link_close(&l);
	tls__forget(&psk);
	st = reap(pid, 30);
	tap(nak && exited(st, EXIT_REFUSED) && file_has(sout, reason),
	    "handshake: %s is refused by the secondary, saying \"%s\"",
	    what, reason);
	if (!nak)
		dump(sout);
	free(buf);
}

/*
 * A secondary with the key whose host has another CPUID: the primary
 * refuses it and sends it no checkpoint.
 */
static void refused_secondary(int port)
{
	char pout[PATH_MAX], pblk[PATH_MAX], portstr[16];
	char *pri[] = { exe, "primary", "--peer", "127.0.0.1", "--port",
			portstr, "--block", pblk, "--records", "3",
			"--stats", "0", NULL };
	const char *reason = "the secondary's host gives the guest another CPUID";
	int lfd, st, fst;
	pid_t fake;

	snprintf(portstr, sizeof(portstr), "%d", port);
	snprintf(pout, sizeof(pout), "%s/hello-%d.out", dir, port);
	snprintf(pblk, sizeof(pblk), "%s/hello-%d.img", dir, port);
	lfd = wire__listen("127.0.0.1", port);
	if (lfd < 0)
		die("handshake: cannot listen on %d", port);
	fake = fork();
	if (fake == 0) {
		struct wire_hello mine;
		uint8_t *buf = NULL;
		struct wire_link l;
		struct msg_hdr h;
		size_t cap = 0;

		fake_hello(&mine, HELLO_SECONDARY);
		mine.cpuid[7] ^= 0x40;
		if (fake_secondary(lfd, &mine, &l, &buf, &cap))
			_exit(2);
		/*
		 * A refusal with the reason, then the link's end: anything
		 * else is guest state, a failure.
		 */
		if (wire__recv(&l, &h, &buf, &cap, 1 << 26, 30000) ||
		    h.type != MSG_NAK || !memmem(buf, h.len, "CPUID", 5))
			_exit(1);
		_exit(wire__recv(&l, &h, &buf, &cap, 1 << 26, 30000) ? 0 : 1);
	}
	close(lfd);
	st = reap(spawn(pout, pri), 60);
	fst = reap(fake, 40);
	tap(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) &&
	    file_has(pout, reason) && exited(fst, 0),
	    "handshake: a secondary whose host has another CPUID is refused by the primary, saying \"%s\", and gets the refusal and no checkpoint",
	    reason);
	if (!file_has(pout, reason))
		dump(pout);
}

static void test_handshake(void)
{
	struct wire_hello hello;
	uint32_t khz = sh__unattainable_tsc_khz(), host;
	char reason[160];
	bool control;

	fake_hello(&hello, HELLO_PRIMARY);
	hello.cpuid[3] ^= 0x01;
	refused_primary("a primary whose host has another CPUID", &hello,
			"the primary's host gives the guest another CPUID",
			7850);
	refused_secondary(7854);
	host = kvm__host_tsc_khz(&control);
	if (!control && host > 0) {
		/* KVM would take it, always catching up: never exact. */
		fake_hello(&hello, HELLO_PRIMARY);
		hello.tsc_khz = host * 2;
		snprintf(reason, sizeof(reason),
			 "cannot give the guest its TSC rate of %u kHz: it has no TSC scaling",
			 host * 2);
		refused_primary("a guest TSC rate twice the host's, which KVM without TSC scaling would only approximate",
				&hello, reason, 7856);
	} else {
		tap_skip("handshake: a TSC rate KVM would only approximate",
			 control ? "this host has TSC scaling" : "no TSC rate");
	}
	if (!khz) {
		tap_skip("handshake: a TSC rate the secondary cannot give",
			 "this host's KVM gives a vCPU both 1 kHz and 4294967295 kHz");
		return;
	}
	fake_hello(&hello, HELLO_PRIMARY);
	hello.tsc_khz = khz;
	snprintf(reason, sizeof(reason),
		 "cannot give the guest its TSC rate of %u kHz", khz);
	refused_primary("a guest TSC rate this host's KVM cannot give", &hello,
			reason, 7852);
}

void test_shadow(void)
{
	test_shadow_vm();
	test_handshake();
}
