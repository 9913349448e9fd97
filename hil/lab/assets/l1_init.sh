#!/bin/busybox sh
# L1 init: mount what KVM tracing needs, load the modules, hand over to hil's agent.
# The console is ttyS0; the agent talks to L0 on the virtio-serial port "hil.agent" (found by
# the agent once the modules are loaded: hil/lab/agent/early.py).
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
load_vendor() {
    if grep -qw svm /proc/cpuinfo; then load_group svm
    elif grep -qw vmx /proc/cpuinfo; then load_group vmx
    else echo "hil-init: no svm/vmx in L1's CPU"; fi
}
# A booted L1's first L2 run (L0's request in fw_cfg: hil/lab/agent/early.py): its QEMU starts
# paused as soon as KVM is loaded, and the agent adopts it. The command line is one word per
# line, each word passed as one argument (nothing of it is evaluated by this shell).
start_boot_l2() {
    boot=/sys/firmware/qemu_fw_cfg/by_name/opt/hil/boot
    [ -r "$boot/argv/raw" ] || return 0
    mkdir -p /run/hil/payload /run/hil/l2 /run/hil/logs && chmod 0700 /run/hil
    for f in "$boot"/payload/*; do     # gzip'd: fw_cfg reads cost a port read per byte
        [ -r "$f/raw" ] && gunzip -c < "$f/raw" > "/run/hil/payload/${f##*/}"
    done
    set --
    while IFS= read -r word; do set -- "$@" "$word"; done < "$boot/argv/raw"
    "$@" < /dev/null > /run/hil/logs/l2-qemu.log 2>&1 &
    echo $! > /run/hil/l2/boot.pid
}
# A hand-run baseline (bench/) appends a cpio holding /baseline.sh: run it instead of the agent.
if [ -x /baseline.sh ]; then
    load_group common; load_group fwcfg; load_vendor; mark modules loaded; /baseline.sh; poweroff -f
fi
# The agent's Python starts while the modules load (under TCG each takes about a second) and
# the first L2's QEMU starts: it waits for this file, then finds its port and reports.
export HIL_MODULES_LOADED=/run/hil.modules-loaded
(load_group common; load_group fwcfg; load_vendor; start_boot_l2; mark modules loaded; : > "$HIL_MODULES_LOADED") &
export PYTHONPATH=/opt/hil/lib PYTHONDONTWRITEBYTECODE=1
exec /usr/bin/python3 -m hil.lab.agent serve virtio:hil.agent
