// SPDX-License-Identifier: GPL-2.0-only
/*
 * The replicator's guest payload: freestanding 64-bit code, entered by
 * every vCPU at _start with its id in RDI and its stack set by the VMM.
 *
 * Each vCPU rewrites pseudo-random pages of its own data area, checking
 * each page's checksum before it rewrites it; reads the TSC and checks
 * that it never goes back; and after every pages_per_record pages emits a
 * numbered output record and writes a sector of the block device, waiting
 * for the device model to complete each.  Everything it knows lives in
 * guest memory, so a checkpoint carries it to the secondary.
 */
#include "abi.h"

#define WORDS	(ABI_PAGE_SIZE / 8)

static inline void outl(uint16_t port, uint32_t val)
{
	asm volatile("outl %0, %1" : : "a"(val), "Nd"(port) : "memory");
}

static inline uint64_t rdtsc(void)
{
	uint32_t lo, hi;

	asm volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return ((uint64_t)hi << 32) | lo;
}

static inline void cpu_relax(void)
{
	asm volatile("pause" ::: "memory");
}

/* Ring the console doorbell for the line in the mailbox, and wait. */
static void console_flush(uint32_t id, struct vstate *st)
{
	struct dev_status *status = (void *)ABI_STATUS;
	struct mailbox *mb = (void *)ABI_MAILBOX(id);

	mb->con.seq = st->con_seq;
	outl(ABI_PORT_CONSOLE(id), (uint32_t)st->con_seq);
	while (__atomic_load_n(&status->con_done[id], __ATOMIC_ACQUIRE) <=
	       st->con_seq)
		cpu_relax();
	mb->con.len = 0;
	st->con_seq++;
}

static void console_puts(uint32_t id, struct vstate *st, const char *s)
{
	struct mailbox *mb = (void *)ABI_MAILBOX(id);

	for (; *s; s++) {
		if (*s != '\n')
			mb->con.text[mb->con.len++] = *s;
		if (*s == '\n' || mb->con.len == ABI_CONSOLE_LINE)
			console_flush(id, st);
	}
}

static void console_putu(uint32_t id, struct vstate *st, uint64_t v)
{
	char buf[24];
	int i = sizeof(buf) - 1;

	buf[i] = 0;
	do {
		buf[--i] = '0' + v % 10;
		v /= 10;
	} while (v);
	console_puts(id, st, &buf[i]);
}

static void tsc_check(struct vstate *st)
{
	uint64_t t = rdtsc();

	if (t < st->last_tsc)
		st->tsc_errors++;
	st->last_tsc = t;
}

static uint64_t *data_page(const struct guest_config *cfg, uint32_t id,
			   uint64_t n)
{
	return (uint64_t *)(ABI_DATA +
			    ((uint64_t)id * cfg->data_pages + n) * ABI_PAGE_SIZE);
}

/* The last word of a page is the sum of the others, plus the page's index. */
static void page_check(struct vstate *st, uint64_t *p, uint64_t n)
{
	uint64_t sum = n;
	unsigned int i;

	for (i = 0; i < WORDS - 1; i++)
		sum += p[i];
	st->checks++;
	if (sum != p[WORDS - 1])
		st->check_errors++;
}

static void page_fill(struct vstate *st, uint64_t *p, uint64_t n)
{
	uint64_t sum = n, seed = abi_rng(&st->rng);
	unsigned int i;

	for (i = 0; i < WORDS - 1; i++) {
		p[i] = abi_mix(seed + i);
		sum += p[i];
	}
	p[WORDS - 1] = sum;
}

static void emit_record(uint32_t id, struct vstate *st)
{
	struct dev_status *status = (void *)ABI_STATUS;
	struct mailbox *mb = (void *)ABI_MAILBOX(id);

	mb->rec.magic = ABI_RECORD_MAGIC;
	mb->rec.vcpu = id;
	mb->rec.seq = st->seq;
	mb->rec.tsc = st->last_tsc;
	mb->rec.checks = st->checks;
	mb->rec.check_errors = st->check_errors;
	mb->rec.tsc_errors = st->tsc_errors;
	outl(ABI_PORT_OUTPUT(id), (uint32_t)st->seq);
	while (__atomic_load_n(&status->emitted[id], __ATOMIC_ACQUIRE) <= st->seq)
		cpu_relax();
}

static void write_sector(uint32_t id, struct vstate *st)
{
	struct dev_status *status = (void *)ABI_STATUS;
	struct mailbox *mb = (void *)ABI_MAILBOX(id);
	uint64_t *table = (uint64_t *)ABI_SECTORS(id);
	uint64_t sector = abi_rng(&st->rng) % ABI_SECTORS_PER_VCPU;
	uint64_t *words = (uint64_t *)mb->blk.data;
	unsigned int i;

	mb->blk.sector = sector;
	mb->blk.seq = st->seq;
	for (i = 0; i < ABI_SECTOR_SIZE / 8; i++)
		words[i] = abi_sector_word(id, sector, st->seq, i);
	outl(ABI_PORT_BLOCK(id), (uint32_t)st->seq);
	while (__atomic_load_n(&status->blk_done[id], __ATOMIC_ACQUIRE) <= st->seq)
		cpu_relax();
	table[sector] = st->seq + 1;
}

void guest_main(uint32_t id);
void guest_main(uint32_t id)
{
	const struct guest_config *cfg = (void *)ABI_CONFIG;
	struct vstate *st = (void *)ABI_VSTATE(id);
	uint64_t n;
	uint32_t i;

	if (!st->initialised) {
		st->rng = cfg->seed ^ abi_mix(id + 1);
		for (n = 0; n < cfg->data_pages; n++)
			page_fill(st, data_page(cfg, id, n), n);
		st->last_tsc = rdtsc();
		st->initialised = 1;
	}

	while (st->seq < cfg->records) {
		for (i = 0; i < cfg->pages_per_record; i++) {
			n = abi_rng(&st->rng) % cfg->data_pages;
			page_check(st, data_page(cfg, id, n), n);
			page_fill(st, data_page(cfg, id, n), n);
			tsc_check(st);
		}
		emit_record(id, st);
		if (cfg->block_every && st->seq % cfg->block_every == 0)
			write_sector(id, st);
		st->seq++;
	}

	for (n = 0; n < cfg->data_pages; n++)
		page_check(st, data_page(cfg, id, n), n);
	tsc_check(st);
	console_puts(id, st, "guest: vcpu ");
	console_putu(id, st, id);
	console_puts(id, st, " done: ");
	console_putu(id, st, st->seq);
	console_puts(id, st, " records, ");
	console_putu(id, st, st->checks);
	console_puts(id, st, " page checks, ");
	console_putu(id, st, st->check_errors);
	console_puts(id, st, " check errors, ");
	console_putu(id, st, st->tsc_errors);
	console_puts(id, st, " tsc errors\n");
	for (;;)
		outl(ABI_PORT_DONE, id);
}

asm(".section .text.start, \"ax\"\n"
	".globl _start\n"
	"_start:\n"
	"	call guest_main\n"
	"1:	hlt\n"
	"	jmp 1b\n");
