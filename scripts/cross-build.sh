#!/usr/bin/env bash
# Cross-compile midge for Raspberry Pi and build the Debian packages.
#
#   scripts/cross-build.sh [options] [target...]
#
# Targets (full triples or the short names in brackets); default: all four
# ARM targets plus the native amd64 build for its .deb:
#   aarch64-unknown-linux-gnu       [aarch64]       Pi 3/4/5, 64-bit Pi OS bookworm+ (glibc >= 2.34)
#   armv7-unknown-linux-gnueabihf   [armv7]         Pi 2/3/4, 32-bit Pi OS bookworm+ (glibc >= 2.34)
#   arm-unknown-linux-musleabihf    [armv6]         static, Pi Zero/1 and every 32-bit Pi OS
#   aarch64-unknown-linux-musl      [aarch64-musl]  static, any 64-bit ARM Linux
#   x86_64-unknown-linux-gnu        [amd64]         the build machine, for the amd64 .deb
# and, for the container image (scripts/build-image.sh), never by default:
#   x86_64-unknown-linux-musl       [amd64-musl]    static amd64
#   armv7-unknown-linux-musleabihf  [armv7-musl]    static ARMv7 (Rust $MIDGE_PINNED_TOOLCHAIN)
#
# Options:
#   --profile NAME   cargo profile (default: release)
#   --bin NAME       build only this binary (repeatable; default: every [[bin]])
#   --no-deb         do not build .deb packages
#   --no-setup       never run apt-get or rustup; only check what is there
#   -h, --help       this text
#
# Output: target/dist/<target>/ (the binaries that ship, never midge_bench),
# target/dist/midge-<version>-<target>.tar.gz (those binaries, conf/ and
# scripts/install.sh) and target/dist/deb/*.deb (under $CARGO_TARGET_DIR
# instead of target/ when that is set). The summary gives each target's
# stripped midge size in bytes, and for aarch64-unknown-linux-gnu whether it
# is under the 2 MiB (2 097 152 bytes) budget a Pi image is held to.
#
# Debian cross packages and rustup targets are installed when missing (apt
# needs root). ARMv6 has no std library on recent toolchains, so that target
# (or any target the default toolchain lacks) is built with a pinned toolchain,
# $MIDGE_PINNED_TOOLCHAIN (default 1.90.0).
#
# Exit status: 0 when every requested target was built; 2 when some target
# could not be set up (missing toolchain, packages, network) and was skipped,
# each with its reason printed; 1 when a build failed.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

PINNED="${MIDGE_PINNED_TOOLCHAIN:-1.90.0}"
PROFILE=release
NO_DEB=0
NO_SETUP=0
BINS=()
TARGETS=()
ALL_ARM=(aarch64-unknown-linux-gnu armv7-unknown-linux-gnueabihf
  arm-unknown-linux-musleabihf aarch64-unknown-linux-musl)

usage() { sed -n '2,/^set -uo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
  case "$1" in
    --profile) PROFILE="${2:?--profile needs a name}"; shift 2 ;;
    --bin) BINS+=("${2:?--bin needs a name}"); shift 2 ;;
    --no-deb) NO_DEB=1; shift ;;
    --no-setup) NO_SETUP=1; shift ;;
    -h|--help) usage; exit 0 ;;
    -*) echo "cross-build: unknown option $1" >&2; usage >&2; exit 1 ;;
    *) TARGETS+=("$1"); shift ;;
  esac
done

canonical() {
  case "$1" in
    aarch64|arm64) echo aarch64-unknown-linux-gnu ;;
    armv7|armhf) echo armv7-unknown-linux-gnueabihf ;;
    armv6|pi-zero|pizero) echo arm-unknown-linux-musleabihf ;;
    aarch64-musl) echo aarch64-unknown-linux-musl ;;
    armv7-musl) echo armv7-unknown-linux-musleabihf ;;
    amd64-musl|x86_64-musl) echo x86_64-unknown-linux-musl ;;
    amd64|x86_64|host) echo x86_64-unknown-linux-gnu ;;
    *) echo "$1" ;;
  esac
}

