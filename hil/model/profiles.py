"""Kernel profiles as declarative data: which exits are on, how kicks travel, what the
series changes. Semantics read these flags; nothing branches on a profile's name.
Sources per flag: docs/model-sources.md."""
from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    era: str = "modern"                 # "2012" (Linux 3.6 stat and reason names, no hv timer) | "modern"
    arches: tuple[str, ...] = ("svm", "vmx")
    hlt_exiting: bool = True
    mwait_exiting: bool = True          # off: MWAIT in guest, and (VMX) no preemption-timer-backed LAPIC timer
    pause_exiting: bool = True          # PAUSE-loop exiting (PLE / pause filter)
    cstate_exiting: bool = True         # VMX: core C-state residency MSR reads exit
    # on | off (v1: off for good) | toggled (v2: on while a virtual IRQ is in service) |
    # host-timer (dedicated-direct: on for an entry made while the host's LAPIC timer is armed there)
    ext_int_exiting: str = "on"
    kick: str = "ipi"                   # ipi | nmi-if-in-guest (v1) | nmi-unless-outside (v2)
    prevent_run: bool = False           # v2/17: a kick NMI landing during entry forces an immediate exit
    dedicated_cpu: bool = False         # the vCPU's pCPU is not a host CPU (slave): no host interrupts there
    # the vCPU's pCPU is a host CPU kept free of host work (isolcpus, nohz_full, irqaffinity;
    # host IPIs to it go by NMI): no ambient host interrupt, host requests are NMI exits
    host_isolated: bool = False
    direct_msi: bool = False            # assigned MSI retargeted to the guest vector on the dedicated CPU
    # dedicated-direct 0010: that retargeting is the remapped IRTE's (vector and destination
    # rewritten, no host handler); without it direct_msi is the software relay (0006)
    irte_retarget: bool = False
    direct_eoi_x2apic: bool = False     # v2/19: x2APIC EOI MSR not intercepted in direct mode
    timer_passthrough: bool = False     # v2/20: LAPIC timer mirrored to the slave's physical LAPIC
    # dedicated-direct 0011: an entry closes an interrupt window with nothing injectable (stock KVM
    # closes one only at its exit, even when the interrupt it waited for has gone)
    closes_stale_window: bool = False
    tlb_by_nmi: bool = False            # v1 18/18, v2 21/21
    bounce_to_online: bool = False      # exits needing process context run on the online CPU
    apicv: bool = False                 # VMX APICv / SVM AVIC: virtual interrupt delivery, EOI virtualised
    ipiv: bool = False                  # VMX IPI virtualisation (or AVIC's ICR acceleration): ICR writes do not exit
    posted_interrupts: bool = False     # VT-d PI / AVIC IOMMU for assigned devices
    pv_eoi: bool = True                 # KVM offers PV-EOI (used only if the event says pv_eoi=on)
    assumptions: tuple[str, ...] = ()   # named in assumptions.py; attached to every prediction


_STOCK_2012 = Profile("stock-2012", "Linux 3.6 (the v2 series' base, v3.6-rc4): VMX+EPT or SVM+NPT, in-kernel "
                      "irqchip, legacy device assignment, no APICv/AVIC, no hv timer, PV-EOI offered",
                      era="2012", arches=("vmx", "svm"))
_SEED = replace(_STOCK_2012, name="slave-v1", arches=("vmx",), description="The v1 series as far as the seed "
                "(1-14/18, VMX only): HLT and external-interrupt exiting off for good, NMI kick only when "
                "IN_GUEST_MODE, an NMI handler that acts on nothing (no prevent-run), no MSI routing to the "
                "slave (17/18), no TLB shootdown by NMI (18/18), no direct EOI, no PV-EOI",
                hlt_exiting=False, ext_int_exiting="off", kick="nmi-if-in-guest", dedicated_cpu=True,
                bounce_to_online=True, pv_eoi=False, assumptions=("v1-composition",))
_V1_FULL = replace(_SEED, name="slave-v1-full", description="All 18 v1 patches as the research numbers them: the "
                   "seed plus prevent-run (16/18), assigned MSIs routed to the slave (17/18) and TLB shootdowns "
                   "by NMI (18/18); still no direct EOI, no timer passthrough, external-interrupt exiting off "
                   "for good", prevent_run=True, direct_msi=True, tlb_by_nmi=True, assumptions=("v1-numbering",))
