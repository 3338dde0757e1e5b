#!/bin/sh
# What the browser tests need from Debian: chromium (driven by pip playwright; no browser is ever
# downloaded) and a CJK font so pages and screenshots show Chinese, not boxes. Installs only what is
# missing, only as root; otherwise says why the browser tests will skip (under CI=true they fail instead).
set -u
PACKAGES="chromium fonts-wqy-microhei"

missing=""
for p in $PACKAGES; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "browser tests will skip: missing Debian packages:$missing (install them as root: apt-get install$missing)"
    exit 0
fi
echo "installing Debian packages for the browser tests:$missing"
export DEBIAN_FRONTEND=noninteractive
if ! { apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends $missing >/dev/null; }; then
    echo "apt-get could not install$missing: the browser tests will skip (or fail under CI=true)"
fi
exit 0
