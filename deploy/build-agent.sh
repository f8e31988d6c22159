#!/usr/bin/env bash
# Builds noid-agent as a static binary (it runs as PID 1 of a guest with no libc of its own)
# and prints its path.
set -euo pipefail
cd "$(dirname "$0")/.."
target=x86_64-unknown-linux-gnu
RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --locked -q -p noid-agent --target "$target" >&2
echo "$PWD/target/$target/release/noid-agent"
