#!/usr/bin/env bash
# Everything this project measures on a GPU, in one run that fits a lent GPU's time
# (about 15 minutes on an H100), most important first: the demo styles retrained on the
# content corpus with the adopted recipe and scored old vs new by the yardstick (issue
# #12; publish them afterwards with `python bench/demo_styles.py publish --run
# $OUT/demo-styles`), a base generator made to adapt (joint training with conditional
# instance norm, or Reptile, across the paintings of role "base" installed by
# `stylize paintings install`; stylenet/base.py), the gpu tests,
# the training speed and the seconds of a default-recipe style per step variant (issue
# #13), the quality ablation at 256 px / 3,000 iterations (issue #7), the generator
# benchmark, the HTTP service benchmark, and the service's CPU milliseconds per image with
# PIL codecs and with nvJPEG (issue #16 item 2).
#
#   bash bench/gpu_session.sh                     # results under $OUT (default bench/results/gpu)
#   DEVICE=cpu QUICK=1 bash bench/gpu_session.sh  # a minutes-long smoke run of the script itself
#   STEPS="demo-styles service-processes" bash bench/gpu_session.sh   # only these steps
#
# Order (each step has its own time limit; the sum is more than one 15-minute lease, so
# later steps are cut first): demo-styles, base, adapt, gpu-tests, video, service-processes, gpu-codecs,
# tiled, the training speed, stylenet, service, quality.
#
# On the lent machine (Python 3.12 with torch, no internet, 64 MiB for the working tree and
# what a call carries) the steps need one of two carries, each made here and checked to fit
# by bench/gpu_carry.py (this script unpacks whatever came: weights into the cache, wheels
# into /tmp/site):
#   python bench/gpu_carry.py train   # VGG19 packed losslessly, photos at 320 px, pydantic:
#                                     # steps that train (demo-styles, base, stylenet, quality)
#   python bench/gpu_carry.py serve   # the service stack's wheels: gpu-tests and the
#                                     # service steps (tiled runs with either)
# A lease is 15 minutes in all, the machine's start (1-2 min) included, and a call brings
# back at most 8 files: run two calls in a row while the machine is warm, each ending in
# one archive, with inner time limits that leave room for the tar, e.g.
#   run(command="OUT=bench/results/gpu STEPS=demo-styles timeout 380 bash bench/gpu_session.sh; tar czf $OUT/train.tgz -C bench/results gpu", carry=[".devcache/train"], timeout_s=420)
#   run(command="OUT=bench/results/gpu STEPS='gpu-tests service-processes' timeout 380 bash bench/gpu_session.sh; tar czf $OUT/serve.tgz -C bench/results gpu", carry=[".devcache/serve"], timeout_s=420)
# (gpu-tests needs the serve carry: the codec tests import the service. train-speed also
# needs keras-vgg16.safetensors, which does not fit beside VGG19.)
# The base step also needs the paintings: PAINTINGS=DIR, else .devcache/train/paintings, else
# the cache's (~/.cache/stylize/paintings); without them it says so and trains nothing.
# A step whose modules are missing is skipped with a note; the others still run. Each step has its own
# time limit, so one slow step cannot eat the whole session.
set -u
cd "$(dirname "$0")/.."
DEVICE=${DEVICE:-cuda}
OUT=${OUT:-bench/results/gpu}
CONTENT=${CONTENT:-$( [ -d .devcache/train/content-320 ] && echo .devcache/train/content-320 || echo data/content-320)}
PYTHON=${PYTHON:-$(command -v .venv/bin/python || command -v python3)}
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
mkdir -p "$OUT"
if [ -d .devcache ]; then  # what bench/gpu_carry.py packed for this machine
  SITE=${SITE:-/tmp/site}
  "$PYTHON" bench/gpu_carry.py unpack --site "$SITE" 2>&1 | tee "$OUT/carry.log"
  [ -d "$SITE" ] && export PYTHONPATH=$PYTHONPATH:$SITE
