"""Every place the model rests on something the research could not verify ([R] in
shared/research/slave-cpu-series.md), named once so it can be found and changed."""
from __future__ import annotations

ASSUMPTIONS: dict[str, str] = {
    "svm-prevent-run-exit": "On SVM the port closes the kick race like v2's prevent_run (v2/17, VMX "
                            "preemption timer = 0 -> exit 52) with a self-NMI held by GIF=0 until VMRUN: one "
                            "'nmi' exit (kernel_patches/dedicated-cpu 0003; measured by kick-race-v2, where "
                            "prevent-run NMIs equal the kicks that landed in the window).",
    "v1-timer-expiry": "slave-v1 leaves the LAPIC timer emulated by a host hrtimer on the slave while "
                       "external-interrupt exiting is off; the research calls this open (§4 timer row). "
                       "Modelled as 0..1 exits with the interrupt delivered.",
    "v1-smp-guests": "slave-v1 did not support SMP guests (cover letter, [R]); IPIs under v1 are answered "
                     "as v2 answers them.",
    "v1-direct-eoi-absent": "v1 has no direct EOI: every guest EOI traps (v2 adds 19/21) [C/R].",
    "msi-host-affinity": "Stock: an assigned device's MSI is taken on the pCPU running the vCPU (host IRQ "
                         "affinity); landing elsewhere adds a kick, hence 1..2 external-interrupt exits.",
    "direct-relay": "dedicated-direct: a device MSI reaches the guest IDT with no exit when KVM relays it "
                    "(the vCPU is in the guest on its isolated CPU) and that entry left INTR unintercepted "
                    "(the host's LAPIC timer was not armed on that CPU); measured by direct-msi-burst "
                    "(kernel_patches/dedicated-cpu-direct 0006, tracepoint kvm_dedicated_relay).",
    "direct-timer-expiry": "dedicated-direct does not pass the guest's LAPIC timer through: each expiry is "
                           "one exit, an external interrupt when KVM's hrtimer fires on the vCPU's CPU (that "
                           "entry intercepted INTR because the host timer was armed) or an NMI kick when "
                           "nohz_full let the hrtimer run on a housekeeping CPU; measured by direct-timer "
                           "(6 + 2 of 8). Modelled as 0..1 of each.",
    "pv-eoi-off": "PV-EOI is not used by the guest unless the event says pv_eoi=on (merge version [R]).",
    "ambient-host-interrupts": "Host interrupts (timer tick, IPIs) may hit the vCPU's pCPU at any time in "
                               "profiles without a dedicated CPU: 0..inf external-interrupt exits per window.",
}