_V2 = replace(_SEED, name="slave-v2", description="The 21-patch series (VMX only): external-interrupt exiting "
              "toggled (off in direct mode, on while a virtual interrupt is in service), direct EOI for x2APIC "
              "guests, LAPIC timer passthrough, prevent-run closing the kick race, TLB shootdowns by NMI, bounces "
              "to the online CPU", ext_int_exiting="toggled", kick="nmi-unless-outside", prevent_run=True,
              direct_msi=True, direct_eoi_x2apic=True, timer_passthrough=True, tlb_by_nmi=True, assumptions=())
_STOCK = Profile("stock", "Today's KVM, no APIC virtualisation (as in the nested TCG lab: no AVIC)")
_DISABLE_ALL = replace(_STOCK, name="disable-exits", description="KVM_CAP_X86_DISABLE_EXITS with HLT, MWAIT, "
                       "PAUSE and CSTATE (QEMU -overcommit cpu-pm=on)", hlt_exiting=False, mwait_exiting=False,
                       pause_exiting=False, cstate_exiting=False)

PROFILES: dict[str, Profile] = {p.name: p for p in (
    _STOCK_2012,
    replace(_STOCK, name="stock-svm", description=_STOCK.description + "; SVM", arches=("svm",)),
    replace(_STOCK, name="stock-vmx", description=_STOCK.description + "; VMX", arches=("vmx",)),
    replace(_STOCK, name="stock-svm-avic", description="Today's KVM on SVM with AVIC (x2AVIC: Zen 4, Linux >= "
            "6.0) and AVIC IOMMU posting", arches=("svm",), apicv=True, ipiv=True, posted_interrupts=True),
    replace(_STOCK, name="stock-vmx-apicv", description="Today's KVM on VMX with APICv (virtual-interrupt delivery, "
            "posted interrupts, VT-d PI) but no IPI virtualisation (before Sapphire Rapids)", arches=("vmx",),
            apicv=True, posted_interrupts=True),
    replace(_STOCK, name="stock-vmx-ipiv", description="Today's KVM on VMX with APICv and IPI virtualisation "
            "(enable_ipiv, Sapphire Rapids and later)", arches=("vmx",), apicv=True, ipiv=True,
            posted_interrupts=True),
    _DISABLE_ALL,
    replace(_STOCK, name="dedicated-hlt", description="The dedicated-cpu port, stage 1 so far (kernel_patches/"
            "dedicated-cpu 0002): a dedicated vCPU's HLT does not exit; all else as stock", hlt_exiting=False),
    replace(_STOCK, name="dedicated-v2", description="The dedicated-cpu port, stages 1+2 (kernel_patches/"
            "dedicated-cpu 0002-0004), v2 semantics: HLT does not exit, kvm_vcpu_kick by NMI (also to a vCPU "
            "found EXITING), prevent-run closes the kick race; external-interrupt exiting stays on",
            hlt_exiting=False, kick="nmi-unless-outside", prevent_run=True),
    replace(_STOCK, name="dedicated-v1", description="The dedicated-cpu port's v1 switch: the seed's kick (NMI "
            "only to a vCPU found IN_GUEST_MODE) and its NMI handler that acts on nothing",
            hlt_exiting=False, kick="nmi-if-in-guest"),
    replace(_STOCK, name="dedicated-direct", description="The dedicated-cpu port, stage 3 (kernel_patches/"
            "dedicated-cpu-direct, SVM): v2's HLT and kicks, plus direct delivery on the vCPU's isolated CPU: "
            "host IPIs to it go by NMI, INTR intercept off with V_INTR_MASKING=0 while the host's LAPIC timer "
            "is not armed there, an assigned device's MSI sent there by its remapped IRTE with the guest's vector "
            "(0010: no host handler), other device interrupts relayed to it as physical IPIs with the guest's vector, "
            "x2APIC EOI passed through while no virtual vector is in service, the guest's one-shot x2APIC "
            "timer in the CPU's physical LAPIC timer for each direct entry (TMICT passed through)",
            arches=("svm",), hlt_exiting=False, kick="nmi-unless-outside", prevent_run=True,
            ext_int_exiting="host-timer", direct_msi=True, direct_eoi_x2apic=True, pv_eoi=False,
            host_isolated=True, timer_passthrough=True, closes_stale_window=True, irte_retarget=True),
    replace(_DISABLE_ALL, name="disable-exits-hlt", description="KVM_CAP_X86_DISABLE_EXITS with HLT only",
            mwait_exiting=True, pause_exiting=True, cstate_exiting=True),
    _SEED,
    _V1_FULL,
    _V2,
)}
