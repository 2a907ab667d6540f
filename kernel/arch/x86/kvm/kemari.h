/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Kemari: what x86 KVM calls of its own Kemari code (kemari.c), and the
 * one helper that xen.c exports to it.  The generic side is in
 * include/linux/kemari.h; see Documentation/virt/kvm/kemari.rst.
 */
#ifndef __ARCH_X86_KVM_KEMARI_H__
#define __ARCH_X86_KVM_KEMARI_H__

#include <linux/kvm_host.h>

#ifdef CONFIG_KVM_KEMARI
/* The emulator's stops, called from x86.c, emulate.c and vmx.c. */
bool kvm_kemari_stop_emulation(struct kvm_vcpu *vcpu);
unsigned int kvm_kemari_ins_read_ahead(struct kvm_vcpu *vcpu, unsigned int n);
bool kvm_kemari_retrying(struct kvm_vcpu *vcpu);
void kvm_kemari_emulate_begin(struct kvm_vcpu *vcpu, u64 addr, int type);
void kvm_kemari_emulate_end(struct kvm_vcpu *vcpu);

/* Lazy TSC logging, called from x86.c, cpuid.c, svm.c, vmx.c and nested.c. */
void kvm_kemari_tsc_read(struct kvm_vcpu *vcpu, u64 host_tsc);
void kvm_kemari_tsc_written(struct kvm_vcpu *vcpu);
int kvm_kemari_handle_rdtsc(struct kvm_vcpu *vcpu);
int kvm_kemari_handle_rdtscp(struct kvm_vcpu *vcpu);
int kvm_kemari_handle_rdtscp_vmx(struct kvm_vcpu *vcpu);
void kvm_kemari_tsc_reapply(struct kvm_vcpu *vcpu);

/* State that no checkpoint carries, kept away from a Kemari VM. */
bool kvm_kemari_refuse_async_pf(struct kvm_vcpu *vcpu, u64 data);
void kvm_kemari_lapic_sync(struct kvm_vcpu *vcpu);

/* Eventfds that Xen and Hyper-V hypercalls signal: xen.c and hyperv.c. */
bool kvm_kemari_refuse_xen_eventfd(struct kvm *kvm);
bool kvm_kemari_refuse_hv_eventfd(struct kvm *kvm);
#ifdef CONFIG_KVM_XEN
bool kvm_xen_evtchn_has_eventfd(struct kvm *kvm);
#endif
#else
static inline bool kvm_kemari_stop_emulation(struct kvm_vcpu *vcpu)
{
	return false;
}

static inline unsigned int kvm_kemari_ins_read_ahead(struct kvm_vcpu *vcpu,
						     unsigned int n)
{
	return n;
}

static inline bool kvm_kemari_retrying(struct kvm_vcpu *vcpu)
{
	return false;
}

static inline void kvm_kemari_emulate_begin(struct kvm_vcpu *vcpu, u64 addr,
					    int type)
{
}

static inline void kvm_kemari_emulate_end(struct kvm_vcpu *vcpu) {}

static inline void kvm_kemari_tsc_read(struct kvm_vcpu *vcpu, u64 host_tsc)
{
}

static inline void kvm_kemari_tsc_written(struct kvm_vcpu *vcpu) {}
static inline void kvm_kemari_tsc_reapply(struct kvm_vcpu *vcpu) {}

/* Without Kemari, KVM never intercepts RDTSC and RDTSCP only for #UD. */
#define kvm_kemari_handle_rdtsc		NULL
#define kvm_kemari_handle_rdtscp	kvm_handle_invalid_op
#define kvm_kemari_handle_rdtscp_vmx	NULL

static inline bool kvm_kemari_refuse_async_pf(struct kvm_vcpu *vcpu, u64 data)
{
	return false;
}

static inline void kvm_kemari_lapic_sync(struct kvm_vcpu *vcpu) {}

static inline bool kvm_kemari_refuse_xen_eventfd(struct kvm *kvm)
{
	return false;
}

static inline bool kvm_kemari_refuse_hv_eventfd(struct kvm *kvm)
{
	return false;
}
#endif /* CONFIG_KVM_KEMARI */

#endif /* __ARCH_X86_KVM_KEMARI_H__ */
