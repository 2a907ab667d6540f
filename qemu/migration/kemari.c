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
#include "block/block.h"
#include "hw/virtio/kemari.h"
#include "qapi/qapi-commands-migration.h"
#include "qemu/error-report.h"
#include "qemu/lockable.h"
#include "qemu/main-loop.h"
#include "qemu/timer.h"
#include "io/channel-socket.h"
#include "io/channel-tls.h"
#include "migration.h"
#include "migration/colo.h"
#include "migration/failover.h"
#include "qemu-file.h"
#include "ram.h"
#include "sysemu/kemari.h"
#include "sysemu/runstate.h"
#include "kemari.h"

/*
 * The primary's view of its secondary, in the COLO thread (and the main
 * loop, with the BQL, for the timer).
 */
static struct {
    QEMUTimer *ack_timer;   /* armed while a checkpoint is not yet loaded */
    bool gave_up;           /* the timer fired for this checkpoint */
    bool held;              /* the secondary is lost, the guest held */
    uint64_t acked;         /* checkpoints the secondary has loaded */
} kemari_link;

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

/*
 * The main loop, with the BQL: a checkpoint has gone unloaded for
 * x-kemari-ack-timeout.  Shut the link down as yank would, so that the
 * COLO thread's send or receive fails and the secondary counts as lost.
 */
static void kemari_ack_timeout(void *opaque)
{
    MigrationState *s = opaque;

    kemari_link.gave_up = true;
    error_report("kemari: checkpoint %" PRIu64 " not loaded by the secondary "
                 "within %u ms: giving up on it", kemari_link.acked + 1,
                 s->kemari_ack_timeout_ms);
    WITH_QEMU_LOCK_GUARD(&s->qemu_file_lock) {
        if (s->to_dst_file) {
            qemu_file_shutdown(s->to_dst_file);
        }
    }
    if (s->rp_state.from_dst_file) {
        qemu_file_shutdown(s->rp_state.from_dst_file);
    }
}

/*
 * A TCP link also gives up on data that the secondary's host does not
 * acknowledge (a host that lost its power sends no FIN) after the ack
 * timeout, in send() as in the kernel's retransmissions.
 */
static void kemari_link_user_timeout(MigrationState *s)
{
    QIOChannel *ioc = qemu_file_get_ioc(s->to_dst_file);
    QIOChannelSocket *sioc;
    unsigned int ms = s->kemari_ack_timeout_ms;

    if (object_dynamic_cast(OBJECT(ioc), TYPE_QIO_CHANNEL_TLS)) {
        ioc = QIO_CHANNEL_TLS(ioc)->master;
    }
    if (!ms || !object_dynamic_cast(OBJECT(ioc), TYPE_QIO_CHANNEL_SOCKET)) {
        return;
    }
    sioc = QIO_CHANNEL_SOCKET(ioc);
    if (sioc->localAddr.ss_family != AF_INET &&
        sioc->localAddr.ss_family != AF_INET6) {
        return;
    }
    if (setsockopt(sioc->fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &ms,
                   sizeof(ms)) < 0) {
        warn_report("kemari: cannot set the link's TCP user timeout: %s",
                    strerror(errno));
    }
}

/* colo_process_checkpoint(), with the BQL: protection starts. */
void kemari_colo_primary_start(MigrationState *s)
{
    if (migrate_kemari()) {
        /* The secondary has loaded the precopy. */
        kemari_link.held = false;
        timer_del(kemari_link.ack_timer);
        kemari_link_user_timeout(s);
        kvm_kemari_set_checkpoint(colo_checkpoint_notify, s);
        /* Stopped since the precopy ended: as the secondary has it. */
        kemari_virtio_hold(kvm_kemari_barrier(), colo_checkpoint_notify, s);
    }
}

/*
 * colo_process_checkpoint() before it waits for the end of the precopy's
 * load, and colo_do_checkpoint_transaction(), without the BQL: a
 * checkpoint starts.
 */
void kemari_colo_transaction_begin(MigrationState *s)
{
    if (!migrate_kemari()) {
        return;
    }
    if (!kemari_link.ack_timer) {
        kemari_link.ack_timer = timer_new_ms(QEMU_CLOCK_REALTIME,
                                             kemari_ack_timeout, s);
    }
    kemari_link.gave_up = false;
    if (s->kemari_ack_timeout_ms) {
        timer_mod(kemari_link.ack_timer,
                  qemu_clock_get_ms(QEMU_CLOCK_REALTIME) +
                  s->kemari_ack_timeout_ms);
    }
}

/*
 * colo_process_checkpoint(), without the BQL, when COLO's loop has
 * ended.  If the link failed (not a failover on request, not a cancel),
 * the secondary may be taking over from the last checkpoint it loaded,
 * so nothing of the guest's may go out: the VM is stopped (COLO has
 * stopped it unless the link failed before the checkpoint did) and its
 * freeze is not ended for x-kemari-grace, long enough for the
 * secondary's side to fence this host.  A primary still alive after
 * that goes on unprotected, by the failover that x-colo-lost-heartbeat
 * would start, and says so.  With x-kemari-grace 0 it waits for that
 * command.  The grace counts from the loss, on this host's monotonic
 * clock, as the reference replicator's --grace does.
 */
