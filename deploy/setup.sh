#!/usr/bin/env bash
# One-command set-up of a noid host on Debian, as root: dependencies, release build, the
# default guest image, binaries in /usr/local/bin, a first user whose token the CLI is
# configured with, and a running server on 127.0.0.1:7777.
#   NOID_USER   name of the first user (default: admin)
#   NOID_DATA_DIR  data directory (default: /var/lib/noid)
#   NOID_FIRECRACKER=1  also install Firecracker (deploy/install-firecracker.sh; needs github.com)
set -euo pipefail
cd "$(dirname "$0")/.."
user=${NOID_USER:-admin}
data_dir=${NOID_DATA_DIR:-/var/lib/noid}
url=http://127.0.0.1:7777

deploy/install-deps.sh
echo "==> cargo build --release"
cargo build --locked --release --workspace -q
install -m 755 target/release/noid target/release/noid-server /usr/local/bin/
[ "${NOID_FIRECRACKER:-0}" = 1 ] && deploy/install-firecracker.sh
echo "==> guest image"
deploy/build-image.sh "$data_dir/images/default"

mkdir -p /etc/noid
[ -f /etc/noid/config.toml ] || sed "s#^data_dir = .*#data_dir = \"$data_dir\"#" deploy/config.example.toml > /etc/noid/config.toml

server_up() { (exec 3<>/dev/tcp/127.0.0.1/7777) 2>/dev/null; }

if [ -d /run/systemd/system ]; then
  install -m 644 deploy/noid-server.service /etc/systemd/system/noid-server.service
  systemctl daemon-reload
  systemctl enable --now noid-server >/dev/null
  systemctl restart noid-server
else
  if ! server_up; then
    echo "==> starting noid-server (no systemd here; log in /var/log/noid-server.log)"
    nohup noid-server serve --config /etc/noid/config.toml >>/var/log/noid-server.log 2>&1 &
  fi
fi
for _ in $(seq 50); do server_up && break; sleep 0.2; done
server_up || { echo "setup: noid-server did not start; see /var/log/noid-server.log or journalctl -u noid-server" >&2; exit 1; }

if ! noid whoami >/dev/null 2>&1; then
  if noid-server list-users --config /etc/noid/config.toml | grep -qx "$user"; then
    token=$(noid-server rotate-token "$user" --config /etc/noid/config.toml 2>/dev/null)
  else
    token=$(noid-server add-user "$user" --config /etc/noid/config.toml 2>/dev/null)
  fi
  noid auth setup --url "$url" --token "$token" >/dev/null
fi

cat <<TXT

noid is running on $url as user $(noid whoami | cut -d' ' -f1). Try:

  noid create my-vm
  noid exec my-vm -- uname -a
  noid destroy my-vm
TXT
