#!/usr/bin/env bash
# Builds the binary from exactly the files the Dockerfile's build stage copies, because no
# Docker engine runs here and `docker build` is what would otherwise find a missing file (the
# binary embeds keywords.toml and templates/ with include_str!, which a build stage that copied
# only Cargo.toml, Cargo.lock, src and benches could not compile).
#
#   scripts/check-docker-context.sh [Dockerfile]
#
# Reads the first stage (up to the second FROM): its WORKDIR and its COPY lines (not
# `COPY --from=…`), copies each source from the repository into a temp dir laid out as that
# WORKDIR, and runs the stage's `cargo build --release --locked --bin mpgate` there, with
# CARGO_TARGET_DIR set to this repository's target/ so dependencies are reused. Fails loudly
# when a COPY'd path is missing, is excluded by .dockerignore (top-level patterns only), or
# the build fails.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
DOCKERFILE=${1:-Dockerfile}
[[ -f $DOCKERFILE ]] || { echo "check-docker-context: no $DOCKERFILE" >&2; exit 1; }

fail() { echo "check-docker-context: FAILED: $*" >&2; exit 1; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/mpgate-docker-context.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

# .dockerignore patterns, without comments, blank lines, leading `/` or trailing `/`.
IGNORES=()
if [[ -f .dockerignore ]]; then
  while IFS= read -r line; do
    line=${line%%#*}
    line=$(sed 's/^[[:space:]]*//; s/[[:space:]]*$//' <<<"$line")
    [[ -z $line || $line == !* ]] && continue
    line=${line#/}
    IGNORES+=("${line%/}")
  done <.dockerignore
fi
ignored() { # path relative to the context
  local p=$1 pat
  for pat in "${IGNORES[@]}"; do
    # shellcheck disable=SC2053 # the pattern is a glob on purpose
    if [[ $p == $pat || $p == "$pat"/* ]]; then return 0; fi
  done
  return 1
}

workdir=/
stage=0
copies=0
build_cmd=
while IFS= read -r line; do
  # Instructions are case-insensitive; continuation lines are not used by the build stage.
  read -r instr rest <<<"$line" || true
  case ${instr^^} in
    FROM)
      stage=$((stage + 1))
      [[ $stage -gt 1 ]] && break
      ;;
    WORKDIR)
      [[ $rest == /* ]] || rest="$workdir/$rest"
      workdir=$rest
      ;;
    COPY | ADD)
      read -r -a args <<<"$rest"
      while [[ ${args[0]:-} == --* ]]; do
        [[ ${args[0]} == --from=* ]] && continue 2
        args=("${args[@]:1}")
      done
      [[ ${#args[@]} -ge 2 ]] || fail "cannot read: $line"
      [[ ${args[0]} != \[* ]] || fail "JSON-form COPY is not supported by this script: $line"
      dest=${args[-1]}
      [[ $dest == /* ]] || dest="$workdir/$dest"
      srcs=("${args[@]:0:${#args[@]}-1}")
      for src in "${srcs[@]}"; do
        src=${src%/}
        src=${src#./}
        [[ -e $src ]] || fail "$DOCKERFILE copies '$src', which does not exist (line: $line)"
        if ignored "$src"; then fail "$DOCKERFILE copies '$src', which .dockerignore excludes"; fi
        # Docker's rules: a directory source copies its contents into the destination; a file
        # goes into the destination when it ends in / (or there are several sources), else to
        # that name.
        target=$(sed 's#/\./#/#g; s#/\.$#/#; s#//*#/#g' <<<"$WORK$dest")
        if [[ -d $src ]]; then
          mkdir -p "$target"
          cp -a "$src/." "$target/"
        elif [[ $target == */ || ${#srcs[@]} -gt 1 ]]; then
          mkdir -p "$target"
          target="${target%/}/$(basename "$src")"
          cp -a "$src" "$target"
        else
          mkdir -p "$(dirname "$target")"
          cp -a "$src" "$target"
        fi
        echo "check-docker-context: COPY $src -> ${target#"$WORK"}" >&2
        copies=$((copies + 1))
      done
      ;;
    RUN)
      if [[ $rest == *"cargo build"* ]]; then build_cmd=$rest; fi
      ;;
  esac
done <"$DOCKERFILE"

[[ $copies -gt 0 ]] || fail "no COPY lines in the build stage of $DOCKERFILE"
[[ -n $build_cmd ]] || fail "no 'RUN cargo build' in the build stage of $DOCKERFILE"
[[ -f "$WORK$workdir/Cargo.toml" ]] || fail "the build stage's WORKDIR $workdir has no Cargo.toml"

echo "check-docker-context: in $workdir: $build_cmd" >&2
cd "$WORK$workdir"
export CARGO_TARGET_DIR=$REPO/target
# shellcheck disable=SC2086 # the Dockerfile's RUN line, split as a shell would
if ! $build_cmd; then
  fail "the build stage's '$build_cmd' fails with only the files $DOCKERFILE copies"
fi
echo "check-docker-context: ok: the build stage compiles from exactly what $DOCKERFILE copies" >&2
