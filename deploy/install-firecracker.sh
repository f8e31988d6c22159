#!/usr/bin/env bash
# Installs Firecracker and its jailer (pinned release, checksum verified) on a KVM host, as
# root. Needs the internet: it downloads the release archive from github.com. Nothing else
# in noid's set-up needs more than Debian's and Rust's package registries.
#   PREFIX  where the binaries go (default: /usr/local/bin)
set -euo pipefail
version=v1.16.1
prefix=${PREFIX:-/usr/local/bin}
arch=$(uname -m)
case "$arch" in
  # SHA-256 of firecracker-$version-$arch.tgz as published with the release.
  x86_64)  sha256=382a02a869e4d6d5cb14c40577f9545e8458021ea8b0b2d3fc10ec14d9c242e6 ;;
  aarch64) sha256=8d0e69f6d6f9a1724551f607f18504052c16c1828ee3d4d7b6e6c73380871e0e ;;
  *) echo "install-firecracker: no Firecracker release for $arch" >&2; exit 1 ;;
esac

command -v curl >/dev/null || apt-get install -y -q curl
if [ -x "$prefix/firecracker" ] && "$prefix/firecracker" --version 2>/dev/null | grep -q "Firecracker $version"; then
  echo "Firecracker $version is already in $prefix"
else
  url=https://github.com/firecracker-microvm/firecracker/releases/download/$version/firecracker-$version-$arch.tgz
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  echo "==> downloading $url"
  curl --fail --silent --show-error --location --output "$tmp/fc.tgz" "$url"
  echo "$sha256  $tmp/fc.tgz" | sha256sum --check --quiet \
    || { echo "install-firecracker: checksum mismatch for $url" >&2; exit 1; }
  tar -xzf "$tmp/fc.tgz" -C "$tmp"
  install -m 755 "$tmp/release-$version-$arch/firecracker-$version-$arch" "$prefix/firecracker"
  install -m 755 "$tmp/release-$version-$arch/jailer-$version-$arch" "$prefix/jailer"
  echo "installed firecracker and jailer $version in $prefix"
fi

# Firecracker needs a KVM that runs standard guests; the server falls back to QEMU otherwise.
if command -v noid-server >/dev/null; then
  noid-server doctor | grep -E '^(ok|--) (firecracker|jailer|kvm|vmm) ' || true
fi
