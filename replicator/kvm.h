/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The KVM side of the replicator: one VM with its memory, in-kernel
 * irqchip and PIT, vCPUs in 64-bit mode, Kemari with the dirty ring and
 * the TSC log, and the save and restore of every piece of state a
 * checkpoint carries.
 */
#ifndef REPLICATOR_KVM_H
#define REPLICATOR_KVM_H

#include <stdbool.h>
#include <stdint.h>
#include <linux/kvm.h>
#include <linux/kemari.h>

#include "guest/abi.h"

#define MAX_VCPUS	ABI_MAX_VCPUS
#define PAGE_SIZE	4096ULL
#define NR_SAVED_MSRS	11

/* Everything a checkpoint holds for one vCPU. */
struct vcpu_state {
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	struct kvm_xsave xsave;
	struct kvm_xcrs xcrs;
	struct kvm_lapic_state lapic;
	struct kvm_vcpu_events events;
	struct kvm_mp_state mp_state;
	struct kvm_debugregs debugregs;
	struct {
		struct kvm_msrs hdr;
		struct kvm_msr_entry entries[NR_SAVED_MSRS];
	} msrs;
	uint64_t tsc;			/* IA32_TSC, restored per kemari.rst 7 */
	uint64_t tsc_offset;		/* KVM_VCPU_TSC_OFFSET, likewise */
	struct kvm_kemari_tsc_log tsc_log;
	struct kvm_kemari_pending pending;
};

/* The in-kernel devices, and the VM's kvmclock (kemari.rst 7). */
struct irq_state {
	struct kvm_irqchip chip[3];	/* PIC master, PIC slave, IOAPIC */
	struct kvm_pit_state2 pit;
	struct kvm_clock_data clock;
};

struct vcpu {
	struct vm *vm;
	unsigned int id;
	int fd;
	struct kvm_run *run;
	struct kvm_dirty_gfn *ring;
	uint32_t ring_fetch;		/* next ring entry to harvest */
	struct kvm_kemari_tsc_log tsc_log;	/* of the latest sync exit */
};

struct vm_config {
	uint64_t mem_size;
	unsigned int nr_vcpus;
	uint32_t ring_entries;		/* dirty ring size, per vCPU */
	uint32_t dirty_quota;		/* 0: none */
	uint32_t tsc_khz;		/* 0: the host's */
	bool no_kemari;			/* bring-up on a kernel without it */
	bool harvest_bitmap;		/* KVM_GET/CLEAR_DIRTY_LOG, no ring */
	bool no_tsc_log;		/* leave KVM_KEMARI_TSC_LOG off */
};

struct vm {
	struct vm_config cfg;
	int kvm_fd;
	int fd;
	uint8_t *mem;
	int run_size;
	bool kemari;
	uint64_t *bitmap;		/* harvest_bitmap */
	uint8_t cpuid_digest[32];	/* kvm__cpuid_digest()'s, at creation */
	struct vcpu vcpu[MAX_VCPUS];
};

int kvm__open(void);
/*
 * The SHA-256 of the CPUID table vm__create() starts every vCPU's from:
 * this host's KVM_GET_SUPPORTED_CPUID with APIC id 0, before each vCPU
 * gets its own APIC id.  vm__create() keeps it in cpuid_digest; a peer
 * without a VM calls this.  A guest resumed on another host must see the
 * same, so the handshake compares them (wire.h).
 */
int kvm__cpuid_digest(uint8_t out[32]);
/*
 * A VM with one vCPU that never runs, to ask KVM about a vCPU: 0, or
 * -errno with the fds that were opened left in k for kvm__scratch_close().
 */
struct kvm_scratch {
	int kvm, vm, vcpu;
};

int kvm__scratch_open(struct kvm_scratch *k);
void kvm__scratch_close(struct kvm_scratch *k);
/* This host's TSC rate in kHz (0 if unknown), and whether KVM scales TSCs. */
uint32_t kvm__host_tsc_khz(bool *scaling);
/*
 * 0 if this host can give a vCPU khz: with TSC scaling KVM_SET_TSC_KHZ
 * decides; without, KVM takes a rate above the host's too (always catching
 * up, never exact), so it must be within 250 ppm of the host's own.
 * -ERANGE and the reason in why otherwise.
 */
int kvm__check_tsc_khz(uint32_t khz, char *why, size_t len);
/* mem: NULL to allocate zeroed memory, else the memory to run on. */
int vm__create(struct vm *vm, const struct vm_config *cfg, uint8_t *mem);
int vm__load_guest(struct vm *vm, const void *image, size_t size,
		   const struct guest_config *gc);
int vm__start_vcpus(struct vm *vm);
int vm__save_irq(struct vm *vm, struct irq_state *irq);
int vm__restore_irq(struct vm *vm, const struct irq_state *irq);

int vcpu__save(struct vcpu *vcpu, struct vcpu_state *s);
int vcpu__restore(struct vcpu *vcpu, const struct vcpu_state *s);
int vm__restore_tsc(struct vm *vm, const struct vcpu_state *s);
int vcpu__set_tsc(struct vcpu *vcpu, uint64_t tsc);
uint32_t vcpu__saved_msr(unsigned int i);

/* Harvest the dirty ring of every vCPU into gfns (at most max), reset. */
long vm__harvest(struct vm *vm, uint64_t *gfns, size_t max);
/* KVM_KEMARI_FREEZE: every vCPU leaves KVM_RUN with a sync exit. */
int vm__freeze(struct vm *vm);
int vm__resume(struct vm *vm);

#endif /* REPLICATOR_KVM_H */
