#!/usr/bin/env bash
# ops/deps.sh [BUILD_DIR] -- fetch, verify and build nhgw's vendored C libraries
# (architecture.md §10) as static libs under BUILD_DIR (default: <repo>/build/deps):
#
#   lib/libcrypto.a lib/libssl.a   BoringSSL (android-platform-external-boringssl 13.0.0+r24-2)
#   lib/libmsgpackc.a              msgpack-c 4.0.0-3
#   lib/libhiredis.a               hiredis 1.2.0-6 (trixie)
#   lib/libllhttp.a                llhttp 8.1 from Debian's node-llhttp C sources
#   include/                       openssl/ msgpack.h msgpack/ hiredis/ llhttp.h
#   deps.mk                        DEPS_CFLAGS / DEPS_LIBS for the project's Makefile
#
# Source tarballs come from ../shared/deps (or $NHGW_DEPS_CACHE) when present, otherwise
# from `apt-get source` through a private apt configuration under BUILD_DIR/apt; the
# system's apt configuration is never touched. Every tarball used is checked against
# ops/deps.sha256. Neither Go nor cmake is needed.
#
# A relative BUILD_DIR is taken from the current directory.
# Env: NHGW_DEPS_CACHE (tarball dir), CC / CXX (default cc / c++), NHGW_JOBS (default nproc).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${1:-$ROOT/build/deps}
mkdir -p "$BUILD"
BUILD=$(cd "$BUILD" && pwd)
CACHE=${NHGW_DEPS_CACHE:-$ROOT/../shared/deps}
SUMS=$ROOT/ops/deps.sha256
CC=${CC:-cc}
CXX=${CXX:-c++}
JOBS=${NHGW_JOBS:-$(nproc 2>/dev/null || echo 2)}

# Bump when a build step or flag below changes: every stamp then stops matching and the
# libraries are rebuilt.
RECIPE=1

BSSL_PKG=android-platform-external-boringssl BSSL_VER=13.0.0+r24-2
MSGPACK_PKG=msgpack-c MSGPACK_VER=4.0.0-3
HIREDIS_PKG=hiredis HIREDIS_VER=1.2.0-6
LLHTTP_SRC=/usr/share/llhttp
LLHTTP_HDR=/usr/share/include/llhttp/llhttp.h

say() { echo "deps: $*"; }
die() { echo "deps: ERROR: $*" >&2; exit 1; }
now_ms() { date +%s%3N; }
since() { local d=$(( $(now_ms) - $1 )); printf '%d.%ds' $((d / 1000)) $((d % 1000 / 100)); }

[ -r "$SUMS" ] || die "missing $SUMS"

# Two builds sharing one BUILD_DIR (say make and CI) must not interleave.
exec 9>"$BUILD/.lock"
flock 9

mkdir -p "$BUILD/lib" "$BUILD/include" "$BUILD/stamps" "$BUILD/logs" "$BUILD/src"

# ---------------------------------------------------------------- stamps

# A stamp records what a library was built from: if it still matches (and the outputs
# exist) the library is up to date. The compiler's identity is part of it because a
# compiler upgrade can change generated code.
CC_ID=
stamp_text() { # dep source-digest
  [ -n "$CC_ID" ] || CC_ID="$("$CC" --version 2>/dev/null | head -n1); $("$CXX" --version 2>/dev/null | head -n1)"
  printf 'recipe=%s\nsource=%s\ncompiler=%s\narch=%s\n' "$RECIPE" "$2" "$CC_ID" "$(uname -m)"
}
up_to_date() { # dep digest outputs...
  local dep=$1 digest=$2 f; shift 2
  for f in "$@"; do [ -e "$BUILD/$f" ] || return 1; done
  [ -f "$BUILD/stamps/$dep" ] && [ "$(cat "$BUILD/stamps/$dep")" = "$(stamp_text "$dep" "$digest")" ]
}
write_stamp() { stamp_text "$1" "$2" >"$BUILD/stamps/$1"; }

# The pinned sum of a file named in ops/deps.sha256.
pinned_sum() {
  local s
  s=$(awk -v f="$1" '$2 == f || $2 == "*" f { print $1 }' "$SUMS")
  [ -n "$s" ] || die "$1 is not pinned in $SUMS"
  echo "$s"
}

