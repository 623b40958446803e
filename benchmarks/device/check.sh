#!/usr/bin/env bash
# The GPU check, as the device call's whole command (benchmarks/device/README.md):
# installs the wheels prepare.sh put in .whl/ (offline), then runs every part of
# benchmarks/device/check.py, writing $OUT/check.json, $OUT/check.log and
# $OUT/checkpoint.tar.gz.
#
# STRESS_JAX_DEVICE_DRY=1: the CPU dry run (tests/test_device_check.py): no install (the
# packages installed here are used), JAX on the CPU, tiny sizes.
# STRESS_JAX_DEVICE_PARTS=a,b: only those parts (a rerun of what a first call missed).
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:?set OUT to the folder for the results}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
extra=()
if [ "${STRESS_JAX_DEVICE_DRY:-0}" = 1 ]; then
  export JAX_PLATFORMS=cpu
  extra+=(--dry)
else
  ls .whl/*.whl >/dev/null 2>&1 || { echo "no wheels in .whl/: run benchmarks/device/prepare.sh here first, and carry .whl" >&2; exit 2; }
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 2
  # The carried wheels are only packages the image lacks (--no-deps), so putting them
  # ahead of its site-packages shadows nothing of the image's.
  export PYTHONPATH="$PWD:/tmp/site"
  export TFDS_DATA_DIR=/tmp/tfds
  if ! python3 -c "import tensorflow_datasets, grain, ml_collections" 2>/tmp/import.err; then
    echo "the carried packages do not import with the image's ($(tail -1 /tmp/import.err));" \
      "adding the carried protobuf" >&2
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target /tmp/site .whl/fallback/*.whl || exit 2
  fi
  python3 -c "import stress_jax.train, tfds_builders" || echo "stress_jax.train does not import: the parts that train will fail" >&2
fi
if [ -n "${STRESS_JAX_DEVICE_PARTS:-}" ]; then
  extra+=("--parts=$STRESS_JAX_DEVICE_PARTS")
fi
python3 -m benchmarks.device.check --out="$OUT" "${extra[@]}" 2>&1 | tee "$OUT/check.log"
