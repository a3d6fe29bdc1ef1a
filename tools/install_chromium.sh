#!/bin/sh
# Debian's chromium for the admin's browser test (tests/test_admin_browser.py), which drives it
# with Playwright: Playwright's own browser download is not used. Prints the browser's path on
# its last line; exits 1 with a message when it is missing and cannot be installed here.
set -eu
BROWSER=/usr/bin/chromium
if [ -x "$BROWSER" ]; then
    echo "$BROWSER"
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "$BROWSER is missing and installing it needs root: run 'apt-get install -y chromium' as root"
    exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "$BROWSER is missing and there is no apt-get here: install chromium with your package manager"
    exit 1
fi
# One installer at a time (several test sessions may start together).
exec 9>/tmp/pgviews-install-chromium.lock
flock 9
if [ ! -x "$BROWSER" ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2 || { echo "apt-get update failed"; exit 1; }
    apt-get install -y -qq chromium >&2 || { echo "apt-get install chromium failed"; exit 1; }
fi
[ -x "$BROWSER" ] || { echo "chromium was installed but $BROWSER is missing"; exit 1; }
echo "$BROWSER"
