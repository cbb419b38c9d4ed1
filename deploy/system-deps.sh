#!/usr/bin/env bash
# Installs the system packages the project runs and tests with: nginx (the gateway), Debian's
# chromium (the storefront test) and prometheus (promtool tests the alert rules; make observe).
# Only acts on Debian/Ubuntu as root; elsewhere it says what's missing.
set -euo pipefail

missing=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx)
command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ] || missing+=(chromium)
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing ${missing[*]} (apt-get)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    # The package starts a Prometheus daemon where an init system runs: make observe runs its own.
    if [[ " ${missing[*]} " == *" prometheus "* ]] && command -v systemctl >/dev/null 2>&1; then
        systemctl disable --now prometheus prometheus-node-exporter >/dev/null 2>&1 || true
    fi
else
    echo "please install: ${missing[*]} (nginx is needed to run; chromium for the browser test; prometheus for the alert-rule tests and make observe)" >&2
    [[ " ${missing[*]} " == *" nginx "* ]] && exit 1
    exit 0
fi
