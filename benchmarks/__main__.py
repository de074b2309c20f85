"""Run every ``benchmarks/bench_*.py`` module's ``run()`` and print the rows as one table.

A row is a dict with ``name`` and either ``ms`` or ``value`` + ``unit``; any other keys are
printed as notes. ``python -m benchmarks core align`` runs only the named modules; ``--full`` sets
``SKETCHSTUDIO_BENCH_FULL=1`` for the modules that have a longer, complete variant (``fast``: the
quality parity on all CUHK test pairs).
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import sys
import time
from pathlib import Path


def _fmt(row: dict) -> tuple[str, str, str, str]:
    if "ms" in row:
        value, unit = row["ms"], "ms"
    else:
        value, unit = row.get("value", ""), row.get("unit", "")
    if isinstance(value, float):
        value = f"{value:,.1f}" if abs(value) >= 10 else f"{value:.3g}"
    notes = ", ".join(f"{k}={v}" for k, v in row.items() if k not in ("name", "ms", "value", "unit"))
    return str(row["name"]), str(value), str(unit), notes


def main(argv: list[str]) -> int:
    if "--full" in argv:
        argv = [a for a in argv if a != "--full"]
        os.environ["SKETCHSTUDIO_BENCH_FULL"] = "1"
    here = Path(__file__).parent
    names = sorted(m.name for m in pkgutil.iter_modules([str(here)]) if m.name.startswith("bench_"))
    if argv:
        names = [n for n in names if n.removeprefix("bench_") in argv or n in argv]
    rows: list[tuple[str, str, str, str]] = []
    for name in names:
        t0 = time.perf_counter()
        try:
            mod = importlib.import_module(f"benchmarks.{name}")
            rows += [_fmt(r) for r in mod.run()]
        except Exception as exc:  # noqa: BLE001 - one broken benchmark must not hide the others
            rows.append((f"{name} FAILED", "", "", f"{type(exc).__name__}: {exc}"))
        print(f"[{name}: {time.perf_counter() - t0:.0f} s]", file=sys.stderr)
    header = ("benchmark", "value", "unit", "notes")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    line = "| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |"
    print(line)
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
