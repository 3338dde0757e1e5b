#!/bin/sh
# What the page's tests need from Debian: chromium (driven by pip playwright; no browser is ever
# downloaded), a CJK font so pages and screenshots show Chinese, not boxes, and node for the JavaScript
# unit tests. Installs only what is missing, only as root; otherwise says why those tests will skip (under
# CI=true they fail instead).
set -u
PACKAGES="chromium fonts-wqy-microhei"
command -v node >/dev/null 2>&1 || PACKAGES="$PACKAGES nodejs"

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
