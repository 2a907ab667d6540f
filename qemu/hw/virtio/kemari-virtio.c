/*
 * Kemari for KVM: the output barrier at the virtqueue
 *
 * A Kemari VM stops before every doorbell (KVM_EXIT_KEMARI_SYNC), but a
 * virtio device model does not wait for one: once kicked it keeps
 * consuming its queue (virtio-net's TX bottom half or timer, virtio-blk's
 * loop) while notifications are off, and so sends out requests that the
 * guest made after the last checkpoint.  A secondary that takes over from
 * that checkpoint cannot reproduce them.
 *
 * While a secondary protects the guest, the barrier shows each device
 * only the requests that were in its avail ring when the secondary last
 * loaded a checkpoint: the avail index that the device reads is clamped
 * to the one of the guest's memory at that checkpoint.  A device that
 * finds more asks for a checkpoint; after the commit its queue is
 * notified, so that it goes on.  Requests below the clamp may go out
 * twice (once by the primary, again by a secondary that took over before
 * their completion was checkpointed), as after any Remus-style failover;
 * never one that the secondary does not hold.
 *
 * virtio-net's receive queues are exempt: what they consume is the
 * guest's input.  Packed virtqueues, vhost and iothreads (the barrier
 * runs with the BQL) are refused at start-up, as are NICs and drives of
 * other devices, whose output no barrier holds.
 *
 * Copyright (c) 2026 The Kemari for KVM authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qapi/error.h"
#include "qemu/bitmap.h"
#include "qemu/main-loop.h"
#include "sysemu/runstate.h"
#include "qom/object.h"
#include "hw/virtio/virtio.h"
#include "hw/virtio/virtio-access.h"
#include "hw/virtio/virtio-blk.h"
#include "hw/virtio/virtio-net.h"
#include "hw/virtio/kemari.h"
#include "standard-headers/linux/virtio_ring.h"
#include "net/net.h"
#include "net/vhost_net.h"
#include "sysemu/block-backend.h"
#include "trace.h"

/* What a device may consume: its queues' avail index at the checkpoint. */
typedef struct KemariVirtioDev {
    uint16_t limit[VIRTIO_QUEUE_MAX];
    DECLARE_BITMAP(held, VIRTIO_QUEUE_MAX);   /* met the limit */
    DECLARE_BITMAP(exempt, VIRTIO_QUEUE_MAX); /* virtio-net's receive */
} KemariVirtioDev;

static struct {
    bool armed;                 /* a secondary protects the guest */
    bool enforce;               /* hold, not only trace */
    bool requested;             /* a checkpoint was asked for */
    void (*request)(void *);
    void *opaque;
    GHashTable *devs;           /* VirtIODevice * -> KemariVirtioDev * */
    VMChangeStateEntry *vmstate;
    uint64_t held;              /* queues held, for the trace */
} kv;

/*
 * virtio-net's receive queues consume the guest's input: the even ones
 * below its control queue, the last.
 */
static bool kemari_virtio_exempt(VirtIODevice *vdev, unsigned int n)
{
    return object_dynamic_cast(OBJECT(vdev), TYPE_VIRTIO_NET) &&
           n % 2 == 0 && n + 1 < virtio_get_num_queues(vdev);
}

/* Queue @n of @vdev is exempt, or no longer (its queues renumbered). */
static void kemari_virtio_mark_exempt(KemariVirtioDev *d, VirtIODevice *vdev,
                                      unsigned int n)
{
    if (kemari_virtio_exempt(vdev, n)) {
        set_bit(n, d->exempt);
    } else {
        clear_bit(n, d->exempt);
    }
}

/*
 * A device met for the first time, plugged since the checkpoint: each
 * queue may go up to its last avail index, so that all it has is held
 * until the next checkpoint.
 */
static KemariVirtioDev *kemari_virtio_dev(VirtIODevice *vdev)
{
    KemariVirtioDev *d = g_hash_table_lookup(kv.devs, vdev);
    unsigned int n;

    if (!d) {
        d = g_new0(KemariVirtioDev, 1);
        for (n = 0; n < VIRTIO_QUEUE_MAX; n++) {
            d->limit[n] = virtio_queue_get_last_avail_idx(vdev, n);
            kemari_virtio_mark_exempt(d, vdev, n);
        }
        g_hash_table_insert(kv.devs, vdev, d);
    }
    return d;
}

/*
 * The guest's memory is what the secondary holds (the VM is stopped
 * since the checkpoint's RAM was taken): each queue may go up to its
 * avail index there.  A queue that the guest has not set up yet gets
 * its last avail index, 0: all it will get is held until the next.
 */
