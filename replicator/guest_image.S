/* SPDX-License-Identifier: GPL-2.0-only */
/* The guest payload (guest/guest.c, linked flat) inside the VMM binary. */
	.section .rodata
	.balign 16
	.globl guest_image
guest_image:
	.incbin GUEST_BIN
	.globl guest_image_end
guest_image_end:
	.section .note.GNU-stack, "", @progbits
