"""`sketchstudio-match`: rank a gallery of photos against sketches (or sketches against photos).

    sketchstudio-match --gallery mugshots/ suspect_sketch.jpg --top 5 --json hits.json

The gallery index is cached (see :mod:`sketchstudio.match.index`), so a second search of the same folder only looks
at new or changed files. Ctrl-C while indexing stops cleanly and keeps the finished files.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path

from ..cliutil import report_error
from ..errors import SketchStudioError
from ..fsutil import atomic_write_json
from .spaces import DEFAULT_METHOD, METHODS

PROG = "sketchstudio-match"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Rank the faces in a gallery folder against query sketches (or photos).")
    p.add_argument("queries", nargs="+", metavar="QUERY", help="query image files")
    p.add_argument("--gallery", required=True, help="folder of gallery images (searched recursively)")
    p.add_argument("--top", type=int, default=10, metavar="K", help="matches to show per query")
    p.add_argument("--json", metavar="OUT", help="write {query: [{path, score}, ...]} here")
    p.add_argument("--method", choices=METHODS, default=DEFAULT_METHOD,
                   help="feature space: fusion (NLDA + dlib ResNet scores, weighted; default), "
                        "nlda (grey pixels, null-space LDA) or embed (dlib ResNet)")
    p.add_argument("--model", help="translation checkpoint (default: the shipped model)")
    p.add_argument("--query-kind", choices=("sketch", "photo"), default="sketch",
                   help="sketch: gallery of photos, query translated by F; photo: the reverse, via G")
    p.add_argument("--aligned", action="store_true",
                   help="images are already aligned 200×250 crops (CUFS): skip face detection")
    p.add_argument("--compare", choices=("both", "translated", "raw"), default="both",
                   help="compare the gallery with the translated query, the query as it is, or "
                        "both (mean score; default)")
    p.add_argument("--features", metavar="PATH",
                   help="NLDA projection .npz (fusion, nlda) or dlib model folder (embed)")
    p.add_argument("--cache-dir", help="where gallery indexes are kept (default: user cache)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | mps")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


class _CtrlC:
    """First Ctrl-C asks indexing to stop after the current file; the second one kills."""

    def __init__(self) -> None:
        self.hit = False
        self._old = signal.signal(signal.SIGINT, self._handle)

    def _handle(self, *_: object) -> None:
        if self.hit:
            raise KeyboardInterrupt
        self.hit = True

    def restore(self) -> None:
        signal.signal(signal.SIGINT, self._old)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
    from tqdm import tqdm

    from .index import EmptyGalleryError, IndexCancelled
    from .matcher import MatchConfig, Matcher

    bar: tqdm | None = None

    def progress(done: int, total: int, path: str) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, unit="face", desc="indexing", file=sys.stderr)
        bar.update(1)

    try:
        cfg = MatchConfig(method=args.method, query_kind=args.query_kind, aligned=args.aligned,
                          compare=args.compare, model=args.model,
                          features_path=args.features, cache_dir=args.cache_dir,
                          device=args.device, top_k=args.top)
        matcher = Matcher(cfg)
        ctrl_c = _CtrlC()
        try:
            index, stats = matcher.index(args.gallery, progress=progress,
                                         cancel=lambda: ctrl_c.hit)
        finally:
            ctrl_c.restore()
            if bar is not None:
                bar.close()
    except IndexCancelled as exc:
        print(f"cancelled: {exc}", file=sys.stderr)
        return 130
    except SketchStudioError as exc:
        return report_error(PROG, exc)

    problems = index.problems()
    print(f"gallery {index.root}: {len(index.paths())} faces indexed "
          f"({stats.computed} new or changed, {stats.reused} cached)")
    if problems:
        print(f"{len(problems)} gallery file(s) not used:")
        for pr in problems:
            print(f"  {pr.path}: {pr.message}")
    try:
        index.require_faces()  # ranking against nothing would read as "no match"
    except EmptyGalleryError as exc:
        return report_error(PROG, exc)
    results: dict[str, list[dict]] = {}
    failed = 0
    for q in args.queries:
        try:
            res = matcher.match(q, index)
        except SketchStudioError as exc:
            failed += 1
            results[q] = []
            print(f"\n{q}: not matched: {exc}")
            continue
        results[q] = [{"path": str(m.path), "score": round(m.score, 6)} for m in res.matches]
        print(f"\n{q}:")
        for rank, m in enumerate(res.matches, 1):
            print(f"  {rank:>3}. {m.score:+.3f}  {m.path}")
    if args.json:
        try:
            atomic_write_json(Path(args.json), results)
        except SketchStudioError as exc:
            return report_error(PROG, exc)
    if failed:
        print(f"\n{failed} of {len(args.queries)} queries could not be matched (listed above).",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