fi
if [ -n "${QUICK:-}" ]; then
  QUALITY=(--size 64 --iterations 4 --batch-size 2 --baseline-steps 3 --baseline-images 1)
  SERVICE=(--sizes 64 --sequential 3 --clients 2 --per-client 2 --overload-clients 0 --bare-repeat 2)
  STYLENET=(--sizes 64 --repeat 2 --train-iterations 2)
  DEMO=(--params '{"iterations": 4, "image_size": 64, "batch_size": 2}' --size 64 --steps 3)
  BASE=(--method "${BASE_METHOD:-joint}" --outer-steps 3 --inner-steps 2 --image-size 64
    --style-size 64 --width 0.25 --batch-size 2 --checkpoint-every 2 --progress-every 1)
  PROCESSES=(--processes 1,2 --sizes 64 --clients 2 --per-client 2 --rounds 1 --bare-repeat 2)
  ADAPT=(--steps 4 --every 2 --image-size 64 --width 0.25 --batch-size 2 --score-steps 3
    --starts scratch,base,base-norms --norm-first 2)
  TILED=(--sizes 256 --seam-size 256 --seam-tile 128)
  CODECS=(--sizes 64 --sequential 3 --clients 2 --per-client 2 --overload-clients 0 --bare-repeat 2)
  TRAIN_SPEED=(--size 64 --repeats 1 --steps 1 --variants ours,reference
    --recipe-run "$CONTENT" --recipe-iterations 4 --recipe-variants ours)
else
  QUALITY=(--size 256 --iterations 3000 --batch-size 4 --baseline-steps 500)
  SERVICE=(--sizes 256 --clients 32 --per-client 8 --bare-batches 1,16)
  STYLENET=()
  # The recipe adopted from bench/recipe.py (docs/QUALITY.md), at the demo styles' scale.
  RECIPE='{"iterations": 3000, "image_size": 256}'
  DEMO=(--params "${DEMO_PARAMS:-$RECIPE}" --size 256 --steps 300)
  # A width-1.0 base at 256 px: joint (conditional instance norm, stylenet/conditional.py;
  # BASE_METHOD=reptile for Reptile's k = 8) at 4 steps per painting visit: at ~50 steps/s
  # (H100) 2,400 outer steps are ~200 s, within the step's limit; checkpoints every 100 let
  # a cut-off run resume (same command, same OUT). Crops load in 4 processes: a batch
  # takes ~30 ms to cut on the CPU, longer than a step on the GPU.
  BASE=(--method "${BASE_METHOD:-joint}" --outer-steps "${BASE_OUTER_STEPS:-2400}"
    --inner-steps "${BASE_INNER_STEPS:-4}" --image-size 256 --width 1.0 --batch-size 4
    --num-workers 4 --checkpoint-every 100 --progress-every 50)
  ADAPT=(--steps "${ADAPT_STEPS:-400}" --every "${ADAPT_EVERY:-50}" --image-size 256 --width 1.0
    --batch-size 4 --starts scratch,base,base-norms --norm-first "${ADAPT_NORM_FIRST:-100}")
  PROCESSES=(--processes "1,${WORKERS:-4}" --sizes 256,512 --clients 64 --per-client 8
             --rounds 1 --bare-repeat 6)
  TILED=(--sizes 2048,4096,8192x5464 --whole-max 16777216)
  CODECS=(--sizes 256,512 --sequential 12 --clients 64 --per-client 8 --overload-clients 0
          --bare-repeat 6)
  # Issue #13: steps of our trainer vs the pytorch/examples-style loop (bf16 autocast,
  # channels_last, torch.compile), then whole default-recipe trainings (2,000 iterations,
  # 256 px, batch 4), seconds per variant.
  TRAIN_SPEED=(--repeats 5 --steps 20 --variants ours,ours-nchw,ours+cl,ours+fp32,reference
    --compile --recipe-run "$CONTENT" --recipe-iterations 2000
    --recipe-variants ours,ours+cl,ours+compile)
fi

