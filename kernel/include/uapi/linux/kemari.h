/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
#ifndef _UAPI_LINUX_KEMARI_H
#define _UAPI_LINUX_KEMARI_H

/*
 * Kemari: event-driven replication of KVM guests for fault tolerance.
 * See Documentation/virt/kvm/kemari.rst.
 *
 * The capability and exit reason numbers are taken from a private range
 * far above the numbers upstream has allocated (238 capabilities and 39
 * exit reasons in Linux 6.12), so that they cannot collide with numbers
 * upstream hands out later.  They would be renumbered to the next free
 * upstream values on submission.
 */

#include <linux/types.h>

#define KVM_CAP_KEMARI			0x4b4d0000

/* Reserved for the Kemari synchronisation exit. */
#define KVM_EXIT_KEMARI_SYNC		0x4b4d0000

/* KVM_ENABLE_CAP(KVM_CAP_KEMARI): flags in args[0]. */
#define KVM_KEMARI_ENABLE		(1ULL << 0)

#endif /* _UAPI_LINUX_KEMARI_H */
