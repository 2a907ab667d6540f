/*
 * Kemari for KVM: protection over COLO's checkpoint machinery
 *
 * Migration capability x-kemari protects a guest that runs with
 * -accel kvm,kemari=on.  It starts as a live migration to a secondary
 * QEMU started with -incoming, and the migration never ends: once the
 * precopy is done, COLO's checkpoint loop (colo.c) takes a checkpoint at
 * every Kemari freeze instead of on a network mismatch, and the primary's
 * vCPUs go on only once the secondary has loaded it.  The secondary is
 * passive: it loads every checkpoint into its stopped VM, which checks it
 * (KVM takes its vCPU state, pending writes included), and it runs the
 * guest only after failover (x-colo-lost-heartbeat).
 *
 * Copyright (c) 2026 The Kemari for KVM authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qapi/error.h"
#include "qemu/error-report.h"
#include "qemu/main-loop.h"
#include "migration.h"
#include "migration/colo.h"
#include "sysemu/kemari.h"
#include "sysemu/runstate.h"
#include "kemari.h"

bool migrate_kemari(void)
{
    MigrationState *s = migrate_get_current();

    return s->enabled_capabilities[MIGRATION_CAPABILITY_X_KEMARI];
}

/*
 * From migrate_caps_check().  x-kemari uses COLO's machinery with
 * Kemari's policy, so it replaces x-colo; and COLO's own policy would
 * let a Kemari VM's held writes out between its checkpoints.
 */
bool kemari_caps_check(bool *cap_list, Error **errp)
{
    if (cap_list[MIGRATION_CAPABILITY_X_KEMARI]) {
#ifndef CONFIG_REPLICATION
        error_setg(errp, "x-kemari needs COLO's machinery: QEMU was built "
                   "without replication");
        return false;
#endif
        if (!kvm_kemari_enabled()) {
            error_setg(errp, "x-kemari needs -accel kvm,kemari=on");
            return false;
        }
        if (cap_list[MIGRATION_CAPABILITY_X_COLO]) {
            error_setg(errp, "x-kemari replaces x-colo: set only one");
            return false;
        }
        if (cap_list[MIGRATION_CAPABILITY_POSTCOPY_RAM] ||
            cap_list[MIGRATION_CAPABILITY_MULTIFD] ||
            cap_list[MIGRATION_CAPABILITY_BACKGROUND_SNAPSHOT]) {
            error_setg(errp, "x-kemari does not work with postcopy-ram, "
                       "multifd or background-snapshot");
            return false;
        }
    } else if (cap_list[MIGRATION_CAPABILITY_X_COLO] && kvm_kemari_enabled()) {
        /*
         * Also on a secondary, which needs no x-colo: the capability would
         * outlive the incoming migration, and a later outgoing one would
         * be COLO with nothing to checkpoint the freezes.
         */
        error_setg(errp, "kemari=on: protect with x-kemari, not x-colo, "
                   "whose checkpoints would let held writes out");
        return false;
    }
    return true;
}

/* colo_process_checkpoint(), with the BQL: protection starts. */
void kemari_colo_primary_start(MigrationState *s)
{
    if (migrate_kemari()) {
        kvm_kemari_set_checkpoint(colo_checkpoint_notify, s);
    }
}

/*
 * colo_process_checkpoint(), once failover on the primary (or shutdown)
 * has ended COLO: the guest goes on unprotected.  Until then a primary
 * that lost its secondary holds its vCPUs, and so its output.
 */
void kemari_colo_primary_stop(void)
{
    if (migrate_kemari()) {
        qemu_mutex_lock_iothread();
        kvm_kemari_set_checkpoint(NULL, NULL);
        qemu_mutex_unlock_iothread();
    }
}

/* colo_do_checkpoint_transaction(), with the BQL, before vm_stop. */
void kemari_colo_freeze(void)
{
    if (migrate_kemari()) {
        /* On failure the stop's kicks still give a cut of whole exits. */
        kvm_kemari_checkpoint_begin();
    }
}

/*
 * colo_do_checkpoint_transaction(), with the BQL: the secondary has
 * loaded the checkpoint.  If the freeze cannot end, the vCPUs stay
 * stopped and COLO ends, as on a lost link.
 */
int kemari_colo_commit(void)
{
    return migrate_kemari() ? kvm_kemari_checkpoint_commit() : 0;
}

/*
 * The secondary, with the BQL: COLO runs its secondary in lock-step, a
 * Kemari secondary (kemari=on) never runs before failover, which starts
 * it through process_incoming_migration_bh().
 */
void kemari_colo_secondary_start(void)
{
    if (!kvm_kemari_enabled()) {
        vm_start();
    }
}