# The base step: the manifest's role-"base" paintings (never the "eval" ones, which measure
# how well the base adapts to paintings it has not seen), then `stylize base train`; its
# JSON goes to $OUT/base.json, the base (float16, like the demo styles) to $OUT/base/.
# Arguments: OUT_DIR DEVICE CONTENT then `stylize base train` options.
BASE_PY=$(cat <<'PY'
import contextlib, io, json, os, shutil, sys
from pathlib import Path
from stylenet import cli
from stylenet.lossnet import default_cache_dir

out, device, content, *options = sys.argv[1:]
out = Path(out)
carried = Path(".devcache/train/paintings")
cached = default_cache_dir() / "paintings"
folder = Path(os.environ.get("PAINTINGS") or (carried if carried.is_dir() else cached))
manifests = [folder / "manifest.json", Path("stylenet/paintings/manifest.json")]
manifest = next((m for m in manifests if m.is_file()), None)
if manifest is None:
    print(f"base: skipped: no paintings manifest ({' or '.join(map(str, manifests))})")
    sys.exit(0)
data = json.loads(manifest.read_text())
entries = data.get("paintings", data.get("entries", [])) if isinstance(data, dict) else data
# stylize paintings install lays them out as base/<file> and eval/<file>.
files = [folder / "base" / e["file"] if (folder / "base").is_dir() else folder / e["file"]
         for e in entries if isinstance(e, dict) and e.get("role") == "base"]
present = [f for f in files if f.is_file()]
if not present:
    print(f"base: skipped: none of the {len(files)} base paintings of {manifest} is in "
          f"{folder}; run `stylize paintings install` (or set PAINTINGS=DIR)")
    sys.exit(0)
if len(present) < len(files):
    print(f"base: warning: {len(files) - len(present)} of {len(files)} base paintings missing")
argv = ["base", "train", "--styles", *map(str, present), "--content", content,
        "--out", str(out / "base" / "base.safetensors"), "--device", device,
        "--checkpoint-dir", str(out / "base" / "checkpoint"), "--dtype", "float16", *options]
(out / "base").mkdir(parents=True, exist_ok=True)
captured = io.StringIO()
with contextlib.redirect_stdout(captured):
    rc = cli.main(argv)
if rc == 0:
    (out / "base.json").write_text(captured.getvalue())
    report = json.loads(captured.getvalue())
    metrics = report["metrics"]
    print(f"base: {report['out']} ({len(metrics['paintings'])} paintings, "
          f"{metrics['outer_steps']} outer steps, {metrics['seconds']} s, "
          f"{metrics['seconds_per_outer_step']} s per outer step) -> {out / 'base.json'}")
    shutil.rmtree(out / "base" / "checkpoint", ignore_errors=True)  # done: the base is written
sys.exit(rc)
PY
)

step() {  # step NAME LIMIT_S MODULES COMMAND...: run COMMAND unless a module is missing
  local name=$1 limit=$2 modules=$3
  shift 3
  if [ -n "${STEPS:-}" ] && [[ " $STEPS " != *" $name "* ]]; then
    return  # not among the steps asked for
  fi
  if ! "$PYTHON" -c "import ${modules}" 2>/dev/null; then
    echo "== $name: skipped (needs python modules: $modules)" | tee -a "$OUT/summary.txt"
    return
  fi
  echo "== $name" | tee -a "$OUT/summary.txt"
  local started=$SECONDS
  timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
  local rc=$?
  echo "   exit $rc after $((SECONDS - started)) s" | tee -a "$OUT/summary.txt"
  tail -n 25 "$OUT/$name.log" >>"$OUT/summary.txt"
}

: >"$OUT/summary.txt"
{
  date -u
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null
  "$PYTHON" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
} >>"$OUT/summary.txt" 2>&1

step lossnet 60 stylenet "$PYTHON" -m stylenet.cli lossnet list
step demo-styles 330 "torch,PIL" \
  "$PYTHON" bench/demo_styles.py train --content "$CONTENT" --out "$OUT/demo-styles" \
  --device "$DEVICE" "${DEMO[@]}"
step base 330 "torch,PIL,stylenet.base" \
  "$PYTHON" -c "$BASE_PY" "$OUT" "$DEVICE" "$CONTENT" "${BASE[@]}"
