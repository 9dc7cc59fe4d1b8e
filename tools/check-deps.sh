#!/usr/bin/env bash
# check-deps.sh [ROOT]: checks that simtune's layers depend one way,
#     kernels <- data/base <- data <- infer <- train <- cmd
# (data/base/ is the small base module below data/: atomic writes, clock, RNG, JSON, escaping)
# (a layer may include its own headers and those of the layers left of it, never one to its right),
# and that kernels/ includes no file-format or config header (hdf5.h, yaml.h, png.h, jpeglib.h):
# the ops know tensors, not files.
#
# Scans the C, C++ and CUDA files under ROOT/{kernels,data,infer,train,cmd} (ROOT: the source
# tree this script sits in); tests/, bench/ and tools/ may include anything. An `#include "X"`
# resolves as the compiler does: next to the including file first, then from ROOT (the include
# path of every target); an X found in neither place counts by its spelling (`../train/a.h`
# from data/ is train/). Prints one line per violation, `FILE:LINE: #include ...: why`, and
# exits 1 if there is any, 0 otherwise. Run by ctest check_deps (tests/deps.cmake).
set -euo pipefail

root=${1:-"$(cd "$(dirname "$0")/.." && pwd)"}
cd "$root"
layers=(kernels data infer train cmd) # folders scanned; data/base/ is a layer of its own
order="kernels <- data/base <- data <- infer <- train <- cmd"
declare -A rank=([kernels]=0 [data/base]=1 [data]=2 [infer]=3 [train]=4 [cmd]=5)
forbidden_in_kernels='hdf5.h|yaml.h|png.h|jpeglib.h'

# Helpers set $REPLY instead of printing: a subshell per include would make the scan slow.
normalize() { # a relative path with . and .. resolved textually
    local part out=() parts
    IFS=/ read -ra parts <<<"$1"
    for part in "${parts[@]}"; do
        case $part in
        '' | .) ;;
        ..) if ((${#out[@]})); then unset 'out[${#out[@]}-1]'; else out+=(..); fi ;;
        *) out+=("$part") ;;
        esac
    done
    local IFS=/
    REPLY="${out[*]}"
}

resolve() { # FILE INCLUDED -> the path, relative to ROOT, that the include names
    normalize "${1%/*}/$2"
    local beside=$REPLY
    if [[ -f $beside ]]; then REPLY=$beside
    elif [[ -f $2 || $2 != ../* ]]; then normalize "$2"
    fi
}

layer_of() { # a path relative to ROOT -> its layer: the top folder, or data/base
    case $1 in data/base/*) REPLY=data/base ;; *) REPLY=${1%%/*} ;; esac
}

violations=0
report() { echo "$1"; violations=$((violations + 1)); }

while IFS= read -r file; do
    layer_of "$file"
    layer=$REPLY
    while IFS=: read -r line text; do
        if [[ $layer == kernels && $text =~ [\<\"]($forbidden_in_kernels)[\>\"] ]]; then
            report "$file:$line: $text: kernels/ may not include a file-format or config header"
        fi
        [[ $text =~ \"([^\"]+)\" ]] || continue
        resolve "$file" "${BASH_REMATCH[1]}"
        target=$REPLY
        layer_of "$target"
        if ((${rank[$REPLY]:--1} > ${rank[$layer]})); then
            report "$file:$line: $text: $layer/ may not include $REPLY/ ($target); layers: $order"
        fi
    done < <(grep -nE '^[[:space:]]*#[[:space:]]*include' "$file" || true)
done < <(find "${layers[@]}" -type f \( -name '*.c' -o -name '*.h' -o -name '*.cu' -o -name '*.cuh' \
             -o -name '*.cpp' -o -name '*.hpp' \) 2>/dev/null | LC_ALL=C sort)

if ((violations)); then
    echo "check-deps: $violations include(s) against the layer order $order" >&2
    exit 1
fi