static int kemari_virtio_snapshot(Object *obj, void *opaque)
{
    VirtIODevice *vdev = (VirtIODevice *)object_dynamic_cast(obj,
                                                    TYPE_VIRTIO_DEVICE);
    KemariVirtioDev *d;
    unsigned int n;

    if (!vdev) {
        return 0;
    }
    d = kemari_virtio_dev(vdev);
    for (n = 0; n < VIRTIO_QUEUE_MAX; n++) {
        hwaddr avail = virtio_queue_get_avail_addr(vdev, n);

        if (!virtio_queue_get_num(vdev, n)) {
            continue;
        }
        d->limit[n] = avail && virtio_queue_get_desc_addr(vdev, n) ?
            virtio_lduw_phys(vdev, avail + offsetof(struct vring_avail, idx)) :
            virtio_queue_get_last_avail_idx(vdev, n);
        kemari_virtio_mark_exempt(d, vdev, n);
    }
    return 0;
}

typedef struct KemariVirtioQueue {
    VirtIODevice *vdev;
    unsigned int n;
} KemariVirtioQueue;

/*
 * After a commit or at the end of protection, in the main loop with the
 * VM running: held queues consume what they may now.  The queues are
 * taken off the table first, since a device's handler may add to it.
 */
static void kemari_virtio_notify_bh(void *opaque)
{
    g_autoptr(GArray) q = g_array_new(false, false,
                                      sizeof(KemariVirtioQueue));
    GHashTableIter it;
    gpointer key, value;
    unsigned int i;

    if (!runstate_is_running()) {
        /* kemari_virtio_vmstate() comes back once it runs. */
        return;
    }
    g_hash_table_iter_init(&it, kv.devs);
    while (g_hash_table_iter_next(&it, &key, &value)) {
        KemariVirtioDev *d = value;
        unsigned long n;

        for (n = find_first_bit(d->held, VIRTIO_QUEUE_MAX);
             n < VIRTIO_QUEUE_MAX;
             n = find_next_bit(d->held, VIRTIO_QUEUE_MAX, n + 1)) {
            KemariVirtioQueue e = { .vdev = key, .n = n };

            clear_bit(n, d->held);
            g_array_append_val(q, e);
        }
    }
    if (!kv.armed) {
        g_hash_table_remove_all(kv.devs);
    }
    if (!kv.enforce) {
        return;
    }
    for (i = 0; i < q->len; i++) {
        KemariVirtioQueue *e = &g_array_index(q, KemariVirtioQueue, i);

        virtio_queue_notify(e->vdev, e->n);
    }
}

/*
 * In the iohandler context, which no nested aio_poll() runs (a drain in
 * the next checkpoint's vm_stop() would otherwise let a device consume
 * while its state is saved).
 */
static void kemari_virtio_notify(void)
{
    aio_bh_schedule_oneshot(iohandler_get_aio_context(),
                            kemari_virtio_notify_bh, NULL);
}

static void kemari_virtio_vmstate(void *opaque, bool running,
                                  RunState state)
{
    if (running) {
        kemari_virtio_notify();
    }
}

uint16_t kemari_virtio_avail_idx(VirtIODevice *vdev, unsigned int n,
                                 uint16_t avail)
{
    KemariVirtioDev *d;
    uint16_t limit;

    if (!kv.armed) {
        return avail;
    }
    d = kemari_virtio_dev(vdev);
    if (test_bit(n, d->exempt)) {
        return avail;
    }
    limit = d->limit[n];
    if ((int16_t)(avail - limit) <= 0) {
        return avail;
    }
    if (!test_and_set_bit(n, d->held)) {
        kv.held++;
        trace_kemari_virtio_hold(vdev->name, n, avail, limit, kv.enforce,
                                 kv.held);
    }
    if (!kv.enforce) {
        return avail;
    }
    if (!kv.requested) {
        kv.requested = true;
        kv.request(kv.opaque);
    }
    return limit;
}

void kemari_virtio_unrealize(VirtIODevice *vdev)
{
    if (kv.devs) {
        g_hash_table_remove(kv.devs, vdev);
    }
}

/*
 * A reset queue starts again from 0 in a ring of its own: hold it all
 * until the next checkpoint, which has the new ring.
 */
void kemari_virtio_queue_reset(VirtIODevice *vdev, unsigned int n)
{
    KemariVirtioDev *d = kv.devs ? g_hash_table_lookup(kv.devs, vdev) : NULL;

    if (d) {
        d->limit[n] = 0;
    }
}

