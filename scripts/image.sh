#!/usr/bin/env bash
# The operator's OCI image, built without a container engine or a registry: a root filesystem
# unpacked from Debian packages (what the binary needs, nothing else), the release binary on
# top, assembled into an OCI image layout by tests/image/oci-image (go-containerregistry).
#
#   scripts/image.sh [--binary PATH] [--out DIR]
#
# Writes DIR/image/ (an OCI image layout: oci-layout, index.json, blobs/sha256/*; the image is
# tagged with the crate's version) and DIR/image.oci.tar (the same layout as one tar file, an
# "OCI archive"). DIR is target/ by default. The binary is target/release/flotilla, built with
# `cargo build --release --locked` (a no-op when it is current); --binary takes another one
# (tests/image.rs passes the binary cargo test built). Environment: SOURCE_DATE_EPOCH (HEAD's time),
# IMAGE_SOURCE (the source label; https://github.com/flotilla-dev/flotilla), IMAGE_GZIP_LEVEL (6),
# FLOTILLA_CACHE (~/.cache/flotilla).
#
# The root filesystem: base-files (/etc/os-release, the directory skeleton), libc6 and libgcc-s1
# (the binary's dynamic loader and its NEEDED libraries, checked below with readelf), the
# gcc-N-base package libgcc-s1 depends on (its copyright), ca-certificates (kube-client falls back
# to the system's roots when a kubeconfig names no CA; the bundle is generated here as
# update-ca-certificates would), /etc/passwd and /etc/group with root, nonroot (65532) and
# nobody as distroless has them, and /etc/nsswitch.conf. No tzdata: the operator logs and
# compares times in UTC. The packages are whatever the host's apt sources serve as candidates
# (Debian's mirror; `apt-get update` first), downloaded once into $FLOTILLA_CACHE/debs and
# checked against apt's SHA-256; their versions are recorded in the image as distroless does
# (/var/lib/dpkg/status.d/<package>, which image scanners read) and in the label
# dev.flotilla.image.debian-packages.
#
# Reproducible where cheap: every file's mtime and the image's creation time are
# SOURCE_DATE_EPOCH (the commit time of HEAD unless set), owners are numeric, tar entries
# sorted, gzip without names or times; the same binary and packages give the same digests.
# Needs: apt-get, apt-cache, dpkg-deb, GNU tar, gzip, readelf, and Go (to build oci-image once).
set -euo pipefail
shopt -s inherit_errexit
umask 022
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
die() { echo "image: error: $*" >&2; exit 1; }
say() { echo "image: $*" >&2; }

OUT="$ROOT/target" BIN=""
while [ $# -gt 0 ]; do
  case "$1" in
    --out) OUT="${2:?--out needs a directory}"; shift 2 ;;
    --binary) BIN="${2:?--binary needs a path}"; shift 2 ;;
    -h|--help) sed -n '2,14p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
  esac
done

for tool in apt-get apt-cache dpkg dpkg-deb tar gzip readelf sha256sum; do
  command -v "$tool" >/dev/null 2>&1 \
    || die "$tool not found: the root filesystem is made from Debian packages, so this needs a Debian or Ubuntu host"
done

# Time each step: a message on stderr with the seconds it took.
t0=$(date +%s)
step() { local now; now=$(date +%s); say "$1 in $(( now - t0 ))s"; t0=$now; }

VERSION="$(sed -n 's/^version = "\(.*\)"$/\1/p' "$ROOT/Cargo.toml" | head -n 1)"
[ -n "$VERSION" ] || die "no version in $ROOT/Cargo.toml"
SOURCE="${IMAGE_SOURCE:-https://github.com/flotilla-dev/flotilla}"
if git -C "$ROOT" rev-parse --verify -q HEAD >/dev/null 2>&1; then
  REVISION="$(git -C "$ROOT" rev-parse HEAD)"
  git -C "$ROOT" diff --quiet HEAD -- 2>/dev/null || REVISION="$REVISION-dirty"
  SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-$(git -C "$ROOT" log -1 --format=%ct HEAD)}"
else
  REVISION="unknown"
  SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-0}"
fi
CREATED="$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ)"

# The binary, and the platform it is for (the Debian packages must be the same architecture).
if [ -z "$BIN" ]; then
  (cd "$ROOT" && cargo build --release --locked --bin flotilla) \
    || die "cargo build --release --locked --bin flotilla failed"
  BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/flotilla"
  step "release build"
fi
[ -x "$BIN" ] || die "$BIN is not an executable"
BIN="$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")"
ARCH="$(dpkg --print-architecture)"
case "$(readelf -h "$BIN" | sed -n 's/^ *Machine: *//p')" in
  *X86-64*) ELF_ARCH=amd64 ;;
  AArch64) ELF_ARCH=arm64 ;;
  *) die "$BIN: not an x86-64 or AArch64 ELF executable" ;;
esac
[ "$ELF_ARCH" = "$ARCH" ] || die "$BIN is for $ELF_ARCH but apt serves $ARCH packages"
bin_version="$("$BIN" --version)" || die "$BIN --version failed"
[ "$bin_version" = "flotilla $VERSION" ] || die "$BIN says '$bin_version', Cargo.toml says $VERSION"

