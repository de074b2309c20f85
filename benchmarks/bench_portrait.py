"""Portrait mode (#20): time and peak memory of a portrait next to the plain 200×250 crop.

Each case runs in its own process so its peak RSS (``ru_maxrss``) is its own: the default model,
fp32, manual eyes (no detector in the timing), a CUFS photo (or a synthetic face without
../shared) scaled into a 640×480 and a 4000×3000 scene. "head" is the app's default portrait;
"full" draws the whole 4000×3000 photo in tiles, which is where memory must stay bounded.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

CASES = (("640x480", 640, 480, 1.6, "head"), ("4000x3000", 4000, 3000, 2.4, "head"),
         ("4000x3000", 4000, 3000, 2.4, "full"))

_CHILD = textwrap.dedent("""
    import json, resource, sys, time
    import cv2, numpy as np
    from benchmarks.bench_align import CUFS_PHOTO, _scene
    from sketchstudio.engine import Translator
    from sketchstudio.imaging import load_image
    from sketchstudio.pipeline import translate_face
    w, h, scale, mode = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
    face = load_image(CUFS_PHOTO) if CUFS_PHOTO.is_file() else None
    img, eyes = _scene(face, w, h, scale)
    tr = Translator(None, precision="fp32", fast="off")
    translate_face(img, tr, eyes=eyes)  # warm-up: build G
    t0 = time.perf_counter()
    translate_face(img, tr, eyes=eyes)
    crop_ms = (time.perf_counter() - t0) * 1e3
    tiles = []
    t0 = time.perf_counter()
    ft = translate_face(img, tr, eyes=eyes, portrait=mode, progress=lambda d, t: tiles.append(t))
    ms = (time.perf_counter() - t0) * 1e3
    p = ft.portrait
    print(json.dumps({"crop_ms": crop_ms, "ms": ms, "tiles": p.tiles,
                      "canvas": "x".join(map(str, p.plan.canvas_size)),
                      "out": "x".join(map(str, p.plan.out_size)),
                      "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "device": tr.describe}))
""")


def run() -> list[dict]:
    rows: list[dict] = []
    for tag, w, h, scale, mode in CASES:
        out = subprocess.run([sys.executable, "-c", _CHILD, str(w), str(h), str(scale), mode],
                             capture_output=True, text=True, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        if mode == "head":
            rows.append({"name": f"crop 200×250 ({tag} photo)", "ms": r["crop_ms"],
                         "device": r["device"]})
        rows.append({"name": f"portrait {mode} ({tag} photo)", "ms": r["ms"], "tiles": r["tiles"],
                     "canvas": r["canvas"], "output": r["out"]})
        rows.append({"name": f"portrait {mode} ({tag} photo): peak RSS", "value": r["rss_mb"],
                     "unit": "MB"})
    return rows


if __name__ == "__main__":  # pragma: no cover
    for row in run():
        print(row)
