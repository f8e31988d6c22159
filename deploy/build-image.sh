#!/usr/bin/env bash
# Builds noid's default guest image from this host's Debian registries:
#   kernel     Debian linux-image-cloud-amd64 (vmlinuz for QEMU, vmlinux extracted for Firecracker)
#   initramfs  busybox-static, every module the guest needs, and noid-agent: it mounts the root
#              disk, puts the agent and busybox on a tmpfs at /run/noid inside it and starts
#              the agent there as PID 1, so any root filesystem works (images need no agent)
#   rootfs     ext4 with busybox-static: the `default` image's userland
# Usage: deploy/build-image.sh [OUT_DIR [AGENT_BINARY]]
#   OUT_DIR defaults to /var/lib/noid/images/default; the agent is built when not given.
# Idempotent: when OUT_DIR/manifest.json records the same inputs, it does nothing.
set -euo pipefail

out=${1:-/var/lib/noid/images/default}
agent=${2:-$("$(dirname "$0")/build-agent.sh")}
# Bump when the layout of the image changes; the server refuses images of another format.
format=2
rootfs_size=${NOID_ROOTFS_SIZE:-512M}

need() { command -v "$1" >/dev/null || { echo "build-image: '$1' is missing (see README set-up)" >&2; exit 1; }; }
for c in apt-get apt-cache dpkg-deb depmod modprobe mkfs.ext4 cpio gzip sha256sum lz4 python3; do need "$c"; done
[ -x /bin/busybox ] && /bin/busybox --list >/dev/null || { echo "build-image: busybox-static is missing" >&2; exit 1; }
[ -f "$agent" ] || { echo "build-image: agent binary $agent not found" >&2; exit 1; }