FLOTILLA_CACHE="${FLOTILLA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/flotilla}"
DEBS="$FLOTILLA_CACHE/debs"
mkdir -p "$DEBS" "$OUT"
STAGE="$(mktemp -d "$OUT/.image.XXXXXX")"
trap 'rm -rf "$STAGE"' EXIT
RFS="$STAGE/rootfs"
mkdir -p "$RFS"

# records PACKAGE...: apt's candidate records of the packages (one apt-cache call: each takes
# about half a second), kept in RECORD[package]; a package apt does not know stops the build.
declare -A RECORD
records() {
  local out stanza pkg
  out="$(apt-cache show --no-all-versions "$@" 2>/dev/null)" || true
  while IFS= read -r -d '' stanza; do
    pkg="$(field Package <<<"$stanza")"
    [ -z "$pkg" ] || [ -n "${RECORD[$pkg]:-}" ] || RECORD[$pkg]="$stanza"
  done < <(printf '%s\n' "$out" | awk 'BEGIN { RS = ""; ORS = "\0" } { print }')
  for pkg in "$@"; do
    [ -n "${RECORD[$pkg]:-}" ] \
      || die "apt has no candidate for $pkg: run apt-get update (the image's packages come from Debian's mirror)"
  done
}
field() { sed -n "s/^$1: //p" | head -n 1; }

# deb PACKAGE: sets DEB to the path of the candidate .deb of PACKAGE in the cache (downloaded
# if absent or not the bytes apt's record names) and DEB_VERSION to its version.
deb() {
  local rec sha got dl
  rec="${RECORD[$1]}"
  DEB_VERSION="$(field Version <<<"$rec")" sha="$(field SHA256 <<<"$rec")"
  DEB="$DEBS/$(basename "$(field Filename <<<"$rec")")"
  if [ -z "$DEB_VERSION" ] || [ -z "$sha" ] || [ "$DEB" = "$DEBS/" ]; then
    die "apt's record of $1 lacks Version, SHA256 or Filename"
  fi
  if [ -f "$DEB" ] && [ "$(sha256sum <"$DEB" | cut -d' ' -f1)" = "$sha" ]; then return; fi
  dl="$(mktemp -d "$DEBS/.download.XXXXXX")"
  if ! (cd "$dl" && apt-get download -q=2 "$1=$DEB_VERSION") >"$dl/log" 2>&1; then
    cat "$dl/log" >&2; rm -rf "$dl"
    die "apt-get download $1=$DEB_VERSION failed"
  fi
  got="$(find "$dl" -name '*.deb' | head -n 1)"
  if [ -z "$got" ] || [ "$(sha256sum <"$got" | cut -d' ' -f1)" != "$sha" ]; then
    rm -rf "$dl"
    die "$1=$DEB_VERSION: the download does not match apt's SHA-256 $sha"
  fi
  mv -f "$got" "$DEB"
  rm -rf "$dl"
}

# The packages: libgcc-s1's copyright lives in the gcc-N-base it depends on.
records base-files libc6 libgcc-s1 ca-certificates
gcc_base="$(field Depends <<<"${RECORD[libgcc-s1]}" | grep -o 'gcc-[0-9]*-base' | head -n 1)" \
  || die "libgcc-s1 depends on no gcc-N-base package"
records "$gcc_base"
PACKAGES=(base-files libc6 libgcc-s1 "$gcc_base" ca-certificates)
mkdir -p "$RFS/var/lib/dpkg/status.d"
installed=()
for pkg in "${PACKAGES[@]}"; do
  deb "$pkg"
  dpkg-deb --fsys-tarfile "$DEB" | tar -x -p --no-same-owner -C "$RFS" \
    || die "cannot unpack $DEB"
  dpkg-deb -f "$DEB" >"$RFS/var/lib/dpkg/status.d/$pkg"
  [ "$pkg" != libc6 ] || glibc_have="${DEB_VERSION%%-*}"
  installed+=("$pkg=$DEB_VERSION")
done
step "Debian packages (${installed[*]})"

# What the packages' maintainer scripts would have done, and the users.
ln -sfn ../usr/lib/os-release "$RFS/etc/os-release"
mkdir -p "$RFS/etc/ssl/certs"
find "$RFS/usr/share/ca-certificates" -name '*.crt' | LC_ALL=C sort | while read -r crt; do
  # A certificate without a final newline gets one, as update-ca-certificates does.
  # shellcheck disable=SC1003
  sed -e '$a\' "$crt"
done >"$RFS/etc/ssl/certs/ca-certificates.crt"
certs="$(grep -c 'BEGIN CERTIFICATE' "$RFS/etc/ssl/certs/ca-certificates.crt" || true)"
[ "$certs" -ge 50 ] || die "the CA bundle has $certs certificates; ca-certificates unpacked wrong?"
cat >"$RFS/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
EOF
cat >"$RFS/etc/group" <<'EOF'
root:x:0:
nobody:x:65534:
nonroot:x:65532:
EOF
cat >"$RFS/etc/nsswitch.conf" <<'EOF'
passwd: files
group: files
shadow: files
hosts: files dns
networks: files
protocols: files
services: files
EOF
mkdir -p "$RFS/home/nonroot"
chmod 0700 "$RFS/home/nonroot"