# Issue #22: time to quality on the eval paintings (in no base, no demo), scratch vs the
# base just trained, scored at the fixed reference every ADAPT_EVERY steps.
PAINT_DIR=${PAINTINGS:-$( [ -d .devcache/train/paintings ] && echo .devcache/train/paintings || echo "$HOME/.cache/stylize/paintings")}
if [ -f "$OUT/base/base.safetensors" ] && compgen -G "$PAINT_DIR/eval/*.jpg" >/dev/null; then
  step adapt 300 "torch,PIL" \
    "$PYTHON" bench/adapt.py --content "$CONTENT" --base "$OUT/base/base.safetensors" \
    --paintings "$PAINT_DIR"/eval/*.jpg --device "$DEVICE" --out "$OUT/adapt.json" "${ADAPT[@]}"
else
  echo "== adapt: skipped (needs \$OUT/base/base.safetensors and $PAINT_DIR/eval)" | tee -a "$OUT/summary.txt"
fi
if [ "$DEVICE" = cuda ]; then
  step gpu-tests 120 pytest "$PYTHON" -m pytest -q -p no:cacheprovider -m gpu \
    tests/unit/test_gpu.py tests/unit/test_codecs.py
fi
# Issue #29: a synthetic 720p pan (2 s, 60 frames) decoded, stylized on the GPU and encoded,
# per temporal mode: frames/s and peak RSS; flow's motion estimate runs on the CPU, so this
# shows whether it dominates a GPU host (then its default should be per_frame). Needs PyAV
# (not in the device image: carry its wheel) and the content photos.
step video 180 "torch,PIL,av" \
  "$PYTHON" bench/flicker.py --fps --seconds 2 --modes per_frame,flow,shared --batch 4 \
  --device "$DEVICE" --photos "$CONTENT" --out "$OUT/video.json"
# Issue #16: end-to-end img/s with 64 clients, 1 and N HTTP processes (STYLIZE_WORKERS),
# beside the bare batched forward, at 256² and 512².
step service-processes 240 "fastapi,uvicorn,httpx,redis,rq" \
  "$PYTHON" bench/bench_service.py --device "$DEVICE" "${PROCESSES[@]}" \
  --out "$OUT/service-processes.json"
# Issue #16 item 2: server CPU ms per image (and img/s) with STYLIZE_GPU_CODECS=off (PIL)
# then on (nvJPEG decode onto the GPU, encode there), same JPEG, same clients. On a CPU
# device "on" is torchvision's libjpeg-turbo: the smoke run checks the step, not a gain.
step gpu-codecs 300 "fastapi,uvicorn,httpx,redis,rq,torchvision" \
  "$PYTHON" bench/bench_service.py --device "$DEVICE" "${CODECS[@]}" --gpu-codecs off,on \
  --out "$OUT/gpu-codecs.json"
# Issue #17: exact tiled inference on the GPU (time, host RSS, CUDA peak memory).
step tiled 150 "torch,PIL" \
  "$PYTHON" bench/bench_tiled.py --device "$DEVICE" "${TILED[@]}" --out "$OUT/tiled.json" \
  --figure "$OUT/tiled-seams.jpg"
step train-speed 420 "torch,PIL" \
  "$PYTHON" bench/train_speed.py --device "$DEVICE" "${TRAIN_SPEED[@]}" --out "$OUT/train-speed.json"
step stylenet 120 "torch,PIL" \
  "$PYTHON" bench/bench_stylenet.py --device "$DEVICE" "${STYLENET[@]}" --out "$OUT/stylenet.json"
step service 240 "fastapi,uvicorn,httpx,redis,rq" \
  "$PYTHON" bench/bench_service.py --device "$DEVICE" "${SERVICE[@]}" --out "$OUT/service.json"
step quality 420 "torch,PIL,skimage" \
  "$PYTHON" bench/quality.py --device "$DEVICE" "${QUALITY[@]}" --out-dir "$OUT/quality"
echo "results in $OUT:"
ls "$OUT" "$OUT/quality" 2>/dev/null
