#!/bin/bash
# Boot the built kernel and initramfs under QEMU (TCG, emulated AMD SVM with
# nested paging, so KVM runs inside) in mode $1; the serial console goes to
# $OUT/<mode>.log.  A hung guest is killed after KEMARI_BOOT_TIMEOUT seconds.
#
# TCG runs single-threaded by default: with thread=multi (Debian's QEMU
# 7.2, before patches/qemu 0007) nested SVM guests took spurious
# exceptions and triple faults (2 in 60 replicator failovers, the
# golden-test flake) and the whole test VM once reset silently; 100
# failovers in a row passed single-threaded, which was also faster.  Not
# measured again with 0007.  KEMARI_QEMU_ACCEL overrides it.
#
# The emulator (L0) is the QEMU that make qemu builds, with TCG and the
# fixes of patches/qemu 0007 (an event injected at VMRUN was delivered
# twice) and 0009 (VMRUN could lose another thread's interrupt request,
# an APIC timer's); Debian's qemu-system-x86_64 lacks them.
# KEMARI_L0_QEMU names another binary (its firmware in share/ beside it,
# or in ../share/qemu and ../share/seabios as Debian installs them).
# The log is written line by line, so that a long boot can be followed.
. "$(dirname "$0")/lib.sh"

mode=${1:?usage: boot.sh MODE}
logf=$OUT/$mode.log
log "booting $VARIANT kernel, mode $mode (log: $logf)"

l0=$(command -v "${KEMARI_L0_QEMU:-$QOUT/qemu-system-x86_64}") ||
	die "no emulator ${KEMARI_L0_QEMU:-$QOUT/qemu-system-x86_64}: ${KEMARI_L0_QEMU:+check KEMARI_L0_QEMU, or }run 'make qemu'"
log "emulator: $l0 ($("$l0" --version | head -1))"
bin=$(dirname "$l0")
fw=()
for d in "$bin/share" "$bin/../share/qemu" "$bin/../share/seabios"; do
	[ -d "$d" ] && fw+=(-L "$d")
done
rc=0
timeout -s KILL "${KEMARI_BOOT_TIMEOUT:-2400}" \
	"$l0" "${fw[@]}" -accel "${KEMARI_QEMU_ACCEL:-tcg,thread=single}" -cpu EPYC,+svm,+npt \
	-smp 2 -m 4096 -nographic -no-reboot -nodefaults -serial stdio \
	-kernel "$OUT/bzImage" -initrd "$OUT/initramfs.gz" \
	-append "console=ttyS0 panic=-1 quiet kemari_mode=$mode kemari_timeout=${KEMARI_TEST_TIMEOUT:-600}" \
	</dev/null 2>&1 | stdbuf -oL tr -d '\r' | tee "$logf" || rc=$?
[ "$rc" = 0 ] || log "qemu exited with status $rc"
