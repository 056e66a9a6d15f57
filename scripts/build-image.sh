#!/usr/bin/env bash
# Build the midge container image (Containerfile) for linux/amd64,
# linux/arm64 and linux/arm/v7 as one multi-arch manifest list, with buildah:
# no daemon needed.
#
#   scripts/build-image.sh [options]
#
# Options:
#   --tag NAME        the manifest list's name (default: localhost/midge:<version>)
#   --platform LIST   comma-separated subset of amd64,arm64,arm/v7 (default: all three)
#   --no-build        use the static binaries already in target/<triple>/release/
#   --archive FILE    also write the manifest list and its images as an OCI archive
#                     (`podman load -i FILE` loads the host's platform;
#                     `skopeo copy --all oci-archive:FILE docker://...` pushes all)
#   -h, --help        this text
#
# Steps: scripts/cross-build.sh builds the static musl binaries
# (x86_64-unknown-linux-musl, aarch64-unknown-linux-musl,
# armv7-unknown-linux-musleabihf; it installs the cross compilers and rustup
# targets it misses), the build context is laid out in target/image/context/
# (what the Containerfile expects), then `buildah build --manifest` makes one
# image per platform. Nothing is executed inside the image, so no emulator is
# needed for the ARM images. The image's creation time is the last commit's,
# so an unchanged tree gives the same image IDs.
#
# The result is in the local containers storage that podman shares:
#   podman run --rm -p 1883:1883 localhost/midge:<version> mosquitto -c /mosquitto-no-auth.conf
#   buildah manifest push --all localhost/midge:<version> docker://registry.example/midge:<version>
#
# Exit status: 0 built; 1 anything missing or failed (with the reason).
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION=$(sed -n 's/^version *= *"\(.*\)"/\1/p' Cargo.toml | head -n 1)
TAG="localhost/midge:$VERSION"
PLATFORMS="amd64,arm64,arm/v7"
BUILD=1
ARCHIVE=""
usage() { sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
  case "$1" in
    --tag) TAG="${2:?--tag needs a name}"; shift 2 ;;
    --platform) PLATFORMS="${2:?--platform needs a list}"; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    --archive) ARCHIVE="${2:?--archive needs a file}"; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "build-image: unknown argument $1" >&2; usage >&2; exit 1 ;;
  esac
done

die() { echo "build-image: $*" >&2; exit 1; }

command -v buildah >/dev/null 2>&1 \
  || die "buildah not found (Debian: apt-get install buildah; it needs no daemon)"

# The binaries that ship, and their eclipse-mosquitto names.
SBIN=(midge)
BIN=(midge_pub midge_sub midge_rr midge_passwd)

# platform -> Rust target, and the build-context directory the
# Containerfile's COPY bin/${TARGETARCH}${TARGETVARIANT}/ reads.
triple_of() {
  case "$1" in
    amd64) echo x86_64-unknown-linux-musl ;;
    arm64) echo aarch64-unknown-linux-musl ;;
    arm/v7) echo armv7-unknown-linux-musleabihf ;;
    *) return 1 ;;
  esac
}
key_of() { echo "${1//\//}"; }   # amd64, arm64, armv7

IFS=, read -r -a PLATS <<<"$PLATFORMS"
TRIPLES=()
for p in "${PLATS[@]}"; do
  t=$(triple_of "$p") || die "unknown platform $p (amd64, arm64, arm/v7)"
  TRIPLES+=("$t")
done

TARGET_DIR="${CARGO_TARGET_DIR:-target}"
if [ "$BUILD" = 1 ]; then
  sel=()
  for b in "${SBIN[@]}" "${BIN[@]}"; do sel+=(--bin "$b"); done
  scripts/cross-build.sh --no-deb "${sel[@]}" "${TRIPLES[@]}" \
    || die "scripts/cross-build.sh could not build every target (see its summary above)"
fi

