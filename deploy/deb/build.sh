#!/bin/bash
# build.sh: the flatmesh .deb, with dpkg-deb. `make deb` runs it.
#   deploy/deb/build.sh VERSION ARCH BINDIR OUTDIR
# Takes BINDIR/flatmesh, and BINDIR/flatmesh-cni when it exists; writes
# OUTDIR/flatmesh_VERSION_ARCH.deb and prints its path. Run from anywhere.
set -euo pipefail
[ $# -eq 4 ] || { echo "usage: $0 VERSION ARCH BINDIR OUTDIR" >&2; exit 2; }
version=$1 arch=$2 bindir=$3 outdir=$4
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
[[ $version =~ ^[0-9][A-Za-z0-9.+~-]*$ ]] || { echo "bad Debian version $version" >&2; exit 2; }
[ -x "$bindir/flatmesh" ] || { echo "$bindir/flatmesh is missing: build it first" >&2; exit 1; }

stage=$(mktemp -d)
chmod 0755 "$stage"
trap 'rm -rf "$stage"' EXIT
umask 022
doc=$stage/usr/share/doc/flatmesh
install -d "$stage/DEBIAN" "$stage/usr/bin" "$stage/lib/systemd/system" "$doc/examples"
install -m 0755 "$bindir/flatmesh" "$stage/usr/bin/flatmesh"
if [ -x "$bindir/flatmesh-cni" ]; then
	# CNI finds a plugin by its network config's "type" as a file name in
	# its plugin dirs ("type": "flatmesh"); Debian's containernetworking-
	# plugins live in /usr/lib/cni.
	install -d "$stage/usr/lib/cni"
	install -m 0755 "$bindir/flatmesh-cni" "$stage/usr/lib/cni/flatmesh"
fi
# The unit as shipped in deploy/systemd, with the packaged binary's path.
sed 's|/usr/local/bin/flatmesh|/usr/bin/flatmesh|g' "$root/deploy/systemd/flatmesh.service" \
	> "$stage/lib/systemd/system/flatmesh.service"
chmod 0644 "$stage/lib/systemd/system/flatmesh.service"
install -m 0644 "$root/deploy/flatmesh.hcl.example" "$doc/examples/flatmesh.hcl.example"
install -m 0644 "$root/README.md" "$doc/README.md"
for f in "$root"/docs/*.md; do install -m 0644 "$f" "$doc/"; done
install -m 0644 "$here/copyright" "$doc/copyright"

for s in postinst prerm postrm; do install -m 0755 "$here/$s" "$stage/DEBIAN/$s"; done
size=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" -e "s/@SIZE@/$size/" \
	"$here/control.in" > "$stage/DEBIAN/control"
(cd "$stage" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z | xargs -0 md5sum) \
	> "$stage/DEBIAN/md5sums"
chmod 0644 "$stage/DEBIAN/control" "$stage/DEBIAN/md5sums"

mkdir -p "$outdir"
out="$outdir/flatmesh_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Zxz --build "$stage" "$out" >/dev/null
echo "$out"
