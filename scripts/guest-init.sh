#!/bin/sh
# /init of the test initramfs: load KVM, run the tests of the mode given
# on the kernel command line (kemari_mode=check|demo|...), power off.
# Each test is framed by KEMARI-TEST-BEGIN/END lines for report.py.
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null

# The replicator's tests talk TCP over the loopback interface.
ip link set lo up 2>/dev/null || ifconfig lo 127.0.0.1 up

mode=${kemari_mode:-check}
per_test_timeout=${kemari_timeout:-600}
echo "KEMARI-BOOT kernel=$(uname -r) mode=$mode cpus=$(nproc)"

if ! modprobe kvm_amd; then
	echo "KEMARI-ERROR modprobe kvm_amd failed"
elif [ ! -e /dev/kvm ]; then
	echo "KEMARI-ERROR /dev/kvm missing"
else
	echo "KEMARI-KVM npt=$(cat /sys/module/kvm_amd/parameters/npt) nested=$(cat /sys/module/kvm_amd/parameters/nested)"
	cd /tests
	# A line "*N name args" runs its test N times (tests/soak.list).
	while read -r name args; do
		case "$name" in ''|'#'*) continue ;; esac
		n=1
		case "$name" in '*'*)
			n=${name#\*}
			set -- $args
			name=$1
			shift
			args="$*"
			;;
		esac
		while [ "$n" -gt 0 ]; do
			echo "KEMARI-TEST-BEGIN $name $args"
			# shellcheck disable=SC2086
			timeout -s KILL "$per_test_timeout" "./$name" $args </dev/null 2>&1
			echo "KEMARI-TEST-END $name rc=$?"
			n=$((n - 1))
		done
	done < "/tests/$mode.list"
fi

echo "KEMARI-DONE"
poweroff -f
