"""The lab: assets, QEMU lifecycle per level, the L1 agent, networking and tracing."""
