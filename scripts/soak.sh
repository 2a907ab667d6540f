#!/bin/bash
# make soak: boot tests/soak.list on each kernel variant (KEMARI_SOAK_VARIANTS,
# default "kemari debug") under each TCG threading mode (KEMARI_SOAK_ACCELS,
# default "single multi"), then report every boot and the counts per case.
. "$(dirname "$0")/lib.sh"

variants=${KEMARI_SOAK_VARIANTS:-kemari debug}
accels=${KEMARI_SOAK_ACCELS:-single multi}
logs=()
for v in $variants; do
	KEMARI_VARIANT=$v make -C "$TOP" --no-print-directory initramfs
	for a in $accels; do
		log "soak: $v kernel, tcg thread=$a"
		KEMARI_VARIANT=$v KEMARI_QEMU_ACCEL=tcg,thread=$a \
			KEMARI_BOOT_TIMEOUT=${KEMARI_SOAK_TIMEOUT:-36000} \
			"$TOP/scripts/boot.sh" soak >/dev/null
		cp "$BUILD/out-$v/soak.log" "$BUILD/out-$v/soak-$a.log"
		logs+=("$BUILD/out-$v/soak-$a.log")
	done
done
"$TOP/scripts/soak-count.py" "${logs[@]}"
