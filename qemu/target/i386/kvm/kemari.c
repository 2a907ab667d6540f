/*
 * Kemari for KVM: x86 vCPU checks
 *
 * Copyright (c) 2026 The Kemari for KVM authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qemu/error-report.h"
#include "cpu.h"
#include "standard-headers/asm-x86/kvm_para.h"
#include "sysemu/kemari.h"
#include "kemari.h"

/*
 * KVM refuses async page faults on a Kemari VM: their tokens and
 * completions live where no checkpoint sees them (kemari.rst 4.4).  A
 * guest offered them would take a #GP when it enables them, so refuse
 * the CPU model instead.
 */
int kvm_kemari_arch_init_vcpu(CPUState *cs)
{
    X86CPU *cpu = X86_CPU(cs);
    uint32_t apf = (1U << KVM_FEATURE_ASYNC_PF) |
                   (1U << KVM_FEATURE_ASYNC_PF_INT);

    if (!kvm_kemari_enabled() || !cpu->expose_kvm) {
        return 0;
    }
    if (cpu->env.features[FEAT_KVM] & apf) {
        error_report("kemari=on: the guest must not be offered async page "
                     "faults, which KVM refuses on a Kemari VM; add "
                     "kvm-asyncpf=off,kvm-asyncpf-int=off to -cpu");
        return -ENOTSUP;
    }
    return 0;
}
