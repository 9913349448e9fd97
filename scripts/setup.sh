#!/bin/sh
# Set up a fresh Debian 12/13 or Ubuntu box for hil: system packages (QEMU >= 8 where the
# distro offers it), then a virtualenv with the pinned Python dependencies. Idempotent.
set -eu
cd "$(dirname "$0")/.."
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
. /etc/os-release
QEMU_SUITE=""
if [ "${ID:-}" = debian ] && [ "${VERSION_CODENAME:-}" = bookworm ]; then
    # Debian 12 ships QEMU 7.2; bookworm-backports has 10.x. Reuse the mirror and key the
    # box already uses for bookworm, so no address is hard-coded here.
    if ! grep -rqs "bookworm-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
        stanza=$(awk 'BEGIN{RS=""} /Suites:[^\n]*bookworm([ \n]|$)/ && !/security/ {print; exit}' \
                 /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
        if [ -n "$stanza" ]; then
            printf '%s\n' "$stanza" | sed -e 's/^Suites:.*/Suites: bookworm-backports/' \
                | $SUDO tee /etc/apt/sources.list.d/hil-backports.sources >/dev/null
        else
            awk '$1=="deb" && $3=="bookworm" {$3="bookworm-backports"; print; exit}' /etc/apt/sources.list \
                | $SUDO tee /etc/apt/sources.list.d/hil-backports.list >/dev/null
        fi
    fi
    QEMU_SUITE="-t bookworm-backports"
fi
$SUDO apt-get update -q
# shellcheck disable=SC2086  # QEMU_SUITE is two words or empty on purpose
$SUDO apt-get install -y -q $QEMU_SUITE qemu-system-x86 qemu-utils
$SUDO apt-get install -y -q busybox-static cpio kmod gcc make binutils libc-bin python3 python3-venv python3-dev
# a whole-kernel series build (kernel_patches/*/series.yaml build: full-kernel)
$SUDO apt-get install -y -q flex bison bc libelf-dev libssl-dev
# the report test renders report.html in headless Chromium (it skips without it; Ubuntu's is a snap)
$SUDO apt-get install -y -q --no-install-recommends chromium || echo "chromium not installed: the report's browser test will skip"
if [ ! -x .venv/bin/python ]; then
    /usr/bin/python3 -m venv .venv
fi
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q -e '.[test]'
echo "hil set-up done: $(.venv/bin/hil doctor >/dev/null 2>&1 && echo 'hil doctor: ok' || echo 'run .venv/bin/hil doctor')"
