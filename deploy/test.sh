#!/usr/bin/env bash
# The whole test suite: dependencies, build, the default guest image (cached), then every
# unit, service and end-to-end test (real server, real VMs, real CLI).
set -euo pipefail
cd "$(dirname "$0")/.."
deploy/install-deps.sh
echo "==> build"
cargo build --locked --workspace --all-targets
image_dir=${NOID_IMAGE_DIR:-/var/lib/noid/images/default}
echo "==> guest image ($image_dir)"
deploy/build-image.sh "$image_dir"
echo "==> tests"
NOID_IMAGE_DIR="$image_dir" cargo test --locked --workspace
