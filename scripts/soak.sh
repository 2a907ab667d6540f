#!/bin/bash
# make soak: boot tests/soak.list on each kernel variant (KEMARI_SOAK_VARIANTS,
# default "kemari debug") under each TCG threading mode (KEMARI_SOAK_ACCELS,
# default "single multi"), then report every boot and the counts per case.
. "$(dirname "$0")/lib.sh"

variants=${KEMARI_SOAK_VARIANTS:-kemari debug}
accels=${KEMARI_SOAK_ACCELS:-single multi}
mode=${KEMARI_SOAK_MODE:-soak}	# the list: tests/$mode.list
logs=()
for v in $variants; do
	if [ "$v" = base ]; then
		# The unpatched base, as "make base-check" builds it.
		KEMARI_VARIANT=base "$TOP/scripts/build-kernel.sh"
		KEMARI_VARIANT=base "$TOP/scripts/build-selftests.sh"
		KEMARI_VARIANT=base "$TOP/scripts/mkinitramfs.sh"
	else
		KEMARI_VARIANT=$v make -C "$TOP" --no-print-directory initramfs
	fi
	for a in $accels; do
		log "soak: $v kernel, tcg thread=$a, tests/$mode.list"
		KEMARI_VARIANT=$v KEMARI_QEMU_ACCEL=tcg,thread=$a \
			KEMARI_BOOT_TIMEOUT=${KEMARI_SOAK_TIMEOUT:-36000} \
			"$TOP/scripts/boot.sh" "$mode" >/dev/null
		cp "$BUILD/out-$v/$mode.log" "$BUILD/out-$v/$mode-$a.log"
		logs+=("$BUILD/out-$v/$mode-$a.log")
	done
done
"$TOP/scripts/soak-count.py" "${logs[@]}"
