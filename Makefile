# Kemari for KVM: fetch the pinned base, apply our series, build, boot
# under QEMU and test.  See README.md.  Every step is incremental.
#
#   make check     the whole chain and the test suite (what CI runs)
#   make demo      the whole chain, then the Kemari demo in the guest
#   make bench     the whole chain, then the benchmarks (bench/) in the guest
#
# KEMARI_VARIANT=debug selects the KASAN/lockdep kernel (configs/debug.config).

S := scripts

.PHONY: all deps fetch apply kernel selftests userspace qemu initramfs lint \
	check mutants fuzz demo bench soak soak-base test-kemari test-regression base-check series bisect \
	clean distclean

all: initramfs

deps:
	$(S)/deps.sh
fetch: deps
	$(S)/fetch.sh
apply: fetch
	$(S)/apply.sh
kernel: apply
	$(S)/build-kernel.sh
selftests: kernel
	$(S)/build-selftests.sh
userspace: kernel
	$(S)/build-userspace.sh
# QEMU: its Kemari mode goes into the kemari kernel's initramfs only, and
# the same binary (TCG) is the emulator every boot runs on (boot.sh).
qemu: deps
	$(S)/qemu-fetch.sh
	$(S)/qemu-apply.sh
	$(S)/build-qemu.sh
initramfs: selftests userspace qemu
	$(S)/mkinitramfs.sh

# checkpatch on the exported series, and the docs.
lint: fetch
	$(S)/qemu-fetch.sh
	$(S)/lint.sh

# Lint, then the Kemari tests and the upstream regression set, on the
# kemari kernel (KVM_WERROR) and on the debug kernel (KASAN, lockdep).
# KEMARI_CHECK_VARIANTS=kemari checks one variant only.
CHECK_VARIANTS := $(or $(KEMARI_CHECK_VARIANTS),kemari debug)

check: lint
	for v in $(CHECK_VARIANTS); do KEMARI_VARIANT=$$v $(MAKE) --no-print-directory initramfs || exit 1; done
	KEMARI_VARIANT=$(firstword $(CHECK_VARIANTS)) $(S)/check-mutants.sh
	KEMARI_VARIANT=$(firstword $(CHECK_VARIANTS)) $(S)/run-fuzz.sh
	$(S)/run-tests.sh check $(CHECK_VARIANTS)
demo: initramfs
	KEMARI_VERBOSE=1 $(S)/run-tests.sh demo
bench: initramfs
	KEMARI_VERBOSE=1 $(S)/run-tests.sh bench
	$(S)/plot-bench.sh
# Delete each check of the replicator's checkpoint parser in turn: a case
# of "kemari-ft-test checks" must fail each time (on the host, ~40 s).
mutants: userspace
	$(S)/check-mutants.sh
# The replicator's coverage-guided fuzzers, 60 s each in make check; here
# KEMARI_FUZZ_SECONDS each (default 900).
fuzz: userspace
	KEMARI_FUZZ_SECONDS=$(or $(KEMARI_FUZZ_SECONDS),900) $(S)/run-fuzz.sh
# Long runs, never part of make check: the golden cases and the freeze
# stress over and over on both kernels, single- and multi-threaded TCG
# (tests/soak.list, scripts/soak.sh).
soak: lint qemu
	$(S)/soak.sh
# The control for the golden flakes: golden_signal (no Kemari) on the
# unpatched base and on the kemari kernel (tests/soak-base.list).
soak-base: lint
	$(S)/deps.sh
	$(S)/fetch.sh
	KEMARI_VARIANT=kemari $(MAKE) --no-print-directory initramfs
	KEMARI_SOAK_VARIANTS="base kemari" KEMARI_SOAK_MODE=soak-base $(S)/soak.sh
test-kemari: initramfs
	$(S)/run-tests.sh kemari
test-regression: initramfs
	$(S)/run-tests.sh regression

# The regression set on the unpatched base (to re-derive tests/regression.list).
base-check: qemu
	$(S)/fetch.sh
	KEMARI_VARIANT=base $(S)/build-kernel.sh
	KEMARI_VARIANT=base $(S)/build-selftests.sh
	KEMARI_VARIANT=base $(S)/mkinitramfs.sh
	KEMARI_VARIANT=base $(S)/run-tests.sh regression

# The overlay plus patches/ as a git-am-able series against the base.
series: fetch
	$(S)/export-series.sh
# Build every prefix of the series.
bisect: fetch
	$(S)/bisect-build.sh

clean:
	rm -rf build/obj-* build/out-* build/stage build/series build/bisect
distclean:
	rm -rf build