if [ ${#TARGETS[@]} -eq 0 ]; then
  TARGETS=("${ALL_ARM[@]}")
  [ "$NO_DEB" = 0 ] && TARGETS+=(x86_64-unknown-linux-gnu)
fi
for i in "${!TARGETS[@]}"; do TARGETS[i]=$(canonical "${TARGETS[i]}"); done

TARGET_DIR="${CARGO_TARGET_DIR:-target}"
DIST="$TARGET_DIR/dist"
VERSION=$(sed -n 's/^version *= *"\(.*\)"/\1/p' Cargo.toml | head -n 1)
# The build directory of a cargo profile: "dev" builds into debug/.
OUT_SUBDIR="$PROFILE"
[ "$PROFILE" = dev ] && OUT_SUBDIR=debug
# A developer tool, never shipped.
NOT_SHIPPED=" midge_bench "

declare -A RESULT      # target -> "built" | "skipped: why" | "FAILED: why"
declare -A TOOLCHAIN   # target -> "" (default) or a pinned version

# Debian packages each target needs: "command-that-must-exist package...".
apt_needs() {
  case "$1" in
    aarch64-unknown-linux-gnu | aarch64-unknown-linux-musl)
      echo "aarch64-linux-gnu-gcc /usr/aarch64-linux-gnu/include/stdio.h gcc-aarch64-linux-gnu libc6-dev-arm64-cross" ;;
    armv7-unknown-linux-gnueabihf | arm-unknown-linux-musleabihf | armv7-unknown-linux-musleabihf)
      echo "arm-linux-gnueabihf-gcc /usr/arm-linux-gnueabihf/include/stdio.h gcc-arm-linux-gnueabihf libc6-dev-armhf-cross" ;;
    x86_64-unknown-linux-gnu) echo "cc /usr/include/stdio.h gcc libc6-dev" ;;
    x86_64-unknown-linux-musl) echo "musl-gcc /usr/include/x86_64-linux-musl/stdio.h musl-tools musl-dev" ;;
    *) echo "" ;;
  esac
}

