"""QEMU at every level: argv from validated config, QMP via qemu.qmp, one lifecycle."""
