"""Checks of the shipped lite companion (issue 23; reporting only, nothing is chosen here).

CUHK test parity of its int8 paths against the full G's fp32 torch output (FSIM, grey levels),
parity on the bundled sample photo (what the tuner measures on a machine without CUFS), and
speed (the paths taking turns, 2 threads) against torch fp32 and the full G's OpenVINO int8.
Run from the repository root: ``python -m research.lite_eval [THREADS]``; prints JSON."""
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from sketchstudio.checkpoint import build_student, read_checkpoint
from sketchstudio.imaging import load_image, to_image, to_tensor
from sketchstudio.metrics.fsim import fsim_gray
from sketchstudio.resources import sample_images
from sketchstudio.runtime.fastpath import Tuner, grey_level_diff


def main() -> None:
    T = int(sys.argv[1]) if len(sys.argv) > 1 else 2  # run from the repository root
    torch.set_num_threads(T)
    CUFS = Path("../shared/data/cufs")
    ck = read_checkpoint("sketchstudio/assets/models/kt-cufs.safetensors")
    G = "photo2sketch"
    net = build_student(ck, G)
    cache = Path(tempfile.mkdtemp(prefix="lite-eval-"))
    tuner = Tuner(ck, G, net, cache_root=cache, threads=T, calibration_dir=CUFS / "train")
    assert tuner.lite is not None, "no companion next to the model"
    lite = build_student(tuner.lite, G)
    res = {"block_width": tuner.lite.meta.block_width, "lite_meta_metrics": tuner.lite.meta.metrics}
    runners = {n: tuner.load(n) for n in ("openvino-int8-lite", "onnx-int8-lite", "openvino-int8")}
    pairs = sorted((CUFS / "test" / "photos").glob("*"))
    rec = {k: {"fsim": [], "grey": []} for k in ["torch", "lite-fp32", *runners]}
    with torch.inference_mode():
        for p in pairs:
            img, gt = load_image(p), load_image(CUFS / "test" / "sketches" / p.name)
            h, w = img.shape[:2]
            x = to_tensor(img, 256)
            ref = net(x)
            rec["torch"]["fsim"].append(fsim_gray(to_image(ref, w, h), gt))
            outs = {"lite-fp32": lite(x), **{n: torch.from_numpy(r(x.numpy())) for n, r in runners.items()}}
            for n, y in outs.items():
                rec[n]["fsim"].append(fsim_gray(to_image(y, w, h), gt))
                rec[n]["grey"].append(grey_level_diff(ref, y))
    base = float(np.mean(rec["torch"]["fsim"]))
    res["cuhk_test"] = {"pairs": len(pairs), "torch_fsim": base}
    for n in rec:
        if n == "torch":
            continue
        res["cuhk_test"][n] = {"fsim": float(np.mean(rec[n]["fsim"])), "dfsim": float(np.mean(rec[n]["fsim"])) - base,
                               "grey": float(np.mean(rec[n]["grey"])), "grey_worst": float(np.max(rec[n]["grey"]))}
    s = load_image(sample_images()[0])
    xs = to_tensor(s, 256)
    with torch.inference_mode():
        r0 = net(xs)
        r1 = net(xs.flip(-1))
    res["sample_parity"] = {n: float(np.mean([grey_level_diff(r0, r(xs.numpy())), grey_level_diff(r1, r(np.ascontiguousarray(xs.flip(-1).numpy())))])) for n, r in runners.items()}
    xs3 = [to_tensor(load_image(p), 256).numpy() for p in pairs[:3]]
    paths = {"torch": lambda a: net(torch.from_numpy(a)).numpy(), **runners}
    times = {k: [] for k in paths}
    with torch.inference_mode():
        for f in paths.values():
            f(xs3[0])
        for _ in range(2):
            for a in xs3:
                for k, f in paths.items():
                    t0 = time.perf_counter()
                    f(a)
                    times[k].append((time.perf_counter() - t0) * 1e3)
    b = min(times["torch"])
    res["speed_ms"] = {k: {"ms": min(v), "ratio": b / min(v)} for k, v in times.items()}
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
