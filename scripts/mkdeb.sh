#!/usr/bin/env bash
# mkdeb.sh BIN OUTDIR VERSION: builds subhost_VERSION_ARCH.deb from the
# binaries of `make build` in BIN (BIN/subhost, BIN/plugins/*).
#
# Why dpkg-deb from a staged tree and not debian/ + dpkg-buildpackage:
# Debian's own Go is too old to build subhost, so the binaries always come
# from the project's build, and dpkg-buildpackage would only wrap a copy
# step in debhelper machinery (and a source package nobody could rebuild
# with Debian's toolchain). The package's parts live in packaging/deb/;
# the man pages come from the cobra commands themselves.
set -euo pipefail
bin=$1 out=$2 version=$3
here=$(cd "$(dirname "$0")/.." && pwd)
src=$here/packaging/deb

# A Debian version starts with a digit; an untagged build's git
# description (a hash, maybe -dirty; a hash may start with a digit, but
# holds no dot) sorts below any release as 0~git.
case $version in
v[0-9]*.*|[0-9]*.*) debversion=${version#v}; debversion=${debversion//-/+} ;;
*) debversion=0~git.${version//-/+} ;;
esac
arch=$(dpkg --print-architecture)

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
chmod 0755 "$stage"
d() { install -d -m 0755 "$stage/$1"; }
d DEBIAN; d usr/bin; d usr/lib/subhost/plugins; d etc/init.d; d etc/default
d usr/lib/systemd/system; d usr/share/man/man8; d usr/share/doc/subhost
d usr/share/lintian/overrides

install -m 0755 "$bin/subhost" "$stage/usr/bin/subhost"
ln -s subhost "$stage/usr/bin/pretend-boot"
ln -s subhost "$stage/usr/bin/control"
install -m 0755 "$bin"/plugins/* "$stage/usr/lib/subhost/plugins/"
install -m 0755 "$src/subhost.init" "$stage/etc/init.d/subhost"
install -m 0644 "$src/subhost.default" "$stage/etc/default/subhost"
install -m 0644 "$src/subhost.service" "$src/subhost@.service" "$stage/usr/lib/systemd/system/"
install -m 0644 "$src/copyright" "$stage/usr/share/doc/subhost/copyright"
install -m 0644 "$src/lintian-overrides" "$stage/usr/share/lintian/overrides/subhost"

# Dates in the package (man pages, changelog) are the last commit's, so
# that a rebuild of the same tree makes the same files.
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$here" log -1 --format=%ct 2>/dev/null || date +%s)}
export SOURCE_DATE_EPOCH

# One page per command (subhost.8, subhost-run.8, ...), section 8: subhost
# is run by root. The old script names point at the pages of what they run.
# The generator is compiled in only with -tags mangen (cmd/subhost/man.go).
mangen=$(mktemp -d)
trap 'rm -rf "$stage" "$mangen"' EXIT
(cd "$here" && CGO_ENABLED=0 go build -tags mangen -o "$mangen/subhost" ./cmd/subhost)
"$mangen/subhost" __man "$stage/usr/share/man/man8"
ln -s subhost-run.8.gz "$stage/usr/share/man/man8/pretend-boot.8.gz"
ln -s subhost.8.gz "$stage/usr/share/man/man8/control.8.gz"

# A native package's changelog: one entry for this build.
{
	echo "subhost ($debversion) unstable; urgency=medium"
	echo
	echo "  * Built from the subhost tree at $version."
	echo
	echo " -- subhost developers <subhost@localhost.invalid>  $(date -R -u -d "@$SOURCE_DATE_EPOCH")"
} >"$stage/usr/share/doc/subhost/changelog"

find "$stage/usr/share/man" "$stage/usr/share/doc/subhost/changelog" -type f -exec gzip -9n {} +

install -m 0644 "$src/conffiles" "$stage/DEBIAN/conffiles"
install -m 0755 "$src/postinst" "$src/prerm" "$src/postrm" "$stage/DEBIAN/"
size=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
sed -e "s/@VERSION@/$debversion/" -e "s/@ARCH@/$arch/" -e "s/@SIZE@/$size/" "$src/control.in" >"$stage/DEBIAN/control"
(cd "$stage" && find usr etc -type f ! -path 'etc/*' -exec md5sum {} + | sort -k2 >DEBIAN/md5sums)

mkdir -p "$out"
deb=$out/subhost_${debversion}_${arch}.deb
dpkg-deb --root-owner-group -Zxz --build "$stage" "$deb" >/dev/null
echo "$deb"
