/*
 * Kemari for KVM: event-driven replication of a running guest
 *
 * Copyright (c) 2026 The Kemari for KVM authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef SYSEMU_KEMARI_H
#define SYSEMU_KEMARI_H

/* kemari=on was given to -accel kvm and KVM accepted it. */
bool kvm_kemari_enabled(void);

/*
 * Protection, for the migration side (migration/kemari.c): @checkpoint is
 * called, in the main loop with the BQL, for every freeze that needs a
 * checkpoint; NULL ends protection.
 */
void kvm_kemari_set_checkpoint(void (*checkpoint)(void *), void *opaque);
/* A checkpoint starts: freeze the VM, before its vCPUs are stopped. */
int kvm_kemari_checkpoint_begin(void);
/* The secondary holds it: end the freeze before the vCPUs run again. */
int kvm_kemari_checkpoint_commit(void);

/* x-kemari-barrier (default on): hold virtio output between checkpoints. */
bool kvm_kemari_barrier(void);

/* What the accelerator has counted, for x-query-kemari. */
typedef struct KVMKemariCounts {
    uint64_t sync_exits;        /* KVM_EXIT_KEMARI_SYNC, all vCPUs */
    uint64_t freezes;           /* ended by KVM_KEMARI_RESUME */
    uint64_t checkpoints;       /* committed checkpoints */
    int64_t last_pause_ns;      /* the last freeze's pause */
    int64_t max_pause_ns;       /* the longest */
    bool protecting;            /* freezes end only at a checkpoint */
} KVMKemariCounts;

void kvm_kemari_counts(KVMKemariCounts *c);

#endif
