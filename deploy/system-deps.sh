#!/usr/bin/env bash
# Installs the system packages the project runs and tests with: nginx (the gateway) and Debian's
# chromium (the storefront test). Only acts on Debian/Ubuntu as root; elsewhere it says what's missing.
set -euo pipefail

missing=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx)
command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ] || missing+=(chromium)
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing ${missing[*]} (apt-get)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
    echo "please install: ${missing[*]} (nginx is needed to run; chromium for the browser test)" >&2
    [[ " ${missing[*]} " == *" nginx "* ]] && exit 1
    exit 0
fi