# Files of Debian source package $1 version $2 as pinned: .dsc, .debian.tar.*, .orig.tar.*
pinned_files() {
  local upstream=${2%-*}
  awk -v a="$1_$2." -v b="$1_$upstream.orig." '
    { f = $2; sub(/^\*/, "", f) }
    index(f, a) == 1 || index(f, b) == 1 { print f }' "$SUMS"
}

# ---------------------------------------------------------------- fetching

# Private apt setup: deb-src entries for the machine's own Debian mirrors, in files and
# dirs under BUILD_DIR/apt, handed to apt with -o options so /etc/apt and /var/lib/apt
# stay untouched (and so this works without root, too).
APT_DIR=$BUILD/apt
APT_OPTS=()
APT_READY=
apt_setup() {
  [ -n "$APT_READY" ] && return 0
  command -v apt-get >/dev/null || die "apt-get not found; put the source tarballs in $CACHE"
  mkdir -p "$APT_DIR/lists/partial" "$APT_DIR/cache/archives/partial" "$APT_DIR/parts"
  local list=$APT_DIR/sources.list
  derive_deb_src >"$list"
  [ -s "$list" ] || die "no Debian mirror found in /etc/apt/sources.list{,.d/*.list,.d/*.sources} to derive deb-src entries from"
  APT_OPTS=(
    -o Dir::Etc::SourceList="$list"
    -o Dir::Etc::SourceParts="$APT_DIR/parts"
    -o Dir::State::Lists="$APT_DIR/lists"
    -o Dir::Cache="$APT_DIR/cache"
    -o Acquire::Languages=none
  )
  # apt drops to the _apt user for downloads, which cannot write into a root-owned
  # build tree; this fetch is checksummed against ops/deps.sha256 anyway.
  [ "$(id -u)" -ne 0 ] || APT_OPTS+=(-o APT::Sandbox::User=root)
  say "apt: updating private deb-src lists ($(grep -c '^deb-src' "$list") entries, see $list)"
  if ! apt-get "${APT_OPTS[@]}" -q update >"$BUILD/logs/apt-update.log" 2>&1; then
    # One dead mirror or suite need not be fatal: the source download below reports
    # precisely what could not be had.
    echo "deps: warning: apt-get update reported errors:" >&2
    grep -E '^(E|W):' "$BUILD/logs/apt-update.log" >&2 || tail -n 20 "$BUILD/logs/apt-update.log" >&2
  fi
  APT_READY=1
}

