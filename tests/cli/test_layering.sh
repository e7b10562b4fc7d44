#!/usr/bin/env bash
# DESIGN.md §2's layering, checked on the sources: the kernels (src/tensor) know no model, no file
# format and no method; src/base knows nothing above it. A new #include across a layer fails here.
cd "$(dirname "$0")/../.." || exit 1
source tests/cli/lib.sh

# check DIR ALLOWED_REGEX: every quoted #include in DIR's .c/.h files matches the regex
check() {
  local dir=$1 allow=$2 bad_inc
  bad_inc=$(grep -HnE '^[[:space:]]*#[[:space:]]*include[[:space:]]+"' "$dir"/*.c "$dir"/*.h | grep -vE "#[[:space:]]*include[[:space:]]+\"($allow)\"")
  if [ -z "$bad_inc" ]; then ok "$dir includes only its layer and below"; else bad "$dir includes across layers" "$(tr '\n' ';' <<<"$bad_inc")"; fi
}
check src/tensor 'tensor\.h|kernels\.h|kernels_tmpl\.h|quant\.h|qpack\.h|tensor/[a-z_]+\.h|base/[a-z_]+\.h|moekit/base\.h|moekit/kernels\.h'
check src/base 'base\.h|sha256\.h|base/[a-z_]+\.h|moekit/base\.h'
summary
