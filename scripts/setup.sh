#!/usr/bin/env bash
# Installs the Debian 12 packages cmdr-iad needs (idempotent: skips what is present).
#   scripts/setup.sh          build + test dependencies of the product
#   scripts/setup.sh --tools  also the Python packages used by tools/ (fixture makers)
set -euo pipefail
pkgs=(build-essential cmake pkg-config libeigen3-dev libdnnl-dev libxtensor-dev libstb-dev
      libtiff-dev doctest-dev libbenchmark-dev nlohmann-json3-dev libcli11-dev)
if [[ "${1:-}" == "--tools" ]]; then
  pkgs+=(python3-torch python3-numpy python3-scipy python3-sklearn python3-pil python3-open3d)
fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
  echo "setup: all ${#pkgs[@]} packages present"
  exit 0
fi
echo "setup: installing ${missing[*]}"
SUDO=""
[[ $(id -u) -ne 0 ]] && SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
