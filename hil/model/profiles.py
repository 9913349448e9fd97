"""Kernel profiles as declarative data: which exits are on, how kicks travel, what the
series changes. Semantics read these flags; nothing branches on a profile's name."""
from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    era: str = "modern"                 # "2012" (Linux 3.5/3.6 stat and reason names) | "modern"
    arches: tuple[str, ...] = ("svm", "vmx")
    hlt_exiting: bool = True
    mwait_exiting: bool = True
    pause_exiting: bool = True
    cstate_exiting: bool = True
    ext_int_exiting: str = "on"         # on | off (v1: off for good) | toggled (v2: on while a virtual IRQ is in service)
    kick: str = "ipi"                   # ipi | nmi-if-in-guest (v1) | nmi-unless-outside (v2)
    nmi_handler_acts: bool = True       # v1's NMI handler handles nothing (the seed)
    prevent_run: bool = False           # v2/17: a kick landing during entry forces an immediate exit
    dedicated_cpu: bool = False         # no host interrupts or housekeeping on the vCPU's pCPU
    direct_msi: bool = False            # assigned MSI retargeted to the guest vector on the dedicated CPU
    direct_eoi_x2apic: bool = False     # v2/19: x2APIC EOI MSR not intercepted for direct interrupts
    timer_passthrough: bool = False     # v2/20: TMICT/TMCCT passthrough, expiry delivered directly
    tlb_by_nmi: bool = False            # v1 18/18, v2 21/21
    bounce_to_online: bool = False      # exits needing process context run on the online CPU
    apicv: bool = False                 # VMX APICv / SVM AVIC (EOI and, with IPIv, ICR virtualised)
    posted_interrupts: bool = False     # VT-d PI / AVIC doorbell for assigned devices
    pv_eoi: bool = True                 # offered to guests (used only if the guest asks: event param)


_STOCK_2012 = Profile("stock-2012", "Linux 3.5/3.6, VMX+EPT, in-kernel irqchip, legacy device assignment, "
                      "no APICv", era="2012", arches=("vmx", "svm"))
_V1 = replace(_STOCK_2012, name="slave-v1", description="The seed and the 18-patch series: HLT and "
              "external-interrupt exiting off for good, NMI kick only when IN_GUEST_MODE, NMI handler "
              "that handles nothing, no direct EOI", hlt_exiting=False, ext_int_exiting="off",
              kick="nmi-if-in-guest", nmi_handler_acts=False, dedicated_cpu=True, direct_msi=True,
              tlb_by_nmi=True, bounce_to_online=True, pv_eoi=False)
_V2 = replace(_V1, name="slave-v2", description="The 21-patch series: external-interrupt exiting toggled "
              "around virtual injection and EOI, direct EOI for x2APIC guests, LAPIC timer passthrough, "
              "prevent-run closing the kick race, TLB shootdowns by NMI, bounces to the online CPU",
              ext_int_exiting="toggled", kick="nmi-unless-outside", nmi_handler_acts=True, prevent_run=True,
              direct_eoi_x2apic=True, timer_passthrough=True)
_STOCK = Profile("stock", "Today's KVM, no APIC virtualisation (as in the nested TCG lab: no AVIC)")
_DISABLE_ALL = replace(_STOCK, name="disable-exits", description="KVM_CAP_X86_DISABLE_EXITS with HLT, MWAIT, "
                       "PAUSE and CSTATE (QEMU -overcommit cpu-pm=on)", hlt_exiting=False, mwait_exiting=False,
                       pause_exiting=False, cstate_exiting=False)

PROFILES: dict[str, Profile] = {p.name: p for p in (
    _STOCK_2012,
    replace(_STOCK, name="stock-svm", description=_STOCK.description + "; SVM", arches=("svm",)),
    replace(_STOCK, name="stock-vmx", description=_STOCK.description + "; VMX", arches=("vmx",)),
    replace(_STOCK, name="stock-svm-avic", description="Today's KVM on SVM with AVIC", arches=("svm",),
            apicv=True, posted_interrupts=True),
    replace(_STOCK, name="stock-vmx-apicv", description="Today's KVM on VMX with APICv and posted "
            "interrupts (VT-d PI)", arches=("vmx",), apicv=True, posted_interrupts=True),
    _DISABLE_ALL,
    replace(_STOCK, name="dedicated-hlt", description="The dedicated-cpu port, stage 1 so far (kernel_patches/"
            "dedicated-cpu 0002): a dedicated vCPU's HLT does not exit; all else as stock", hlt_exiting=False),
    replace(_STOCK, name="dedicated-v2", description="The dedicated-cpu port, stages 1+2 (kernel_patches/"
            "dedicated-cpu 0002-0003), v2 semantics: HLT does not exit, kicks by NMI (also to a vCPU found "
            "EXITING), prevent-run closes the kick race; external-interrupt exiting stays on",
            hlt_exiting=False, kick="nmi-unless-outside", prevent_run=True),
    replace(_STOCK, name="dedicated-v1", description="The dedicated-cpu port's v1 switch: the seed's kick (NMI "
            "only to a vCPU found IN_GUEST_MODE) and its NMI handler that acts on nothing",
            hlt_exiting=False, kick="nmi-if-in-guest", nmi_handler_acts=False),
    replace(_STOCK, name="dedicated-direct", description="The dedicated-cpu port, stage 3 (kernel_patches/"
            "dedicated-cpu-direct, SVM): v2's HLT and kicks, plus direct delivery on the vCPU's isolated CPU: "
            "host IPIs to it go by NMI, INTR intercept off with V_INTR_MASKING=0 while the host's LAPIC timer "
            "is not armed there, device interrupts relayed to it as physical IPIs with the guest's vector, "
            "x2APIC EOI passed through while no virtual vector is in service; the guest's timer stays KVM's",
            arches=("svm",), hlt_exiting=False, kick="nmi-unless-outside", prevent_run=True,
            ext_int_exiting="toggled", direct_msi=True, direct_eoi_x2apic=True, pv_eoi=False),
    replace(_DISABLE_ALL, name="disable-exits-hlt", description="KVM_CAP_X86_DISABLE_EXITS with HLT only",
            mwait_exiting=True, pause_exiting=True, cstate_exiting=True),
    _V1,
    _V2,
)}