kpkg=$(apt-cache depends linux-image-cloud-amd64 | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
[ -n "$kpkg" ] || { echo "build-image: cannot resolve linux-image-cloud-amd64 (run apt-get update)" >&2; exit 1; }
kver_pkg=$(apt-cache policy "$kpkg" | awk '/Candidate:/ {print $2}')
bb_ver=$(dpkg-query -W -f='${Version}' busybox-static)
agent_sum=$(sha256sum "$agent" | cut -d' ' -f1)
key=$(printf '%s\n' "$format" "$kpkg" "$kver_pkg" "$bb_ver" "$agent_sum" "$rootfs_size" | cat - "$0" | sha256sum | cut -c1-16)

if [ -f "$out/manifest.json" ] && grep -q "\"id\": \"$key\"" "$out/manifest.json"; then
  echo "image $out is up to date ($key)"
  exit 0
fi

mkdir -p "$out"
work=$(mktemp -d "${out%/}/.build.XXXXXX")
trap 'rm -rf "$work"' EXIT
cache="${NOID_IMAGE_CACHE:-$out/../.cache}"
mkdir -p "$cache"

echo "==> kernel $kpkg $kver_pkg"
deb=$(ls "$cache"/"$kpkg"_*.deb 2>/dev/null | head -n1 || true)
if [ -z "$deb" ]; then
  (cd "$cache" && apt-get download "$kpkg" 2>&1 | grep -v '^W: Download is performed unsandboxed' || true)
  deb=$(ls "$cache"/"$kpkg"_*.deb | head -n1)
fi
dpkg-deb -x "$deb" "$work/kernel"
krel=${kpkg#linux-image-}
depmod -b "$work/kernel" "$krel"

# Modules in load order (dependencies first), as paths relative to /lib/modules/$krel.
modules_for() {
  modprobe -d "$work/kernel" -S "$krel" --show-depends -a "$@" | awk '$1 == "insmod" {print $2}' \
    | sed "s#^$work/kernel/lib/modules/$krel/##" | awk '!seen[$0]++'
}
# Root disk, agent channel, entropy, network, vsock (Firecracker).
boot_modules=$(modules_for virtio_mmio virtio_blk virtio_console virtio_rng virtio_net \
  vmw_vsock_virtio_transport)

echo "==> initramfs"
ird="$work/initramfs"
mkdir -p "$ird"/{bin,dev,proc,sys,newroot,lib/modules}
cp /bin/busybox "$ird/bin/busybox"
install -m 755 "$agent" "$ird/noid-agent"
for m in $boot_modules; do
  mkdir -p "$ird/lib/modules/$(dirname "$m")"
  cp "$work/kernel/lib/modules/$krel/$m" "$ird/lib/modules/$m"
done
printf '%s\n' $boot_modules > "$ird/modules"
cat > "$ird/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox mount -t devtmpfs devtmpfs /dev
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
for m in $(/bin/busybox cat /modules); do /bin/busybox insmod "/lib/modules/$m"; done
i=0
while [ ! -b /dev/vda ] && [ $i -lt 500 ]; do /bin/busybox usleep 10000; i=$((i+1)); done
if ! /bin/busybox mount -t ext4 -o rw,noatime /dev/vda /newroot; then
  echo "noid initramfs: cannot mount the root disk /dev/vda" >/dev/console
  /bin/busybox poweroff -f
fi
# The agent and a busybox for images without their own tools live on a tmpfs at /run.
for d in dev proc sys run tmp; do /bin/busybox mkdir -p "/newroot/$d"; done
/bin/busybox mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /newroot/run
/bin/busybox mkdir -p /newroot/run/noid/bin
/bin/busybox cp /noid-agent /newroot/run/noid/noid-agent
/bin/busybox cp /bin/busybox /newroot/run/noid/bin/busybox
/bin/busybox umount /proc /sys
/bin/busybox mount --move /dev /newroot/dev
exec /bin/busybox switch_root /newroot /run/noid/noid-agent
INIT
chmod 755 "$ird/init"
(cd "$ird" && find . | cpio -o -H newc --quiet | gzip -1) > "$work/initrd.img"

echo "==> rootfs ($rootfs_size)"
rd="$work/rootfs"
mkdir -p "$rd"/{bin,sbin,usr/bin,usr/sbin,etc,dev,proc,sys,tmp,run,root,var/tmp}
chmod 1777 "$rd/tmp" "$rd/var/tmp"
cp /bin/busybox "$rd/bin/busybox"
for applet in $(/bin/busybox --list-full); do
  [ -e "$rd/$applet" ] || ln -s /bin/busybox "$rd/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' > "$rd/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' > "$rd/etc/group"
echo noid > "$rd/etc/hostname"
printf '127.0.0.1 localhost\n' > "$rd/etc/hosts"
truncate -s "$rootfs_size" "$work/rootfs.ext4"
# Inode tables and journal written now, not by the guest's ext4lazyinit after each boot.
mkfs.ext4 -q -F -L noid-root -E root_owner=0:0,lazy_itable_init=0,lazy_journal_init=0 -d "$rd" "$work/rootfs.ext4"

cp "$work/kernel/boot/vmlinuz-$krel" "$work/vmlinuz"

echo "==> vmlinux (uncompressed ELF kernel, for Firecracker)"
# The bzImage's setup header locates the compressed payload (payload_offset/payload_length at
# 0x248/0x24c, after the setup sectors); Debian's cloud kernel compresses it with LZ4 (legacy
# frame). lz4 complains about the 4-byte size trailer the kernel's decompressor uses: the
# result is checked by its ELF magic instead.
python3 - "$work/vmlinuz" "$work/payload.lz4" <<'PY'
import struct, sys
d = open(sys.argv[1], "rb").read()
setup_sects = d[0x1f1] or 4
offset, length = struct.unpack_from("<II", d, 0x248)
start = (setup_sects + 1) * 512 + offset
open(sys.argv[2], "wb").write(d[start:start + length])
PY
lz4 -dc "$work/payload.lz4" > "$work/vmlinux" 2>/dev/null || true
rm -f "$work/payload.lz4"
[ "$(head -c 4 "$work/vmlinux" | od -An -tx1 | tr -d ' ')" = "7f454c46" ] \
  || { echo "build-image: could not extract vmlinux from $kpkg" >&2; exit 1; }
cat > "$work/manifest.json" <<JSON
{
  "format": $format,
  "id": "$key",
  "kernel_release": "$krel",
  "kernel_package": "$kpkg $kver_pkg",
  "busybox": "$bb_ver",
  "agent_sha256": "$agent_sum",
  "built_at": "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
}
JSON
for f in vmlinuz vmlinux initrd.img rootfs.ext4 manifest.json; do mv -f "$work/$f" "$out/$f"; done
sync
echo "image $out built ($key, kernel $krel)"
