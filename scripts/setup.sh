#!/usr/bin/env bash
# Installs what moekit needs to build and test, from Debian's packages.
# Idempotent; needs root (or sudo) only when something is missing.
set -euo pipefail
# xz-utils unpacks tests/data; clang and libclang-rt-dev build the libFuzzer targets (scripts/test.sh);
# bsdutils has `script`, which gives the progress-bar test a terminal.
pkgs=(build-essential pkg-config libjansson-dev libpcre2-dev libutf8proc-dev liblapacke-dev python3 xz-utils clang libclang-rt-dev bsdutils)
# Headless Chromium lets tests/cli/test_profile.sh check that the HTML report renders (that check
# skips, saying so, without it). It is large (~300 MB with its libraries), so it is opt-in:
#   MK_SETUP_CHROMIUM=1 bash scripts/setup.sh
if [ "${MK_SETUP_CHROMIUM:-0}" = 1 ]; then pkgs+=(chromium); fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "setup: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