CTX="$TARGET_DIR/image/context"
rm -rf "$CTX"
mkdir -p "$CTX/rootfs/etc" "$CTX/mosquitto/config" "$CTX/mosquitto/data" "$CTX/mosquitto/log"
install -m 644 Containerfile "$CTX/Containerfile"
install -m 644 conf/container/passwd conf/container/group "$CTX/rootfs/etc/"
install -m 644 conf/container/mosquitto-no-auth.conf "$CTX/rootfs/"
install -m 644 conf/container/mosquitto.conf "$CTX/mosquitto/config/"
for i in "${!PLATS[@]}"; do
  t="${TRIPLES[i]}"
  dir="$CTX/bin/$(key_of "${PLATS[i]}")"
  mkdir -p "$dir/usr/sbin" "$dir/usr/bin"
  for b in "${SBIN[@]}"; do
    [ -f "$TARGET_DIR/$t/release/$b" ] || die "no $TARGET_DIR/$t/release/$b (run without --no-build)"
    install -m 755 "$TARGET_DIR/$t/release/$b" "$dir/usr/sbin/$b"
    ln -s "$b" "$dir/usr/sbin/${b/midge/mosquitto}"
  done
  for b in "${BIN[@]}"; do
    [ -f "$TARGET_DIR/$t/release/$b" ] || die "no $TARGET_DIR/$t/release/$b (run without --no-build)"
    install -m 755 "$TARGET_DIR/$t/release/$b" "$dir/usr/bin/$b"
    ln -s "$b" "$dir/usr/bin/${b/midge/mosquitto}"
  done
done
find "$CTX" -type d -exec chmod 755 {} +

EPOCH=$(git log -1 --format=%ct 2>/dev/null || echo 0)

# The images of a manifest list: the list's own entry in the storage and the
# image of each platform.
images_of_list() {
  local m digest id name
  m=$(buildah manifest inspect "$1" 2>/dev/null) || return 0
  buildah images --all --no-trunc --format '{{.Digest}} {{.ID}} {{.Name}}:{{.Tag}}' \
    | while read -r digest id name; do
      case "$m" in *"\"$digest\""*) echo "$id" ;; esac
      if [ "$name" = "$1" ]; then echo "$id"; fi
    done | sort -u
}
# A name can hold an image or a manifest list; start from neither, and
# remember what the previous build of this name left, to remove it after.
OLD_IMAGES=$(images_of_list "$TAG")
if buildah manifest inspect "$TAG" >/dev/null 2>&1; then
  buildah manifest rm "$TAG" >/dev/null
fi
buildah rmi "$TAG" >/dev/null 2>&1 || true
plat_args=()
for p in "${PLATS[@]}"; do plat_args+=("linux/$p"); done
echo "== buildah build --platform $(IFS=,; echo "${plat_args[*]}") --manifest $TAG"
buildah build --quiet --format oci --timestamp "$EPOCH" \
  --platform "$(IFS=,; echo "${plat_args[*]}")" \
  --build-arg VERSION="$VERSION" \
  --manifest "$TAG" -f "$CTX/Containerfile" "$CTX" >/dev/null \
  || die "buildah build failed"

# The previous build's images, unless this one made the same (an unchanged
# tree) or a container still uses them.
NEW_IMAGES=$(images_of_list "$TAG")
for id in $OLD_IMAGES; do
  case " $(echo $NEW_IMAGES) " in *" $id "*) continue ;; esac
  buildah rmi "$id" >/dev/null 2>&1 || true
done

if [ -n "$ARCHIVE" ]; then
  rm -f "$ARCHIVE"
  buildah manifest push --quiet --all "$TAG" "oci-archive:$ARCHIVE:$TAG" >/dev/null \
    || die "writing $ARCHIVE failed"
fi

echo "== $TAG"
printf '%-14s %-73s %12s\n' platform image size
manifest=$(buildah manifest inspect "$TAG")
# Size as `podman images` (and `docker images`) shows it: the unpacked layer.
buildah images --all --no-trunc --format '{{.Digest}} {{.ID}} {{.Size}}' \
  | while read -r digest id size; do
    case "$manifest" in *"\"$digest\""*) ;; *) continue ;; esac
    plat=$(buildah inspect --type image \
      --format '{{.OCIv1.Architecture}}{{if .OCIv1.Variant}}/{{.OCIv1.Variant}}{{end}}' "$id")
    printf '%-14s %-73s %12s\n' "$plat" "$digest" "$size"
  done | sort
[ -n "$ARCHIVE" ] && echo "archive: $ARCHIVE ($(stat -c %s "$ARCHIVE") bytes)"
exit 0
