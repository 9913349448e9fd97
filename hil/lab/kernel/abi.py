"""The dedicated-cpu series' userspace ABI (kernel_patches/dedicated-cpu 0002): not in any
uapi header, since the modules are built against the distribution's headers."""
from __future__ import annotations

KVM_SET_DEDICATED = (0xAE << 8) | 0xAF       # _IO(KVMIO, 0xaf), as 2012's KVM_SET_SLAVE_CPU
KVM_CAP_DEDICATED_CPU = 0x1000
# direct (kernel_patches/dedicated-cpu-direct): v2 plus direct delivery; refused unless its
# preconditions hold (the vCPU thread pinned to one isolated nohz_full CPU, L1 in x2APIC mode, the
# guest with an in-kernel x2APIC and neither SVM nor PV-EOI in its CPUID)
DEDICATED_MODES = {"off": 0, "v2": 1, "v1": 2, "direct": 3}
