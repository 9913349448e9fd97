#!/bin/busybox sh
# L1 init: mount what KVM tracing needs, load the modules, hand over to hil's agent.
# The console is ttyS0; the agent talks to L0 on the virtio-serial port "hil.agent".
export PATH=/bin:/usr/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tracefs tracefs /sys/kernel/tracing
mount -t debugfs debugfs /sys/kernel/debug
mount -t tmpfs -o mode=0755 tmpfs /run
mkdir -p /tmp && chmod 1777 /tmp
mark() { echo "<4>hil-init: $*" > /dev/kmsg; }   # kernel-timestamped progress on the console
mark start
load_group() {
    [ -f "/lib/modules/hil/order.$1" ] || return 0
    while read -r m; do
        case "$m" in kvm_amd|kvm_intel) opt="nested=1" ;; *) opt="" ;; esac
        insmod "/lib/modules/hil/$m.ko" $opt || echo "hil-init: insmod $m failed"
    done < "/lib/modules/hil/order.$1"
}
load_group common
if grep -qw svm /proc/cpuinfo; then load_group svm
elif grep -qw vmx /proc/cpuinfo; then load_group vmx
else echo "hil-init: no svm/vmx in L1's CPU"; fi
# A hand-run baseline (bench/) appends a cpio holding /baseline.sh: run it instead of the agent.
if [ -x /baseline.sh ]; then /baseline.sh; poweroff -f; fi
mark modules loaded
port=""
for n in /sys/class/virtio-ports/*/name; do
    [ "$(cat "$n" 2>/dev/null)" = hil.agent ] && port="/dev/$(basename "$(dirname "$n")")"
done
[ -n "$port" ] || { echo "hil-init: no virtio-serial port hil.agent, falling back to ttyS1"; port=/dev/ttyS1; }
export PYTHONPATH=/opt/hil/lib PYTHONDONTWRITEBYTECODE=1
exec /usr/bin/python3 -m hil.lab.agent serve "$port"
