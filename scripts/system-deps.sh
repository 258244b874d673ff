#!/usr/bin/env bash
# Install the Debian packages the system test suites and benchmarks drive, when they are missing:
# wrk and h2load (load), chromium + chromedriver (browser), docker.io + debootstrap + curl (container smoke test).
# usage: scripts/system-deps.sh [COMMAND ...]   (default: all of them)
set -euo pipefail
declare -A package_of=([wrk]=wrk [chromium]=chromium [chromedriver]=chromium-driver [dockerd]=docker.io
                       [debootstrap]=debootstrap [curl]=curl [h2load]=nghttp2-client)
commands=("$@")
[ ${#commands[@]} -gt 0 ] || commands=(wrk chromium chromedriver dockerd debootstrap curl)
wanted=()
for command in "${commands[@]}"; do
  command -v "$command" >/dev/null || wanted+=("${package_of[$command]}")
done
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
