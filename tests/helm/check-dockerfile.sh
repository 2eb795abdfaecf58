#!/usr/bin/env bash
# Static checks of ops/Dockerfile (no Docker engine on these machines): every COPY source exists,
# the runtime packages exist in Debian's archive and provide every shared library the built
# binaries load, the image runs as the numeric non-root user the Helm chart expects, and build/
# stays out of the build context. Prints ok/FAIL lines and "N passed, N failed".
set -uo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$repo"
B=${BUILD:-build}
df=ops/Dockerfile
passed=0
failed=0
result() { # name errors...
    local name=$1; shift
    if [ $# -eq 0 ]; then
        echo "ok   dockerfile: $name"; passed=$((passed + 1))
    else
        echo "FAIL dockerfile: $name"; printf '     - %s\n' "$@"; failed=$((failed + 1))
    fi
}

# Instructions with continuation lines joined.
instr=$(sed -e ':a' -e '/\\$/N; s/\\\n//; ta' "$df" | grep -vE '^\s*#')

# 1. COPY sources from the context exist.
errs=()
while read -r line; do
    # shellcheck disable=SC2086
    set -- $line
    shift # COPY
    args=()
    for a in "$@"; do case $a in --*) continue 2 ;; *) args+=("$a") ;; esac; done
    n=${#args[@]}
    for ((i = 0; i < n - 1; i++)); do
        [ -e "${args[$i]}" ] || errs+=("COPY source ${args[$i]} does not exist")
    done
done < <(grep -E '^\s*COPY\s' <<<"$instr" | grep -v -- '--from=')
ncopy=$(grep -cE '^\s*COPY\s' <<<"$instr")
[ "$ncopy" -ge 3 ] || errs+=("only $ncopy COPY instructions found")
result "every COPY source exists in the repository ($ncopy COPY instructions)" "${errs[@]}"

# 2. Multi-stage on Debian bookworm, the same Makefile, the stages named as used.
errs=()
grep -qE '^ARG BUILD_IMAGE=debian:bookworm$' "$df" || errs+=("build stage is not debian:bookworm")
grep -qE '^ARG RUNTIME_IMAGE=debian:bookworm(-slim)?$' "$df" || errs+=("runtime stage is not debian:bookworm(-slim)")
[ "$(grep -cE '^FROM ' "$df")" -ge 3 ] || errs+=("expected the deps, build and runtime stages")
grep -qE 'make .*build/nhgw' <<<"$instr" || errs+=("the build stage does not run the Makefile")
grep -qE 'ops/install-packages.sh' <<<"$instr" || errs+=("the build stage does not install packages with ops/install-packages.sh")
for f in $(grep -oE -- '--from=[a-z]+' "$df" | cut -d= -f2 | sort -u); do
    grep -qiE "^FROM .* AS $f\$" "$df" || errs+=("--from=$f names no stage")
done
result "multi-stage on Debian bookworm, built with the project's Makefile" "${errs[@]}"

# 3. Runtime packages: exist in the archive, and provide every library the binaries need.
pkgs=$(awk '/^FROM \$\{RUNTIME_IMAGE\}/ { rt = 1 } rt' "$df" | sed -e ':a' -e '/\\$/N; s/\\\n//; ta' |
    grep -oE 'install -y --no-install-recommends[^&]*' | sed 's/install -y --no-install-recommends//')
errs=()
[ -n "$pkgs" ] || errs+=("no apt-get install in the runtime stage")
for p in $pkgs; do
    apt-cache show --no-all-versions "$p" >/dev/null 2>&1 || errs+=("Debian has no package $p (apt-get update?)")
    ver=$(apt-cache policy "$p" 2>/dev/null | awk '/Candidate:/ { print $2 }')
    [ -n "$ver" ] && [ "$ver" != "(none)" ] || errs+=("$p has no installable candidate")
done
result "runtime packages exist in Debian:$(printf ' %s' $pkgs)" "${errs[@]}"

errs=()
bins=0
# shellcheck disable=SC2086
closure=$(apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks \
    --no-replaces --no-enhances $pkgs 2>/dev/null | grep -vE '^\s|^<' | sed 's/:.*//' | sort -u)
for b in nhgw nhplatform nhctl; do
    [ -x "$B/$b" ] || continue
    bins=$((bins + 1))
    while read -r lib path; do
        [ -n "$path" ] || continue
        owner=$(dpkg -S "$(readlink -f "$path")" 2>/dev/null | head -1 | cut -d: -f1)
        [ -n "$owner" ] || owner=$(dpkg -S "$path" 2>/dev/null | head -1 | cut -d: -f1)
        if [ -z "$owner" ]; then errs+=("$b: $lib ($path) belongs to no Debian package"); continue; fi
        case $owner in libc6) continue ;; esac   # in every Debian image
        grep -qxF "$owner" <<<"$closure" || errs+=("$b: $lib comes from $owner, which the runtime stage does not install")
    done < <(ldd "$B/$b" | awk '$2 == "=>" && $3 ~ /^\// { print $1, $3 }')
done
if [ $bins -eq 0 ]; then
    echo "skip dockerfile: runtime libraries cover ldd of the binaries: build/nhgw not built"
else
    result "runtime packages provide every shared library of $bins binaries (ldd)" "${errs[@]}"
fi

# 4. Non-root, numeric user matching the chart; entrypoint copied in.
errs=()
user=$(grep -E '^USER ' "$df" | tail -1 | awk '{ print $2 }')
uid=${user%%:*}
[[ $uid =~ ^[0-9]+$ ]] && [ "$uid" -gt 0 ] || errs+=("USER '$user' is not a numeric non-root uid")
chart_uid=$(awk '/^podSecurityContext:/ { p = 1 } p && /runAsUser:/ { print $2; exit }' helm/nhgw/values.yaml)
[ "$uid" = "$chart_uid" ] || errs+=("image uid $uid differs from the chart's runAsUser $chart_uid")
grep -qE "useradd .*--uid $uid" <<<"$instr" || errs+=("no useradd for uid $uid")
ep=$(grep -oE '^ENTRYPOINT \["[^"]+"' "$df" | cut -d'"' -f2)
for b in nhgw nhplatform nhctl; do
    grep -qE "COPY --from=build .*/out/$b" "$df" || errs+=("$b is not copied into the runtime image")
done
[ "$ep" = /usr/local/bin/nhgw ] || errs+=("ENTRYPOINT $ep is not /usr/local/bin/nhgw")
grep -q 'command: \["/usr/local/bin/nhplatform"\]' helm/nhgw/templates/platform-deployment.yaml ||
    errs+=("the chart's platform command is not the image's /usr/local/bin/nhplatform")
grep -q '"/bin/sleep"' helm/nhgw/templates/deployment.yaml && ! grep -q 'bookworm-slim\|bookworm$' "$df" &&
    errs+=("the chart's preStop runs /bin/sleep, which the runtime image must have (Debian's coreutils)")
result "non-root numeric USER $uid (= the chart's runAsUser), nhgw entrypoint, three binaries" "${errs[@]}"

# 5. The context filter keeps build/ out.
errs=()
if [ -f ops/Dockerfile.dockerignore ]; then
    grep -qxE 'build/?' ops/Dockerfile.dockerignore || errs+=("ops/Dockerfile.dockerignore does not exclude build")
else
    errs+=("ops/Dockerfile.dockerignore missing")
fi
result "build/ is excluded from the build context" "${errs[@]}"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