APT_UPDATED=0
WHY=""
# Make sure the C cross compiler and libc headers of a target exist.
# Sets WHY and returns 1 when they cannot be had.
ensure_apt() {
  local t="$1" need cmd hdr pkgs
  need=$(apt_needs "$t")
  if [ -z "$need" ]; then
    WHY="unknown target (supported: ${ALL_ARM[*]} x86_64-unknown-linux-gnu x86_64-unknown-linux-musl armv7-unknown-linux-musleabihf)"
    return 1
  fi
  read -r cmd hdr pkgs <<<"$need"
  if command -v "$cmd" >/dev/null 2>&1 && [ -e "$hdr" ]; then
    return 0
  fi
  if [ "$NO_SETUP" = 1 ]; then
    WHY="$cmd or $hdr missing (install: apt-get install $pkgs)"
    return 1
  fi
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    WHY="$cmd or $hdr missing and not root with apt-get (run: sudo apt-get install $pkgs)"
    return 1
  fi
  if [ "$APT_UPDATED" = 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null 2>&1 || true
    APT_UPDATED=1
  fi
  # shellcheck disable=SC2086
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $pkgs >/dev/null 2>&1; then
    WHY="apt-get install $pkgs failed (no network or no such package?)"
    return 1
  fi
  if ! command -v "$cmd" >/dev/null 2>&1 || [ ! -e "$hdr" ]; then
    WHY="$cmd still missing after apt-get install $pkgs"
    return 1
  fi
}

has_target() { # toolchain ("" = default) target
  local tc=()
  [ -n "$1" ] && tc=("+$1")
  rustup "${tc[@]}" target list --installed 2>/dev/null | grep -qx "$2"
}

# Find a toolchain with the Rust std library of target $1: the default one,
# else the pinned one. Sets TOOLCHAIN[$1]; sets WHY and returns 1 when
# neither can be had.
ensure_rust_target() {
  local t="$1"
  if ! command -v rustup >/dev/null 2>&1; then
    if [ -d "$(rustc --print target-libdir --target "$t" 2>/dev/null)" ]; then
      TOOLCHAIN[$t]=""
      return 0
    fi
    WHY="no rustup, and this rustc has no std library for $t"
    return 1
  fi
  if has_target "" "$t"; then TOOLCHAIN[$t]=""; return 0; fi
  if has_target "$PINNED" "$t"; then TOOLCHAIN[$t]="$PINNED"; return 0; fi
  if [ "$NO_SETUP" = 1 ]; then
    WHY="rust std for $t not installed (run: rustup target add $t, or rustup toolchain install $PINNED --profile minimal --target $t)"
    return 1
  fi
  if rustup target add "$t" >/dev/null 2>&1 && has_target "" "$t"; then
    TOOLCHAIN[$t]=""
    return 0
  fi
  echo "  the default toolchain has no $t std library for download; trying Rust $PINNED" >&2
  if rustup toolchain install "$PINNED" --profile minimal --target "$t" >/dev/null 2>&1 \
    && has_target "$PINNED" "$t"; then
    TOOLCHAIN[$t]="$PINNED"
    return 0
  fi
  WHY="rust std for $t could not be downloaded, neither for Rust $(rustc --version 2>/dev/null | cut -d' ' -f2) nor for $PINNED (offline?)"
  return 1
}

# Build target $1; fills $DIST/$1 with the shipped binaries.
build_target() {
  local t="$1" tc=() sel=() exe name out json status
  [ -n "${TOOLCHAIN[$t]}" ] && tc=("+${TOOLCHAIN[$t]}")
  if [ ${#BINS[@]} -eq 0 ]; then
    sel=(--bins)
  else
    for name in "${BINS[@]}"; do sel+=(--bin "$name"); done
  fi
  # The release profile aborts on panic, so no Rust frame is ever unwound:
  # its unwind tables (~45 KB of .eh_frame on aarch64) are dead weight in
  # the Pi budget. Only for the release profile: a test build unwinds, and
  # rustc refuses panic=unwind without them. The variable names the target,
  # so build scripts and proc macros built for the host keep theirs.
  local flags_var="CARGO_TARGET_$(echo "$t" | tr 'a-z-' 'A-Z_')_RUSTFLAGS" flags=()
  if [ "$PROFILE" = release ] && [ "$t" != x86_64-unknown-linux-gnu ]; then
    flags=("$flags_var=${!flags_var:+${!flags_var} }-C force-unwind-tables=no")
  fi
  echo "== $t: ${flags[*]:+${flags[*]} }cargo ${tc[*]} build --profile $PROFILE --target $t ${sel[*]}"
  json=$(mktemp)
  local start=$SECONDS
  env "${flags[@]}" cargo "${tc[@]}" build --profile "$PROFILE" --target "$t" "${sel[@]}" \
    --message-format=json-render-diagnostics >"$json"
  status=$?
  if [ $status -ne 0 ]; then
    rm -f "$json"
    RESULT[$t]="FAILED: cargo build exited with $status (see the errors above)"
    return 1
  fi
  RESULT[$t]="built in $((SECONDS - start)) s${TOOLCHAIN[$t]:+ with Rust ${TOOLCHAIN[$t]}}"
  # A partial build (--bin) leaves the complete sets in dist/ alone.
  if [ ${#BINS[@]} -gt 0 ]; then
    rm -f "$json"
    return 0
  fi
  out="$DIST/$t"
  rm -rf "$out"
  mkdir -p "$out"
  # The executables cargo reports are exactly the [[bin]]s just built.
  while IFS= read -r exe; do
    name=$(basename "$exe")
    case "$NOT_SHIPPED" in *" $name "*) continue ;; esac
    cp "$exe" "$out/$name"
  done < <(grep -o '"executable":"[^"]*"' "$json" | sed 's/^"executable":"//; s/"$//' | sort -u)
  rm -f "$json"
  if [ ! -f "$out/midge" ]; then
    RESULT[$t]="FAILED: cargo reported no midge executable"
    return 1
  fi
  # One file to download per target: the binaries, the example config, the
  # systemd unit and scripts/install.sh, laid out so that
  # `sudo BIN_DIR=. scripts/install.sh` works in the unpacked directory.
  local stage pkg
  stage=$(mktemp -d)
  pkg="$stage/midge-$VERSION-$t"
  mkdir -p "$pkg/conf/deb" "$pkg/scripts"
  cp "$out"/* "$pkg/"
  cp conf/midge.conf conf/midge.service "$pkg/conf/"
  # install.sh shares the package's config layout and user set-up.
  cp conf/deb/postinst conf/deb/conf.d-README "$pkg/conf/deb/"
  cp scripts/install.sh scripts/deploy-conf.sh "$pkg/scripts/"
  tar -czf "$DIST/midge-$VERSION-$t.tar.gz" -C "$stage" "midge-$VERSION-$t"
  rm -rf "$stage"
}

mkdir -p "$DIST"
for t in "${TARGETS[@]}"; do
  if [ -n "${RESULT[$t]:-}" ]; then continue; fi
  if ! ensure_apt "$t" || ! ensure_rust_target "$t"; then
    RESULT[$t]="skipped: $WHY"
    echo "== $t: skipped: $WHY" >&2
    continue
  fi
  build_target "$t"
done

# Debian packages: which build goes into which architecture's .deb.
#   arm64: aarch64 glibc (faster allocator; Pi OS bookworm and newer).
#   armhf: the static ARMv6 build, because Raspberry Pi OS's armhf is ARMv6
#          and an ARMv7 binary dies with SIGILL on a Pi Zero/1; the ARMv7
#          build is used only when the ARMv6 one is not available.
declare -A DEB_FROM
built() { local r="${RESULT[$1]:-}"; [ "${r#built}" != "$r" ]; }
if built aarch64-unknown-linux-gnu; then DEB_FROM[arm64]=aarch64-unknown-linux-gnu; fi
if built arm-unknown-linux-musleabihf; then
  DEB_FROM[armhf]=arm-unknown-linux-musleabihf
elif built armv7-unknown-linux-gnueabihf; then
  DEB_FROM[armhf]=armv7-unknown-linux-gnueabihf
  echo "warning: the armhf .deb uses the ARMv7 build: it will not run on a Pi Zero/1" >&2
fi
if built x86_64-unknown-linux-gnu; then DEB_FROM[amd64]=x86_64-unknown-linux-gnu; fi

DEBS=()
deb_failed=0
if [ "$NO_DEB" = 0 ] && [ ${#BINS[@]} -eq 0 ]; then
  for arch in amd64 arm64 armhf; do
    src="${DEB_FROM[$arch]:-}"
    [ -z "$src" ] && continue
    if deb=$(scripts/build-deb.sh --arch "$arch" --bin-dir "$DIST/$src" --out "$DIST/deb"); then
      DEBS+=("$deb")
    else
      echo "cross-build: building the $arch .deb failed" >&2
      deb_failed=1
    fi
  done
fi

echo
echo "== summary (profile $PROFILE, midge $VERSION)"
printf '%-32s %-10s %s\n' target "midge" result
rc=0
PI_SIZE=""
PI_BUDGET=2097152
for t in "${TARGETS[@]}"; do
  size="-"
  f="$TARGET_DIR/$t/$OUT_SUBDIR/midge"
  [ ${#BINS[@]} -eq 0 ] && f="$DIST/$t/midge"
  case "${RESULT[$t]}" in built*) [ -f "$f" ] && size=$(stat -c %s "$f") ;; esac
  printf '%-32s %-10s %s\n' "$t" "$size" "${RESULT[$t]}"
  [ "$t" = aarch64-unknown-linux-gnu ] && [ "$size" != "-" ] && PI_SIZE=$size
  case "${RESULT[$t]}" in
    FAILED*) rc=1 ;;
    skipped*) [ $rc -eq 0 ] && rc=2 ;;
  esac
done
# The 64-bit Pi build is held to a size budget (README "Sizes and emulated
# runs"). GNU ld aligns the end of its RELRO segment to 64 KiB, so the file
# grows in 64 KiB steps: a few KB of new code can cross the line at once.
if [ -n "$PI_SIZE" ]; then
  if [ "$PI_SIZE" -le "$PI_BUDGET" ]; then
    echo "aarch64 midge: $PI_SIZE bytes, under the 2 MiB budget ($PI_BUDGET) by $((PI_BUDGET - PI_SIZE))"
  else
    echo "aarch64 midge: $PI_SIZE bytes, OVER the 2 MiB budget ($PI_BUDGET) by $((PI_SIZE - PI_BUDGET))"
  fi
fi
if [ ${#DEBS[@]} -gt 0 ]; then
  echo "packages:"
  for d in "${DEBS[@]}"; do echo "  $d ($(stat -c %s "$d") bytes)"; done
fi
[ $deb_failed -eq 1 ] && rc=1
if [ ${#BINS[@]} -eq 0 ]; then
  echo "binaries: $DIST/<target>/ and $DIST/midge-$VERSION-<target>.tar.gz"
else
  echo "binaries: $TARGET_DIR/<target>/$OUT_SUBDIR/"
fi
exit $rc
