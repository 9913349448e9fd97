#!/bin/sh
# Reproduce this hil run by hand: L0 boots L1 with exactly hil's command line; hil's
# agent in L1 then runs L2 with this command line (the requests are in repro-requests.jsonl):
#   /usr/bin/qemu-system-x86_64 -nodefaults -no-reboot -display none -machine microvm -accel kvm,kernel-irqchip=on -cpu host -smp 1 -m 64 -kernel /run/hil/payload/kernel -append 'ops=cpuid:4 hlt_timer_us=1000 race_timeout_us=20000 begin_wait_us=200000 dev_timeout_us=5000000' -chardev file,id=console,path=/run/hil/l2-serial.log -serial chardev:console
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
RUN=$(mktemp -d)
trap 'rm -rf "$RUN"' EXIT
cd "$RUN"
qemu-system-x86_64 -nodefaults -no-reboot -display none -machine q35,accel=tcg -cpu max -smp 2 -m 1024 -kernel /root/.cache/hil/kernel/6cd914dad79ff5159ce74dcd/vmlinuz -initrd /root/.cache/hil/l1-image/095aa36373449afa3d420819/initrd.cpio -append 'console=ttyS0 loglevel=5 panic=-1 printk.devkmsg=on' -chardev file,id=console,path=l1-console.log -serial chardev:console -device virtio-serial-pci,id=hilserial -chardev socket,id=agent,path=agent.sock,server=on,wait=off -device virtserialport,bus=hilserial.0,chardev=agent,name=hil.agent &
python3 "$HERE/repro-client.py" "$HERE/repro-requests.jsonl"
wait
echo "L1 console: $RUN/l1-console.log (removed on exit; copy it first if needed)"
