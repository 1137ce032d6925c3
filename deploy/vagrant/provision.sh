#!/bin/bash
# provision.sh: make a Debian 12 host a flatmesh member. Vagrant runs it in
# each VM (deploy/vagrant/Vagrantfile) and the systemd rig runs it in each
# nspawn machine (deploy/rig), so what Vagrant runs is tested.
#
#   provision.sh NAME IP SEED IFACE
# NAME: node name; IP: this host's underlay address on IFACE (bound and
# advertised); SEED: the first host's address (the others join it; the
# seed itself joins nobody). Expects the package at /tmp/flatmesh.deb
# (make deb) and the cluster's key at /tmp/gossip.key (flatmesh keygen).
# Running it again is harmless. `provision.sh --print-config NAME IP SEED
# IFACE` prints the agent config it would write and changes nothing.
set -euo pipefail

print_config() {
	local name=$1 ip=$2 seed=$3 iface=$4 join=""
	[ "$ip" = "$seed" ] || join="join      = [\"$seed\"]"
	cat <<CONFIG
name      = "$name"
cluster   = "vagrant"
mode      = "vxlan"
key_file  = "/etc/flatmesh/gossip.key"
# Bind and advertise the private network's address: never a NAT interface
# whose address every VM shares (10.0.2.15 on Vagrant's eth0).
iface     = "$iface"
bind      = "$ip"
advertise = "$ip"
$join
CONFIG
}

if [ "${1:-}" = --print-config ]; then
	shift
	[ $# -eq 4 ] || { echo "usage: $0 --print-config NAME IP SEED IFACE" >&2; exit 2; }
	print_config "$@"
	exit 0
fi
[ $# -eq 4 ] || { echo "usage: $0 NAME IP SEED IFACE" >&2; exit 2; }
name=$1 ip=$2 seed=$3 iface=$4

export DEBIAN_FRONTEND=noninteractive
# Only reach for the network when something is missing (the rig's machines
# have it all and no route to a mirror).
missing=""
for p in iproute2 iptables ethtool iputils-ping; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
	apt-get update -q
	apt-get install -y -q --no-install-recommends $missing
fi

dpkg -i /tmp/flatmesh.deb
install -d -m 0700 /etc/flatmesh
install -m 0600 /tmp/gossip.key /etc/flatmesh/gossip.key
print_config "$name" "$ip" "$seed" "$iface" > /etc/flatmesh/flatmesh.hcl.new
chmod 0644 /etc/flatmesh/flatmesh.hcl.new
mv /etc/flatmesh/flatmesh.hcl.new /etc/flatmesh/flatmesh.hcl
systemctl enable flatmesh.service
# Type=notify: restart returns once the agent is ready (data plane set up,
# API listening) or has failed.
if ! systemctl restart flatmesh.service; then
	journalctl -u flatmesh --no-pager -n 50
	exit 1
fi
flatmesh status
