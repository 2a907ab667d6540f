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

#endif