void kemari_virtio_hold(bool enforce, void (*request)(void *), void *opaque)
{
    if (!kv.devs) {
        kv.devs = g_hash_table_new_full(NULL, NULL, NULL, g_free);
        kv.vmstate = qemu_add_vm_change_state_handler(kemari_virtio_vmstate,
                                                      NULL);
    }
    kv.enforce = enforce;
    kv.request = request;
    kv.opaque = opaque;
    kv.requested = false;
    g_hash_table_remove_all(kv.devs);
    object_child_foreach_recursive(object_get_root(),
                                   kemari_virtio_snapshot, NULL);
    kv.armed = true;
}

void kemari_virtio_commit(void)
{
    if (!kv.armed) {
        return;
    }
    kv.requested = false;
    object_child_foreach_recursive(object_get_root(),
                                   kemari_virtio_snapshot, NULL);
    kemari_virtio_notify();
}

void kemari_virtio_release(void)
{
    if (!kv.armed) {
        return;
    }
    kv.armed = false;
    kemari_virtio_notify();
}

/*
 * A virtio device whose queues some other thread or process consumes;
 * the NICs of virtio-net devices are gathered in @opaque's list.
 */
typedef struct KemariVirtioCheck {
    Error **errp;
    GSList *virtio_nics;
} KemariVirtioCheck;

static int kemari_virtio_check_dev(Object *obj, void *opaque)
{
    KemariVirtioCheck *c = opaque;
    VirtIODevice *vdev = (VirtIODevice *)object_dynamic_cast(obj,
                                                    TYPE_VIRTIO_DEVICE);
    const char *type = object_get_typename(obj);
    VirtIONet *net;

    if (!vdev) {
        return 0;
    }
    if (g_str_has_prefix(type, "vhost-")) {
        error_setg(c->errp, "kemari=on: %s (%s) is served outside QEMU, "
                   "where the output barrier cannot hold its output",
                   vdev->name, type);
        return 1;
    }
    if (virtio_host_has_feature(vdev, VIRTIO_F_RING_PACKED)) {
        error_setg(c->errp, "kemari=on: %s offers packed virtqueues, which "
                   "the output barrier cannot hold: set packed=off",
                   vdev->name);
        return 1;
    }
    if (object_property_find(obj, "iothread") &&
        object_property_get_link(obj, "iothread", NULL)) {
        error_setg(c->errp, "kemari=on: %s runs in an iothread, outside the "
                   "output barrier: drop its iothread", vdev->name);
        return 1;
    }
    net = (VirtIONet *)object_dynamic_cast(obj, TYPE_VIRTIO_NET);
    if (net && net->nic) {
        NetClientState *peer = qemu_get_queue(net->nic)->peer;

        if (peer && (get_vhost_net(peer) ||
                     peer->info->type == NET_CLIENT_DRIVER_VHOST_USER ||
                     peer->info->type == NET_CLIENT_DRIVER_VHOST_VDPA)) {
            error_setg(c->errp, "kemari=on: %s uses vhost, which the output "
                       "barrier cannot hold: set vhost=off on its netdev",
                       vdev->name);
            return 1;
        }
        c->virtio_nics = g_slist_prepend(c->virtio_nics, net->nic);
    }
    return 0;
}

static void kemari_virtio_check_nic(NICState *nic, void *opaque)
{
    KemariVirtioCheck *c = opaque;
    NetClientState *nc = qemu_get_queue(nic);

    if (!*c->errp && !g_slist_find(c->virtio_nics, nic)) {
        error_setg(c->errp, "kemari=on: NIC %s (%s) sends without a "
                   "virtqueue, which the output barrier cannot hold: use "
                   "virtio-net", nc->name, nc->model);
    }
}

bool kemari_virtio_check(Error **errp)
{
    ERRP_GUARD();
    KemariVirtioCheck c = { .errp = errp };
    BlockBackend *blk;

    object_child_foreach_recursive(object_get_root(),
                                   kemari_virtio_check_dev, &c);
    if (!*errp) {
        qemu_foreach_nic(kemari_virtio_check_nic, &c);
    }
    g_slist_free(c.virtio_nics);
    if (*errp) {
        return false;
    }
    /* An empty drive (the default CD-ROM) or a read-only one sends nothing. */
    for (blk = blk_all_next(NULL); blk; blk = blk_all_next(blk)) {
        DeviceState *dev = blk_get_attached_dev(blk);

        if (dev && blk_is_inserted(blk) && blk_is_writable(blk) &&
            !object_dynamic_cast(OBJECT(dev), TYPE_VIRTIO_BLK)) {
            error_setg(errp, "kemari=on: drive %s is attached to %s, which "
                       "writes without a virtqueue that the output barrier "
                       "can hold: use virtio-blk",
                       *blk_name(blk) ? blk_name(blk) : "(no name)",
                       object_get_typename(OBJECT(dev)));
            return false;
        }
    }
    return true;
}
