#!/usr/bin/env bash
# The whole test suite: dependencies, build, the default guest image (cached), then every
# unit, service and end-to-end test (real server, real VMs, real CLI).
set -euo pipefail
cd "$(dirname "$0")/.."
deploy/install-deps.sh
# One build from scratch: incremental compilation would only double the disk it takes.
export CARGO_INCREMENTAL=${CARGO_INCREMENTAL:-0}
echo "==> build"
cargo build --locked --workspace --all-targets
image_dir=${NOID_IMAGE_DIR:-/var/lib/noid/images/default}
echo "==> guest image ($image_dir)"
deploy/build-image.sh "$image_dir"
export NOID_IMAGE_DIR="$image_dir"
if [ "${NOID_VMM:-}" = firecracker ]; then
  # The end-to-end suite on Firecracker needs its binary and a KVM that runs standard
  # guests; the server's doctor says whether this host has both.
  vmm=$(target/debug/noid-server doctor --data-dir "$(mktemp -d)" | grep ' vmm ' || true)
  if ! echo "$vmm" | grep -q '^ok vmm *will use firecracker'; then
    echo "SKIP end-to-end tests on Firecracker: this host cannot run it ($(echo "$vmm" | sed 's/^.. vmm *//'))"
    echo "==> tests (unit tests and the Firecracker API contract tests only)"
    unset NOID_VMM
    exec cargo test --locked --workspace --lib --bins --test firecracker_contract
  fi
fi
echo "==> tests${NOID_VMM:+ (NOID_VMM=$NOID_VMM)}"
cargo test --locked --workspace