void kemari_colo_primary_lost(MigrationState *s)
{
    int64_t end;

    if (!migrate_kemari()) {
        return;
    }
    qemu_mutex_lock_iothread();
    if (kemari_link.ack_timer) {
        timer_del(kemari_link.ack_timer);
    }
    if (failover_get_state() != FAILOVER_STATUS_NONE ||
        s->state != MIGRATION_STATUS_COLO) {
        qemu_mutex_unlock_iothread();
        return;
    }
    /*
     * A link that failed before the checkpoint stopped the VM (COLO's
     * own timer asked for it, or the precopy's end): stop it now, so
     * that nothing more of the guest's goes out.
     */
    if (runstate_is_running()) {
        kvm_kemari_checkpoint_begin();
        vm_stop_force_state(RUN_STATE_COLO);
    }
    kemari_link.held = true;
    qemu_mutex_unlock_iothread();
    if (!s->kemari_grace_ms) {
        error_report("kemari: lost the secondary after checkpoint %" PRIu64
                     ": the guest is held until x-colo-lost-heartbeat",
                     kemari_link.acked);
        return;
    }
    error_report("kemari: lost the secondary after checkpoint %" PRIu64
                 ": the guest is held for %u ms, to be fenced",
                 kemari_link.acked, s->kemari_grace_ms);
    end = qemu_clock_get_ms(QEMU_CLOCK_REALTIME) + s->kemari_grace_ms;
    while (failover_get_state() == FAILOVER_STATUS_NONE &&
           s->state == MIGRATION_STATUS_COLO) {
        int64_t left = end - qemu_clock_get_ms(QEMU_CLOCK_REALTIME);

        if (left <= 0) {
            break;
        }
        g_usleep(MIN(left, 100) * 1000);
    }
    qemu_mutex_lock_iothread();
    if (failover_get_state() == FAILOVER_STATUS_NONE &&
        s->state == MIGRATION_STATUS_COLO) {
        error_report("kemari: not fenced within %u ms: the guest runs "
                     "UNPROTECTED from checkpoint %" PRIu64 " on",
                     s->kemari_grace_ms, kemari_link.acked);
        failover_request_active(NULL);
    }
    qemu_mutex_unlock_iothread();
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
        kemari_link.acked = 0;
        kemari_link.held = false;
        kvm_kemari_set_checkpoint(NULL, NULL);
        kemari_virtio_release();
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
    int ret;

    if (!migrate_kemari()) {
        return 0;
    }
    timer_del(kemari_link.ack_timer);
    if (kemari_link.gave_up) {
        /* Loaded too late: the link is shut down, the secondary lost. */
        return -ETIMEDOUT;
    }
    ret = kvm_kemari_checkpoint_commit();
    if (ret == 0) {
        kemari_link.acked++;
        /* Still stopped: the guest's memory is the checkpoint's. */
        kemari_virtio_commit();
    }
    return ret;
}

/*
 * process_incoming_migration_co(), with the BQL, as COLO's incoming side
 * starts.  COLO's secondary writes to a replica of its own; a Kemari
 * secondary shares the primary's storage, so its drives stay inactive
 * (no format metadata cached that the primary's writes make stale, no
 * write permission asked for) until failover, where
 * process_incoming_migration_bh() activates them.
 */
void kemari_colo_incoming_activate(Error **errp)
{
    if (!kvm_kemari_enabled()) {
        bdrv_activate_all(errp);
    }
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

/* x-query-kemari, with the BQL. */
KemariInfo *qmp_x_query_kemari(Error **errp)
{
    KemariInfo *info = g_new0(KemariInfo, 1);
    bool colo = migrate_get_current()->state == MIGRATION_STATUS_COLO;
    KVMKemariCounts c;

    kvm_kemari_counts(&c);
    if (!kvm_kemari_enabled()) {
        info->status = KEMARI_STATUS_OFF;
    } else if (runstate_check(RUN_STATE_INMIGRATE) ||
               migration_incoming_in_colo_state()) {
        /* -incoming, loading the precopy or the checkpoints. */
        info->status = KEMARI_STATUS_SECONDARY;
    } else if (colo && kemari_link.held) {
        info->status = KEMARI_STATUS_HELD;
    } else if (colo && c.protecting) {
        info->status = KEMARI_STATUS_PROTECTED;
    } else {
        /*
         * No COLO, or COLO's thread ending protection after a failover,
         * or the precopy done and the secondary's load not yet.
         */
        info->status = KEMARI_STATUS_UNPROTECTED;
    }
    info->sync_exits = c.sync_exits;
    info->freezes = c.freezes;
    info->checkpoints = c.checkpoints;
    info->last_pause_us = c.last_pause_ns / 1000;
    info->longest_pause_us = c.max_pause_ns / 1000;
    info->ram_bytes = ram_counters.transferred;
    return info;
}