# Print one-line deb-src entries, suites bookworm and trixie, for every Debian archive
# URI among the system's enabled deb / deb-src sources. An entry counts as a Debian
# archive when one of its suites is a plain release name; that leaves out
# debian-security (bookworm-security), -updates-only entries and third-party repos
# whose suites are not Debian's (e.g. NodeSource's "nodistro").
derive_deb_src() {
  local files=() f
  [ -f /etc/apt/sources.list ] && files+=(/etc/apt/sources.list)
  for f in /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] && files+=("$f")
  done
  [ ${#files[@]} -gt 0 ] || return 0
  local codename=
  # shellcheck disable=SC1091
  codename=$(. /etc/os-release 2>/dev/null && echo "${VERSION_CODENAME:-}") || true
  awk -v codename="$codename" '
    function debian_suite(s) {
      return s == codename || s ~ /^(bookworm|trixie|forky|sid|stable|oldstable|testing|unstable)$/
    }
    function emit(uri, suites, signed,   n, i, a, ok) {
      n = split(suites, a, /[ \t]+/); ok = 0
      for (i = 1; i <= n; i++) if (debian_suite(a[i])) ok = 1
      if (!ok || uri == "" || (uri in seen)) return
      seen[uri] = 1
      opt = (signed ~ /^\//) ? " [signed-by=" signed "]" : ""
      print "deb-src" opt " " uri " bookworm main"
      print "deb-src" opt " " uri " trixie main"
    }
    function flush() {
      if (types ~ /(^|[ \t])deb(-src)?([ \t]|$)/ && tolower(enabled) != "no")
        for (j = 1; j <= nuris; j++) emit(uris[j], suites, signed)
      types = ""; suites = ""; signed = ""; enabled = ""; nuris = 0
    }
    FNR == 1 { if (NR > 1 && deb822) flush(); deb822 = (FILENAME ~ /\.sources$/) }
    /^[ \t]*#/ { next }
    deb822 && /^[ \t]*$/ { flush(); next }
    deb822 && /^[A-Za-z-]+:/ {
      key = tolower($1); sub(/:$/, "", key)
      val = $0; sub(/^[^:]*:[ \t]*/, "", val)
      if (key == "types") types = val
      else if (key == "uris") nuris = split(val, uris, /[ \t]+/)
      else if (key == "suites") suites = val
      else if (key == "signed-by") signed = val
      else if (key == "enabled") enabled = val
      next
    }
    deb822 { next }   # continuation lines (inline keys) are not needed
    $1 == "deb" || $1 == "deb-src" {
      i = 2; signed = ""
      if ($2 ~ /^\[/) {   # [opt=val ...] may span several fields
        for (; i <= NF; i++) {
          o = $i; gsub(/[\[\]]/, "", o)
          if (tolower(o) ~ /^signed-by=/) { sub(/^[^=]*=/, "", o); signed = o }
          if ($i ~ /\]$/) { i++; break }
        }
      }
      emit($i, $(i + 1), signed)
    }
    END { if (deb822) flush() }
  ' "${files[@]}"
}

# Make sure the pinned files of source package $1=$2 are on hand and intact; sets
# FETCHED_DIR to the directory holding them.
DL_DIR=$BUILD/downloads
FETCHED_DIR=
have_all() { local d=$1 f; shift; for f in "$@"; do [ -f "$d/$f" ] || return 1; done; }
fetch_verified() {
  local pkg=$1 ver=$2 files=() f dir
  mapfile -t files < <(pinned_files "$pkg" "$ver")
  [ ${#files[@]} -ge 2 ] || die "$SUMS pins no complete file set for $pkg $ver"
  if have_all "$CACHE" "${files[@]}"; then
    dir=$CACHE
  elif have_all "$DL_DIR" "${files[@]}"; then
    dir=$DL_DIR
  else
    say "$pkg: not in $CACHE, fetching $pkg=$ver with apt-get source"
    apt_setup
    mkdir -p "$DL_DIR"
    if ! (cd "$DL_DIR" && apt-get "${APT_OPTS[@]}" -q source --download-only "$pkg=$ver") \
        >"$BUILD/logs/apt-source-$pkg.log" 2>&1; then
      grep -E '^(E|W|Err):' "$BUILD/logs/apt-source-$pkg.log" >&2 || tail -n 20 "$BUILD/logs/apt-source-$pkg.log" >&2
      die "apt-get source $pkg=$ver failed; still missing: $(for f in "${files[@]}"; do [ -f "$DL_DIR/$f" ] || printf '%s ' "$f"; done)"
    fi
    dir=$DL_DIR
    for f in "${files[@]}"; do [ -f "$dir/$f" ] || die "apt-get source $pkg=$ver did not provide $f"; done
  fi
  # Always check, whichever way the files came: a cache can be stale or tampered with.
  local out
  if ! out=$(cd "$dir" && for f in "${files[@]}"; do echo "$(pinned_sum "$f")  $f"; done | sha256sum -c 2>&1); then
    echo "$out" >&2
    die "SHA-256 MISMATCH for $pkg $ver in $dir (pinned in $SUMS); refusing to build"
  fi
  FETCHED_DIR=$dir
}

orig_of() { pinned_files "$1" "$2" | grep '\.orig\.tar\.'; }

# Unpack the orig tarball of $1=$2 into a fresh BUILD/src/$3; sets SRC to that dir.
SRC=
unpack() {
  local pkg=$1 ver=$2 name=$3 orig
  fetch_verified "$pkg" "$ver"
  orig=$(orig_of "$pkg" "$ver")
  SRC=$BUILD/src/$name
  rm -rf "$SRC"
  mkdir -p "$SRC"
  tar -xf "$FETCHED_DIR/$orig" -C "$SRC" --strip-components=1 ||
    die "cannot unpack $FETCHED_DIR/$orig"
}

# ---------------------------------------------------------------- building

# Compile through a generated makefile so `make -j` gives the parallelism. Sources are
# given relative to the work dir; objects go to obj/ next to them.
#   mk_begin WORKDIR; mk_lib libfoo.a SRC...; mk_run DEP
MK=
mk_begin() { MK=$1/deps.mk.gen; : >"$MK"; printf 'all:\n' >>"$MK"; }
mk_lib() {
  local lib=$1 s objs=(); shift
  for s in "$@"; do objs+=("obj/$s.o"); done
  {
    printf 'all: %s\n' "$lib"
    # shellcheck disable=SC2016  # make variables, not shell ones
    printf '%s: %s\n\t@rm -f $@\n\t$(AR) rcs $@ $^\n' "$lib" "${objs[*]}"
  } >>"$MK"
}
mk_run() { # dep
  cat >>"$MK" <<'EOF'
obj/%.c.o: %.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -c $< -o $@
obj/%.cc.o: %.cc
	@mkdir -p $(@D)
	$(CXX) $(CXXFLAGS) -c $< -o $@
obj/%.S.o: %.S
	@mkdir -p $(@D)
	$(CC) $(ASFLAGS) -c $< -o $@
EOF
  # A calling make's MAKEFLAGS (jobserver, variable overrides) must not leak in.
  if ! env -u MAKEFLAGS -u MFLAGS -u MAKEFILES -u MAKELEVEL make -C "$(dirname "$MK")" -f "$MK" -j"$JOBS" CC="$CC" CXX="$CXX" AR=ar \
      CFLAGS="$CFLAGS" CXXFLAGS="${CXXFLAGS:-}" ASFLAGS="${ASFLAGS:-}" \
      >"$BUILD/logs/$1.log" 2>&1; then
    grep -E -B2 -A6 'error|Error' "$BUILD/logs/$1.log" | head -n 60 >&2 || tail -n 40 "$BUILD/logs/$1.log" >&2
    die "$1 build failed (full log: $BUILD/logs/$1.log)"
  fi
}

# A variable's file list from BoringSSL's generated android-sources.cmake.
cmake_list() { # file var
  awk -v v="$2" '
    $0 == "set(" v { on = 1; next }
    on && /^\)/ { exit }
    on { f = $1; gsub(/\$\{BORINGSSL_ROOT\}/, "", f); print f }' "$1"
}

BUILT=0

build_boringssl() {
  local orig digest t0 src asm_var crypto ssl asm
  orig=$(orig_of "$BSSL_PKG" "$BSSL_VER")
  digest=$(pinned_sum "$orig")
  if up_to_date boringssl "$digest" lib/libcrypto.a lib/libssl.a include/openssl/ssl.h; then return 0; fi
  t0=$(now_ms)
  unpack "$BSSL_PKG" "$BSSL_VER" boringssl; src=$SRC
  local lists=$src/android-sources.cmake
  [ -f "$lists" ] || die "boringssl: android-sources.cmake missing from $orig"
  mapfile -t crypto < <(cmake_list "$lists" crypto_sources)
  mapfile -t ssl < <(cmake_list "$lists" ssl_sources)
  if [ ${#crypto[@]} -lt 100 ] || [ ${#ssl[@]} -lt 10 ]; then
    die "boringssl: cannot read source lists from $lists"
  fi
  # The assembly is what makes P-256 (ECDSA, ECDHE), AES-GCM and SHA fast; other
  # architectures fall back to the portable C code.
  case $(uname -m) in
    x86_64) asm_var=crypto_sources_linux_x86_64 ;;
    aarch64) asm_var=crypto_sources_linux_aarch64 ;;
    *) asm_var= ;;
  esac
  asm=()
  [ -z "$asm_var" ] || mapfile -t asm < <(cmake_list "$lists" "$asm_var")
  # No BORINGSSL_SHARED_LIBRARY: OPENSSL_EXPORT stays empty, so with -fvisibility=hidden
  # no BoringSSL symbol is exported from whatever links it, and the OpenSSL 3 that
  # libnats pulls into the process keeps its own symbols. Not OPENSSL_SMALL: 3.4x
  # slower P-256. -std/-fno-exceptions/-fno-rtti/-D_XOPEN_SOURCE are upstream's.
  local common="-O2 -fPIC -fvisibility=hidden -fno-common -DNDEBUG -DBORINGSSL_IMPLEMENTATION -Isrc/include"
  [ ${#asm[@]} -gt 0 ] || common+=" -DOPENSSL_NO_ASM"
  CFLAGS="$common -std=gnu11 -D_XOPEN_SOURCE=700 -Wa,--noexecstack"
  CXXFLAGS="$common -std=gnu++17 -fno-exceptions -fno-rtti"
  ASFLAGS="$common -Wa,--noexecstack"
  mk_begin "$src"
  mk_lib libcrypto.a "${crypto[@]}" "${asm[@]}"
  mk_lib libssl.a "${ssl[@]}"
  mk_run boringssl
  install -m 644 "$src/libcrypto.a" "$src/libssl.a" "$BUILD/lib/"
  rm -rf "$BUILD/include/openssl"
  cp -R "$src/src/include/openssl" "$BUILD/include/openssl"
  write_stamp boringssl "$digest"
  rm -rf "$src"   # 150 MB of sources and objects, not needed once the libs are in place
  say "boringssl built ($(since "$t0"), ${#asm[@]} asm files)"
  BUILT=1
}

build_msgpack() {
  local orig digest t0 src s
  orig=$(orig_of "$MSGPACK_PKG" "$MSGPACK_VER")
  digest=$(pinned_sum "$orig")
  if up_to_date msgpack "$digest" lib/libmsgpackc.a include/msgpack.h include/msgpack/sysdep.h; then return 0; fi
  t0=$(now_ms)
  unpack "$MSGPACK_PKG" "$MSGPACK_VER" msgpack; src=$SRC
  # cmake would generate these two headers from *.h.in, filling in the byte order.
  local big=0 little=1
  if printf '#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__\nBIG\n#endif\n' | "$CC" -E -P - | grep -q BIG; then
    big=1 little=0
  fi
  for s in sysdep pack_template; do
    sed -e "s/@MSGPACK_ENDIAN_BIG_BYTE@/$big/" -e "s/@MSGPACK_ENDIAN_LITTLE_BYTE@/$little/" \
      "$src/cmake/$s.h.in" >"$src/include/msgpack/$s.h"
  done
  ! grep -q '@[A-Z_]*@' "$src/include/msgpack/sysdep.h" "$src/include/msgpack/pack_template.h" ||
    die "msgpack: unsubstituted @VAR@ left in generated headers"
  CFLAGS="-O2 -fPIC -DPIC -Iinclude -I."
  mk_begin "$src"
  local srcs
  mapfile -t srcs < <(cd "$src" && ls src/*.c)
  mk_lib libmsgpackc.a "${srcs[@]}"
  mk_run msgpack
  install -m 644 "$src/libmsgpackc.a" "$BUILD/lib/"
  rm -rf "$BUILD/include/msgpack" "$BUILD/include/msgpack.h"
  cp "$src/include/msgpack.h" "$BUILD/include/"
  cp -R "$src/include/msgpack" "$BUILD/include/msgpack"
  write_stamp msgpack "$digest"
  rm -rf "$src"
  say "msgpack-c built ($(since "$t0"))"
  BUILT=1
}

build_hiredis() {
  local orig digest t0 src
  orig=$(orig_of "$HIREDIS_PKG" "$HIREDIS_VER")
  digest=$(pinned_sum "$orig")
  if up_to_date hiredis "$digest" lib/libhiredis.a include/hiredis/hiredis.h include/hiredis/adapters/libevent.h; then return 0; fi
  t0=$(now_ms)
  unpack "$HIREDIS_PKG" "$HIREDIS_VER" hiredis; src=$SRC
  # The same objects as upstream's Makefile (OBJ=...), without ssl.c: nhgw does not
  # talk TLS to Redis, and ssl.c would link against the system's OpenSSL 3.
  CFLAGS="-O2 -fPIC -std=c99 -Wall -Wextra -Wno-missing-field-initializers"
  mk_begin "$src"
  mk_lib libhiredis.a alloc.c async.c hiredis.c net.c read.c sds.c sockcompat.c
  mk_run hiredis
  install -m 644 "$src/libhiredis.a" "$BUILD/lib/"
  rm -rf "$BUILD/include/hiredis"
  mkdir -p "$BUILD/include/hiredis/adapters"
  # The header set upstream's `make install` installs.
  (cd "$src" && cp hiredis.h async.h read.h sds.h alloc.h sockcompat.h "$BUILD/include/hiredis/" &&
    cp adapters/*.h "$BUILD/include/hiredis/adapters/")
  write_stamp hiredis "$digest"
  rm -rf "$src"
  say "hiredis built ($(since "$t0"))"
  BUILT=1
}

build_llhttp() {
  local digest t0 src f
  for f in api.c http.c llhttp.c; do
    [ -f "$LLHTTP_SRC/$f" ] || die "$LLHTTP_SRC/$f missing: install node-llhttp (ops/install-packages.sh)"
  done
  [ -f "$LLHTTP_HDR" ] || die "$LLHTTP_HDR missing: install node-llhttp (ops/install-packages.sh)"
  # These come from a Debian package, not a pinned tarball: key the stamp on the files
  # themselves so a package update (e.g. a security fix) triggers a rebuild.
  digest=$(cat "$LLHTTP_SRC/api.c" "$LLHTTP_SRC/http.c" "$LLHTTP_SRC/llhttp.c" "$LLHTTP_HDR" | sha256sum | cut -d' ' -f1)
  if up_to_date llhttp "$digest" lib/libllhttp.a include/llhttp.h; then return 0; fi
  t0=$(now_ms)
  src=$BUILD/src/llhttp
  rm -rf "$src" && mkdir -p "$src"
  cp "$LLHTTP_SRC/api.c" "$LLHTTP_SRC/http.c" "$LLHTTP_SRC/llhttp.c" "$LLHTTP_HDR" "$src/"
  # Generated code, full of unused labels and the like: no warning flags of ours.
  CFLAGS="-O2 -fPIC -I."
  mk_begin "$src"
  mk_lib libllhttp.a api.c http.c llhttp.c
  mk_run llhttp
  install -m 644 "$src/libllhttp.a" "$BUILD/lib/"
  install -m 644 "$src/llhttp.h" "$BUILD/include/llhttp.h"
  write_stamp llhttp "$digest"
  rm -rf "$src"
  say "llhttp built ($(since "$t0"))"
  BUILT=1
}

write_deps_mk() {
  cat >"$BUILD/deps.mk.tmp" <<EOF
# Generated by ops/deps.sh. Put DEPS_CFLAGS before other -I flags so BoringSSL's
# openssl/ headers win over /usr/include/openssl (OpenSSL 3).
DEPS_DIR := $BUILD
DEPS_CFLAGS := -I$BUILD/include
DEPS_LIBS := $BUILD/lib/libssl.a $BUILD/lib/libcrypto.a $BUILD/lib/libhiredis.a $BUILD/lib/libmsgpackc.a $BUILD/lib/libllhttp.a -Wl,--exclude-libs,ALL -lpthread
EOF
  mv "$BUILD/deps.mk.tmp" "$BUILD/deps.mk"
}

# Build and run ops/deps-check.c against what was just built: BoringSSL (not OpenSSL 3)
# really is what the headers and libs give, and every library links and works.
check() {
  local t0 exe=$BUILD/bin/deps-check
  t0=$(now_ms)
  mkdir -p "$BUILD/bin"
  if ! "$CC" -std=c11 -O1 -Wall -Wextra -Werror -I"$BUILD/include" "$ROOT/ops/deps-check.c" -o "$exe" \
      "$BUILD/lib/libssl.a" "$BUILD/lib/libcrypto.a" "$BUILD/lib/libhiredis.a" \
      "$BUILD/lib/libmsgpackc.a" "$BUILD/lib/libllhttp.a" -Wl,--exclude-libs,ALL -lpthread \
      >"$BUILD/logs/check.log" 2>&1; then
    cat "$BUILD/logs/check.log" >&2
    die "ops/deps-check.c does not build against $BUILD"
  fi
  "$exe" >"$BUILD/logs/check.log" 2>&1 || { cat "$BUILD/logs/check.log" >&2; die "deps-check failed"; }
  say "check passed ($(since "$t0")): $(tail -n1 "$BUILD/logs/check.log")"
}

T0=$(now_ms)
build_llhttp
build_hiredis
build_msgpack
build_boringssl
[ -f "$BUILD/deps.mk" ] || BUILT=1
# deps.mk is written only once the check passed, so a failed check is retried next run.
if [ "$BUILT" = 1 ]; then
  check
  write_deps_mk
  say "done in $(since "$T0") -> $BUILD"
fi
