#!/usr/bin/env bash
# Install the Debian packages the system test suites drive, when they are missing:
# wrk (load), chromium + chromedriver (browser), docker.io + debootstrap (container smoke test).
set -euo pipefail
wanted=()
command -v wrk >/dev/null || wanted+=(wrk)
command -v chromium >/dev/null || wanted+=(chromium)
command -v chromedriver >/dev/null || wanted+=(chromium-driver)
command -v dockerd >/dev/null || wanted+=(docker.io)
command -v debootstrap >/dev/null || wanted+=(debootstrap)
if [ ${#wanted[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "missing Debian packages: ${wanted[*]} (install them as root, or run this as root)" >&2
  exit 1
fi
echo "installing ${wanted[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${wanted[@]}" >/dev/null
