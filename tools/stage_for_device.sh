#!/usr/bin/env bash
# Stage what a GPU run needs into .device/ (git-ignored through .git/info/exclude, never
# committed): the CUFS pairs and the teacher from ../shared (which does not travel to the device
# machine) and the wheels the device's Python lacks. Then, from the session's `device` tool:
#   run(command="bash tools/gpu_session.sh", carry=[".device"], timeout_s=590)
# The data stays the research-only CUFS set; the folder is removed with `rm -rf .device`.
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.device/' .git/info/exclude 2>/dev/null || echo '/.device/' >> .git/info/exclude
rm -rf .device && mkdir -p .device/whl
cp -r ../shared/data/cufs .device/cufs
mkdir -p .device/teacher && cp ../shared/teacher/vgg19_relu3_1.pth .device/teacher/
# the device's python3 is 3.12 with torch, numpy, opencv, safetensors, PyYAML, tqdm, pillow;
# FSIM needs piq (pure Python)
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux2014_x86_64 -d .device/whl "piq>=0.8"
du -sh .device
