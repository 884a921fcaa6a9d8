#!/usr/bin/env bash
# Builds (Release, warnings as errors) and runs the whole test suite.
#   scripts/test.sh          unit suite + slow suite (what CI runs)
#   scripts/test.sh --quick  unit suite only
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)"
if [[ "${1:-}" == "--quick" ]]; then
  ctest --test-dir build --output-on-failure -R '^unit$'
else
  ctest --test-dir build --output-on-failure
fi
