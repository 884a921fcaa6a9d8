#!/usr/bin/env bash
# Builds and runs the main job: `cmdr-iad demo` (synthetic data -> train -> evaluate).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)" --target cmdr-iad
exec build/apps/cmdr-iad demo "$@"
