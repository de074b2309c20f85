#!/usr/bin/env bash
# One prepared GPU run (issue 16/24): train the default-model recipe on the CUFS training pairs
# with the validation split, for as long as the lease allows, then bring back what fits through
# $OUT (8 files of 16 MiB at most): the fp16 export in parts, the loss and validation logs, timings.
# Stage first with tools/stage_for_device.sh. Knobs (env): SECONDS_BUDGET (training wall time),
# RECIPE (extra trainer flags), SIZE/NGF/BLOCKS, DEVICE, STUDY (a study YAML to run instead). Rejoin the parts here with
#   cat /work/.device/.../model.safetensors.part-* > model.safetensors
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu-out}; mkdir -p "$OUT"
STAGE=${STAGE:-.device}
if ls "$STAGE"/whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target /tmp/site "$STAGE"/whl/*.whl && export PYTHONPATH="/tmp/site:${PYTHONPATH:-}"
fi
export PYTHONPATH="$PWD:${PYTHONPATH:-}" PYTHONUNBUFFERED=1
RUN=${RUN:-/tmp/gpu-run}
SECONDS_BUDGET=${SECONDS_BUDGET:-420}
RECIPE=${RECIPE:-"--upsample resize --rec-loss l1 --loss-weights 0.1,0.1,1 --tap-compare standardised --stu-compare standardised"}
{ nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
  python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"; } \
  | tee "$OUT/machine.txt"
if [ -n "${STUDY:-}" ]; then
  # a recipe study instead (python -m trainer.study; its YAML's data paths must point into
  # $STAGE): the table and the grid come back, the runs stay there
  timeout --signal=TERM "$SECONDS_BUDGET" python3 -m trainer.study "$STUDY" --out /tmp/study \
      > "$OUT/study.log" 2>&1
  echo "study exit $?" >> "$OUT/study.log"
  cp /tmp/study/study.md /tmp/study/study.json /tmp/study/grid.png "$OUT/" 2>/dev/null
  tail -c 1000000 "$OUT/study.log" > "$OUT/study.tail.log" && rm "$OUT/study.log"
  ls -la "$OUT"; exit 0
fi
# SIGTERM at the budget: the trainer finishes its step, validates nothing more and checkpoints
timeout --signal=TERM "$SECONDS_BUDGET" python3 -m trainer.cli \
    --data "$STAGE/cufs/train" --val cufs --val-every "${VAL_EVERY:-500}" --out "$RUN" \
    --teacher "$STAGE/teacher/vgg19_relu3_1.pth" --size "${SIZE:-256}" --ngf "${NGF:-64}" \
    --blocks "${BLOCKS:-9}" --precision "${PRECISION:-auto}" --device "${DEVICE:-cuda}" \
    --epochs "${EPOCHS:-200}" --checkpoint-every "${CKPT_EVERY:-500}" --ema-decay 0.999 \
    $RECIPE ${EXTRA:-} > "$OUT/train.log" 2>&1
echo "trainer exit $?" >> "$OUT/train.log"
cp "$RUN/losses.jsonl" "$OUT/" 2>/dev/null; cp "$RUN/val.jsonl" "$OUT/" 2>/dev/null
# the model chosen on validation comes back (else the last checkpoint); 15 MiB parts fit the
# 16 MiB limit of a returned file
src="$RUN/best.safetensors"; [ -f "$src" ] || src="$RUN/checkpoint.safetensors"
if [ -f "$src" ]; then
  python3 -c "import sys; from trainer.cli import export_main; sys.exit(export_main(sys.argv[1:]))" \
      "$src" /tmp/model-fp16.safetensors >> "$OUT/train.log" 2>&1 \
    && split -b 15M -d /tmp/model-fp16.safetensors "$OUT/model.safetensors.part-"
fi
tail -c 1000000 "$OUT/train.log" > "$OUT/train.tail.log" && rm "$OUT/train.log"
ls -la "$OUT"
