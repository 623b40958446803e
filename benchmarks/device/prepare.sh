#!/usr/bin/env bash
# Downloads (here, where PyPI is reachable) the wheels that benchmarks/device/check.sh
# installs offline on the GPU machine: the packages stress_jax needs for training and
# its input pipeline that the machine's image lacks (the device tool's KINDS.md lists
# what it has), each pinned to the version tested here. Wheels land in .whl/ (ignored),
# which the device call carries. Nothing video-related travels: training does not
# import dlib, PyAV or face-recognition-models (tests/test_device_check.py checks it).
#
#   bash benchmarks/device/prepare.sh        # from the repository root
set -euo pipefail
cd "$(dirname "$0")/../.."

# name==version, one a line. The first five are what stress_jax imports; the rest are
# their own requirements that the image does not have (tensorflow-datasets': dm-tree,
# immutabledict, promise, simple-parsing, tensorflow-metadata, termcolor, toml; grain's:
# portpicker; simple-parsing's: docstring-parser; tensorflow-metadata's:
# googleapis-common-protos). absl-py, etils, protobuf, pyarrow, psutil, wrapt, attrs,
# requests, tqdm, cloudpickle, PyYAML and packaging are in the image.
WHEELS=(
  grain==0.2.18
  array-record==0.8.6
  tensorflow-datasets==4.9.10
  ml-collections==1.1.0
  tensorboardX==2.6.5
  importlib-resources==7.1.0
  portpicker==1.6.0
  dm-tree==0.1.10
  immutabledict==4.3.1
  simple-parsing==0.1.9
  docstring-parser==0.18.0
  tensorflow-metadata==1.21.0
  googleapis-common-protos==1.76.0
  termcolor==3.3.0
  toml==0.10.2
)
# Published as a source archive only: built here into a pure-Python wheel.
SOURCE_ONLY=(promise==2.3)

rm -rf .whl && mkdir -p .whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp --abi cp312 --abi abi3 --abi none \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  --platform manylinux1_x86_64 --platform any -d .whl "${WHEELS[@]}"
python3 -m pip wheel -q --no-deps -w .whl "${SOURCE_ONLY[@]}"
# tensorflow-metadata 1.21's generated code needs protobuf >= 6; the image's protobuf
# version is not known here, so check.sh installs this one only if tensorflow_datasets
# does not import with the image's.
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp --abi abi3 --abi cp312 --platform manylinux2014_x86_64 \
  --platform manylinux_2_17_x86_64 -d .whl/fallback protobuf==6.33.6
ls -1 .whl
count=$(ls .whl/*.whl | wc -l)
expected=$(( ${#WHEELS[@]} + ${#SOURCE_ONLY[@]} ))
if [ "$count" -ne "$expected" ]; then
  echo "expected $expected wheels in .whl, found $count" >&2
  exit 1
fi
# What travels: the tracked tree plus the wheels, against the device tool's 64 MiB.
tree=$(git ls-files -z | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1)
wheels=$(du -cb .whl/*.whl .whl/fallback/*.whl | tail -1 | cut -f1)
total=$(( tree + wheels ))
echo "tracked tree $(( tree / 1024 )) KiB + wheels $(( wheels / 1024 )) KiB = $(( total / 1024 )) KiB (limit 65536 KiB)"
if [ "$total" -gt $(( 64 * 1024 * 1024 )) ]; then
  echo "over the device tool's 64 MiB" >&2
  exit 1
fi
