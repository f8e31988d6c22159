#!/usr/bin/env bash
# Installs what noid needs on a Debian host (12 "bookworm" or newer), as root:
# QEMU (microvm), the pieces the image builder uses, and the C toolchain that cargo needs.
# Rust itself: cargo >= 1.85 must be on PATH (https://rustup.rs); Debian's own cargo is too old.
set -euo pipefail
[ "$(id -u)" = 0 ] || { echo "install-deps: run as root" >&2; exit 1; }

packages=(
  qemu-system-x86    # the VMM (qemu-system-x86_64 -M microvm) and its firmware
  qemu-utils         # qemu-img: copy-on-write disk overlays for VMs
  busybox-static     # the default guest userland
  e2fsprogs          # mkfs.ext4 -d for root filesystems (the default image, imported ones)
  mmdebstrap         # noid image build --debian: a Debian userland from the Debian archive
  cpio gzip kmod     # initramfs and kernel module dependency resolution
  lz4                # vmlinux (for Firecracker) from the LZ4-compressed kernel image
  libc6-dev gcc pkg-config  # the static guest agent and crates that build C
  iproute2 procps    # ip, ps (diagnostics and tests)
  nftables           # NAT and published ports (noid's own table)
  btrfs-progs        # tests: checkpoints on a btrfs loop filesystem share extents
  tmux               # terminal tests of `noid exec -t` and `noid console`
  chromium           # tests: the web console in a headless browser (driven by playwright-core)
  python3 python3-venv  # tests: the generated Python client runs in a fresh virtualenv
  systemd            # tests: systemd-analyze checks the service unit
  ca-certificates
)
# tests: buf (from npm) lints the protos. Only when npm is missing: a host with Node.js from
# elsewhere (NodeSource, nvm) already has npm, and Debian's npm package would conflict with it.
command -v npm >/dev/null || packages+=(nodejs npm)
find_missing() {
  missing=()
  for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
}
install_missing() {
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}
find_missing
if [ ${#missing[@]} -gt 0 ] || ! apt-cache show linux-image-cloud-amd64 >/dev/null 2>&1; then
  echo "==> apt-get install ${missing[*]:-(package lists only)}"
  apt-get update -qq
  [ ${#missing[@]} -eq 0 ] || install_missing
  # An install can remove a package that was there: a qemu-utils of another QEMU version
  # (from backports, say) goes when Debian's qemu-system-x86 comes. Install what went.
  find_missing
  if [ ${#missing[@]} -gt 0 ]; then
    echo "==> apt-get install ${missing[*]} (removed by the install above)"
    install_missing
    find_missing
    [ ${#missing[@]} -eq 0 ] || { echo "install-deps: could not install ${missing[*]}" >&2; exit 1; }
  fi
fi

if ! command -v cargo >/dev/null; then
  echo "install-deps: cargo not found. Install Rust (>= 1.85) with rustup: https://rustup.rs" >&2
  exit 1
fi
echo "==> dependencies present ($(cargo --version), $(qemu-system-x86_64 --version | head -n1))"
