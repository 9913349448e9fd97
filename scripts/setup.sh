#!/bin/sh
# Set up a fresh Debian 12 box for hil (tested there; Debian 13 is expected to work, see the
# README): system packages (QEMU >= 8 where the distro offers it), then a virtualenv with the
# pinned Python dependencies. Idempotent.
set -eu
cd "$(dirname "$0")/.."
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
. /etc/os-release
# the system packages hil needs (the optional ones below are tried whenever these are installed)
QEMU_PKGS="qemu-system-x86 qemu-utils"
BASE_PKGS="busybox-static cpio kmod gcc make binutils libc-bin python3 python3-venv python3-dev"
KBUILD_PKGS="flex bison bc libelf-dev libssl-dev"     # a whole-kernel series build (build: full-kernel)
REQUIRED="$QEMU_PKGS $BASE_PKGS $KBUILD_PKGS"
installed() {
    # shellcheck disable=SC2086  # a list of package names
    [ "$(dpkg-query -W -f='${Status}\n' $REQUIRED 2>/dev/null | grep -c 'install ok installed')" -eq "$(echo $REQUIRED | wc -w)" ] || return 1
    # Debian 12's own QEMU (7.2) is too old: bookworm takes it from bookworm-backports
    [ "${VERSION_CODENAME:-}" != bookworm ] || dpkg --compare-versions "$(dpkg-query -W -f='${Version}' qemu-system-x86)" ge 1:8
}
if installed; then
    echo "hil set-up: system packages present"
else
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
    # shellcheck disable=SC2086  # QEMU_SUITE is two words or empty, the rest lists of names
    $SUDO apt-get install -y -q $QEMU_SUITE $QEMU_PKGS
    # shellcheck disable=SC2086
    $SUDO apt-get install -y -q $BASE_PKGS $KBUILD_PKGS
    # LAVA's own job validator (hil lava job; the suite validates the emitted jobs with it). Debian
    # and Ubuntu only: elsewhere the LAVA tests skip with that reason.
    $SUDO apt-get install -y -q lava-common || echo "hil set-up: lava-common not available here (LAVA job tests will skip)"
    # the report test renders report.html in headless Chromium (it skips without it; Ubuntu's is a snap)
    $SUDO apt-get install -y -q --no-install-recommends chromium || echo "chromium not installed: the report's browser test will skip"
fi
if [ ! -x .venv/bin/python ]; then
    /usr/bin/python3 -m venv .venv
fi
# the venv is reinstalled only when pyproject.toml changed since it last was
STAMP=.venv/.hil-installed
WANT=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ "$(cat "$STAMP" 2>/dev/null)" != "$WANT" ] || ! .venv/bin/python -c 'import hil' 2>/dev/null; then
    .venv/bin/pip install -q --upgrade pip
    .venv/bin/pip install -q -e '.[test]'
    echo "$WANT" > "$STAMP"
fi
# hil's bytecode compiled ahead (a PYTHONDONTWRITEBYTECODE environment would have every hil
# command compile it afresh: ~0.3 s of each run)
.venv/bin/python -m compileall -q hil
echo "hil set-up done: $(.venv/bin/hil doctor >/dev/null 2>&1 && echo 'hil doctor: ok' || echo 'run .venv/bin/hil doctor')"