# in_root PATH: PATH is a file of the root filesystem, symlinks followed inside it.
in_root() {
  local p="$1" n=0 target
  while [ -L "$RFS$p" ] && [ "$n" -lt 10 ]; do
    target="$(readlink "$RFS$p")"
    case "$target" in /*) p="$target" ;; *) p="$(dirname "$p")/$target" ;; esac
    n=$((n + 1))
  done
  [ -f "$RFS$p" ]
}
interp="$(readelf -l "$BIN" | sed -n 's/.*Requesting program interpreter: \(.*\)]$/\1/p')"
[ -n "$interp" ] || die "$BIN names no program interpreter (is it dynamically linked?)"
in_root "$interp" || die "the root filesystem lacks $BIN's dynamic loader $interp"
for lib in $(readelf -d "$BIN" | sed -n 's/.*Shared library: \[\(.*\)\]$/\1/p'); do
  found=""
  for dir in "$RFS"/lib/*-linux-gnu "$RFS"/usr/lib/*-linux-gnu; do
    in_root "${dir#"$RFS"}/$lib" && found=1
  done
  [ -n "$found" ] || die "the root filesystem lacks $lib, which $BIN needs"
done
glibc_needed="$(readelf -V -W "$BIN" | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' | sort -V | tail -n 1)"
[ "$(printf '%s\n%s\n' "$glibc_needed" "$glibc_have" | sort -V | tail -n 1)" = "$glibc_have" ] \
  || die "$BIN needs glibc $glibc_needed, the packages have $glibc_have"
install -D -m 0755 "$BIN" "$STAGE/app/usr/local/bin/flotilla"
step "root filesystem ($certs CA certificates; loader $interp; glibc $glibc_have >= $glibc_needed)"

# The layers: the Debian root filesystem, then the binary (a new binary changes only the second).
tarc() {
  tar --sort=name --format=posix --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
    --mtime="@$SOURCE_DATE_EPOCH" --numeric-owner --owner=0 --group=0 "$@"
}
(cd "$RFS" && LC_ALL=C ls -A) >"$STAGE/top"
tarc -C "$RFS" --exclude=home/nonroot -cf "$STAGE/base.tar" -T "$STAGE/top"
tarc -C "$RFS" --owner=65532 --group=65532 -rf "$STAGE/base.tar" home/nonroot
tarc -C "$STAGE/app" -cf "$STAGE/app.tar" usr
gzip -n -"${IMAGE_GZIP_LEVEL:-6}" "$STAGE/base.tar" &
gzip -n -"${IMAGE_GZIP_LEVEL:-6}" "$STAGE/app.tar" || { wait; die "gzip failed"; }
wait $! || die "gzip failed"
step "layers ($(du -h "$STAGE/base.tar.gz" | cut -f1) + $(du -h "$STAGE/app.tar.gz" | cut -f1) gzipped)"

OCI_IMAGE="$("$ROOT/tests/image/oci-image/build.sh")"
step "oci-image tool"
digest="$("$OCI_IMAGE" -layout "$STAGE/image" -created "$CREATED" -platform "linux/$ARCH" -tag "$VERSION" \
  -user 65532:65532 -workdir /home/nonroot \
  -entrypoint /usr/local/bin/flotilla -cmd run -port 8080/tcp \
  -env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  -env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
  -label "org.opencontainers.image.title=flotilla" \
  -label "org.opencontainers.image.source=$SOURCE" \
  -label "org.opencontainers.image.version=$VERSION" \
  -label "org.opencontainers.image.revision=$REVISION" \
  -label "org.opencontainers.image.created=$CREATED" \
  -label "org.opencontainers.image.licenses=Apache-2.0" \
  -label "dev.flotilla.image.debian-packages=${installed[*]}" \
  -layer "$STAGE/base.tar.gz=Debian packages: ${installed[*]}; /etc/passwd, /etc/group (nonroot 65532)" \
  -layer "$STAGE/app.tar.gz=/usr/local/bin/flotilla $VERSION ($REVISION)")"
# go-containerregistry writes blobs 0600 and index.json 0755: every reader may read a layout.
find "$STAGE/image" -type d -exec chmod 0755 {} + -o -type f -exec chmod 0644 {} +
tarc -C "$STAGE/image" -cf "$STAGE/image.oci.tar" oci-layout index.json blobs
rm -rf "$OUT/image"
mv "$STAGE/image" "$OUT/image"
mv -f "$STAGE/image.oci.tar" "$OUT/image.oci.tar"
step "OCI layout and archive"

echo "image: flotilla:$VERSION $digest (linux/$ARCH, revision $REVISION, created $CREATED)" >&2
echo "image: layout $OUT/image (oci:$OUT/image:$VERSION), archive $OUT/image.oci.tar ($(du -h "$OUT/image.oci.tar" | cut -f1))" >&2
echo "$digest"
