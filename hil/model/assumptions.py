"""Every premise the model rests on that no source in docs/model-sources.md settles, named once
and attached (semantics.py, race.py, profiles.py) to each answer that depends on it."""
from __future__ import annotations

ASSUMPTIONS: dict[str, str] = {
    "timer-may-expire-before-entry": "A one-shot timer armed with interrupts off may expire while the vCPU is "
                                     "still out for the TMICT write (a short timer, a slow host): that expiry "
                                     "then costs no exit of its own and waits for the interrupt window. "
                                     "Measured on the TCG lab under load (probe hlt op, dedicated-hlt).",
    # profiles
    "v1-composition": "slave-v1 is the v1 series as far as the seed (patches 1-14/18): the seed's NMI handler "
                      "acts on nothing (seed L99-113, 'no need to prevent run' at L107), and nothing routes "
                      "assigned MSIs to the slave or sends it TLB shootdowns by NMI (17/18, 18/18 not applied).",
    "v1-numbering": "slave-v1-full reads v1 15-18/18 as the research numbers them ([R]: 16/18 = v2/17 "
                    "prevent-run, 17/18 = v2/18 MSI routing, 18/18 = v2/21 TLB by NMI); no v1 patch but the "
                    "seed was available.",
    "one-vcpu-per-pcpu": "One vCPU per pCPU, pinned, in-kernel irqchip.",
    "slave-cpu-quiet": "No host interrupt reaches the slave CPU unless an event says so (host-irq, host-ipi, "
                       "timer under v1 model the ones that do).",
    # dedicated-cpu-direct (kernel_patches/dedicated-cpu-direct, issue 10)
    "direct-relay": "dedicated-direct: a device MSI reaches the guest IDT with no exit when KVM relays it "
                    "(the vCPU is in the guest on its isolated CPU) and that entry left INTR unintercepted "
                    "(the host's LAPIC timer was not armed on that CPU); one that meets the vCPU on its way "
                    "out is raised again at the next direct entry (0008), still with no exit of its own; "
                    "measured by direct-msi-burst and direct-vfio-edu (kernel_patches/dedicated-cpu-direct "
                    "0006, tracepoint kvm_dedicated_relay).",
    "no-stale-window": "dedicated-direct 0011: a direct entry closes an interrupt window (V_IRQ + VINTR "
                       "intercept) with nothing injectable, so the sti that opens a device op makes no vintr "
                       "exit: a window stays only for a virtual interrupt pending at that sti, and these ops "
                       "have none (the guest raises its MSIs after the sti; each is relayed, which the "
                       "verdict checks: relays == interrupts). Measured: direct-vfio-edu, 0001-0009: 1 vintr "
                       "exit at the dev-msi op's sti in 7 of 10 traced runs, none injecting anything.",
    "direct-retarget": "dedicated-direct: an assigned device's MSI (VFIO, KVM's irq bypass) for a direct vCPU "
                       "has its remapped IRTE pointed at the vCPU's CPU with the guest's vector "
                       "(kernel_patches/dedicated-cpu-direct 0010, tracepoint kvm_dedicated_retarget): L1's "
                       "intel-iommu (QEMU's, in this lab) delivers it there as a fixed interrupt, with no host "
                       "handler, eventfd or relay, and it reaches the guest IDT with no exit when that entry "
                       "left INTR unintercepted (the host's LAPIC timer was not armed on that CPU); one that "
                       "arrives in root mode is raised again at the next direct entry (0008), still with no exit "
                       "of its own; measured by direct-vfio-edu.",
    "direct-eoi": "dedicated-direct: the x2APIC EOI MSR (0x80b) passes through while no virtual vector is in "
                  "service at the entry, and a trapped EOI ends the highest vector in service, physical or "
                  "virtual (kernel_patches/dedicated-cpu-direct 0006); measured by direct-msi-burst (0 EOI exits "
                  "for 16 relayed MSIs) and kick-race-direct.",
    "direct-timer": "dedicated-direct 0007 (K4): for each direct entry (the host's own LAPIC timer stopped on "
                    "the vCPU's CPU: isolated-cpu-quiet) KVM's hrtimer for the guest's one-shot x2APIC timer is "
                    "cancelled and the rest of its count loaded into the physical LAPIC timer with the guest's "
                    "vector; TMICT writes pass through, the expiry goes through the guest's IDT and its EOI "
                    "passes through (direct-eoi). Measured by direct-timer.",
    "direct-timer-host-request": "dedicated-direct 0007: a host request's exit (an nmi exit the series traced) "
                                 "takes the guest's timer back to KVM's hrtimer until the next direct entry; "
                                 "if it comes due in between it is injected virtually and its EOI traps: at "
                                 "most one msr exit per host request (measured: direct-timer, 61 expiries, 1 "
                                 "nmi exit, 1 trapped EOI in the timer's handler).",
    "direct-timer-expiry": "dedicated-direct keeps a TSC-deadline or xAPIC timer KVM's: each expiry is one exit, "
                           "an external interrupt when KVM's hrtimer fires on the vCPU's CPU (that entry "
                           "intercepted INTR because the host timer was armed) or an NMI kick when nohz_full let "
                           "the hrtimer run on a housekeeping CPU (measured before 0007 with the one-shot timer: "
                           "6 + 2 of 8). Modelled as 0..1 of each.",
    "isolated-cpu-quiet": "dedicated-direct: the vCPU's CPU does no host work while the window runs: "
                          "isolcpus=domain,managed_irq, nohz_full (no tick with one task), rcu_nocbs and "
                          "irqaffinity keep timers, callbacks and device IRQs off it, and KVM_SET_DEDICATED 3 "
                          "refuses a CPU without them (0006 svm_direct_allowed). No ambient external-interrupt "
                          "exit. A host request that does come (deferred host work, KVM's own requests such as "
                          "a kvmclock update) is an NMI exit, the event host-ipi, each traced "
                          "(kvm_dedicated_deferred, kvm_dedicated_nmi), and the verdict accounts for it from "
                          "the traces.",
    "host-work-by-nmi": "dedicated-direct: a reschedule or call-function IPI to the CPU while it runs the guest "
                        "is an NMI plus deferred work, re-raised in root mode at the exit (0005 ded_cpu_send_ipi): "
                        "one nmi exit.",
    "ambient-host-interrupts": "Host interrupts (timer tick, IPIs) may hit the vCPU's pCPU at any time in "
                               "profiles without a dedicated CPU: 0..inf external-interrupt exits per window.",
    # slave series
    "v1-timer-misdelivered": "v1 keeps the guest's LAPIC timer on a host hrtimer on the slave, whose LAPIC timer "
                             "interrupt (host vector 0xef) meets external-interrupt exiting off (seed L40-41) and "
                             "the slave loop's disabled interrupts (seed L129): it goes through the guest IDT, "
                             "kvm_timer_fn never runs, no injection; the physical ISR bit stays set (no 17/18 "
                             "physical ack in the seed). The guest sees vector 0xef, not its own timer.",
    "v1-smp-guests": "v1 did not support SMP guests (cover letter, [R]); IPIs under v1 are answered with v1's "
                     "kick.",
    "v1-direct-eoi-absent": "v1 has no direct EOI (v2 adds 19/21): the EOI of a directly delivered interrupt "
                            "traps.",
    "v2-direct-mode": "slave-v2's direct mode is on (no virtual interrupt or injected exception in service: "
                      "v2/14 turns it off in vmx_inject_irq/_nmi/vmx_queue_exception and on in apic_set_eoi); "
                      "the event's direct=off gives the other state.",
    "v2-lvtt-vector": "The guest's LVTT vector is 0xef (the host's LOCAL_TIMER_VECTOR) or 0: v2/20 refuses any "
                      "other on a slave (apic_reg_write -> -EINVAL, a #GP for an x2APIC write) and the timer is "
                      "never armed in hardware. hil's probe uses vector 0x40 (guest/probe.c TIMER_VECTOR): "
                      "under slave-v2 that is lvtt_vector=other.",
    "vcpu-resident": "The vCPU is resident on its slave in guest mode when the direct MSI arrives; bounced to "
                     "the online CPU, the slave idles with interrupts on and the host takes it (v2/13 remap "
                     "table) and injects it virtually.",
    "prevent-run-exit": "v2's prevent-run exit is VMX reason 52 only on CPUs with the preemption timer (v2/17: "
                        "'On processors that doesn't support preemption timer, VMRESUME will fail'); the port "
                        "uses a self-IPI there (0004, EXTERNAL_INTERRUPT), and on SVM a self-NMI held by GIF=0 "
                        "until VMRUN: one 'nmi' exit (0003; measured by kick-race-v2).",
    "misdelivery": "A host interrupt meeting external-interrupt exiting off is taken through the guest IDT at "
                   "the host's vector: no exit, the host's handler never runs, the physical ISR bit stays set "
                   "until the guest's EOI reaches the physical APIC (reproduced by the nested probe, "
                   "nested-svm-probe.md Q2).",
    "pv-eoi-refused": "The guest asked for PV-EOI but the profile refuses it (v2/14 kvm_lapic_enable_pv_eoi "
                      "returns 1 for a slave vCPU; v1's 3.5 base predates PV-EOI, v3.6-rc1 ae7a2a3f): the EOI "
                      "traps.",
    # stock and port
    "msi-host-affinity-2012": "3.6 legacy assignment: the host IRQ lands on any CPU and wakes the IRQ thread; "
                              "the thread's kick can follow the vCPU's re-entry, hence 1..2 external-interrupt "
                              "exits.",
    "msi-host-affinity": "Today (VFIO + irqfd, kvm_arch_set_irq_inatomic in hard-irq context): exactly one exit: "
                         "the MSI's own if it lands on the vCPU's pCPU (the kick from there sends no IPI), else "
                         "the kick's reschedule IPI.",
    "back-to-back-interrupts": "Interrupts may come back to back (a NIC's receive interrupts): one arriving "
                               "while the guest's handler for the previous runs with IF=0 waits for an "
                               "interrupt window, at most one window exit each (SVM VINTR, VMX "
                               "interrupt-window exiting; APICv/AVIC evaluate it at the iret).",
    "msi-port-kick": "The port: an MSI landing on the vCPU's pCPU exits as 'interrupt'; one landing elsewhere "
                     "kicks by NMI (0003 kvm_dedicated_kick in kvm_vcpu_kick): exactly one of the two.",
    "hv-timer": "Today's VMX backs the guest LAPIC timer with the VMX preemption timer (6.12 lapic.c "
                "kvm_can_use_hv_timer) unless the guest may MWAIT without exiting or the timer is posted "
                "(pi_inject_timer, off by default without nohz_full: 6.12 x86.c:9374); it counts in HLT (C1). "
                "The CPU (or L0) offers the preemption timer.",
    "halt-poll-miss": "The wake-up comes after halt polling gave up (halt_poll_ns): a wake-up found by polling "
                      "counts halt_successful_poll, not halt_wakeup.",
    "guest-if": "The guest has interrupts enabled when the interrupt arrives: no interrupt-window exit.",
    "edge-triggered": "Edge-triggered interrupts only (MSI, LAPIC timer, fixed IPIs): no IOAPIC EOI broadcast, "
                      "no EOI_INDUCED (45) under APICv, no unaccelerated EOI under AVIC.",
    "apicv-no-ipiv": "APICv without IPI virtualisation: the sender's ICR write exits (x2APIC MSR_WRITE, xAPIC "
                     "APIC_WRITE); the target gets a posted interrupt with no exit.",
    "avic-is-x2avic": "stock-svm-avic is x2AVIC (Zen 4, Linux >= 6.0): classic AVIC is inhibited in x2APIC mode "
                      "and every x2APIC access is an 'msr' exit.",
    "ipi-both-vcpus": "ipi sums the sender's and the target's exits into one prediction.",
    "userspace-exits-tracepoint": "userspace_exits is no KVM stat: the lab counts the kvm_userspace_exit "
                                  "tracepoint.",
    "signal-kick-process": "A signal reaches a running vCPU thread through kick_process's reschedule IPI, not "
                           "kvm_vcpu_kick: the port's NMI kick does not apply.",
    "ple-window": "The spin outlasts the pause-loop window (ple_window / pause_filter_count) exactly once.",
}
