"""``sketchstudio --self-test OUT.png``: prove that an installation works, end to end, in the window.

A wheel installed elsewhere or a PyInstaller bundle has no test suite and, for the bundle, no
Python to run one; this drives the real app instead: the window is shown, the default model (or
``--model``) loads in the compute thread, the shipped sample photo goes through the Translate
view's Sample path, and the displayed result is saved through the view's own Save. One JSON line
on stdout says what happened (model path, output size, where the package was imported from), and
the exit code is 0 only if every step worked; a message the app shows as an error fails it.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QTimer

log = logging.getLogger(__name__)


class SelfTest(QObject):
    """Runs the steps from the event loop and quits the app with the outcome."""

    def __init__(self, app: Any, window: Any, out: Path, model: str | None,
                 timeout_s: float = 600.0) -> None:
        super().__init__(window)
        self.app, self.window, self.out, self.model = app, window, out, model
        self.t0 = time.monotonic()
        self.done = False
        self.report: dict[str, Any] = {"ok": False, "frozen": bool(getattr(sys, "frozen", False))}
        window.ctx.message.connect(self._message)
        window.ctx.translated.connect(self._translated)
        # the sample has a face: not finding it means face detection is broken in this install
        window.ctx.translate_worker.no_face.connect(
            lambda _seq, _img, message: self._fail(f"no face found in the sample: {message}"))
        window.ctx.translate_worker.failed.connect(
            lambda _seq, message, detail: self._fail(f"translation failed: {message}\n{detail}"))
        QTimer.singleShot(int(timeout_s * 1000), lambda: self._fail(f"timed out after {timeout_s:.0f} s"))

    def start(self) -> None:
        """Load the model, then press Sample; the view queues the request behind the load."""
        import sketchstudio
        from sketchstudio.resources import default_model_path, sample_images

        self.report["package"] = str(Path(sketchstudio.__file__).parent)
        self.report["default_model"] = str(default_model_path() or "")
        view = self.window.translate_view
        if view is None:
            self._fail("the window has no Translate view")
            return
        if not sample_images():
            self._fail("no sample image is installed")
            return
        self.window.start(model=self.model)
        if not view.has_model:
            self._fail("no model to load (is the default model installed?)")
            return
        self.window.show_view("Translate")
        view.open_sample()

    def _message(self, level: str, text: str, detail: str) -> None:
        log.info("app message (%s): %s", level, text)
        if level == "error":
            self._fail(text + (f"\n{detail}" if detail else ""))

    def _translated(self, _res: object) -> None:
        # the view's own slot (connected first) has taken the result; save once it has run
        QTimer.singleShot(0, self._save)

    def _save(self) -> None:
        if self.done:
            return
        view = self.window.translate_view
        r = view.result
        if r is None:
            self._fail("a translation finished but the view shows no result")
            return
        saved = view.save_to(self.out)
        if saved is None or not Path(saved).is_file():
            self._fail(f"saving to {self.out} failed")
            return
        img = view.displayed_result()
        info = self.window.ctx.model
        self.report.update(
            ok=True, output=str(saved), size=[int(img.shape[1]), int(img.shape[0])],
            direction=r.direction, aligned=bool(r.aligned), device=r.device_name,
            model=getattr(info, "path", ""), model_is_default=bool(getattr(info, "is_default", False)),
            seconds=round(time.monotonic() - self.t0, 2))
        self._finish(0)

    def _fail(self, why: str) -> None:
        if self.done:
            return
        self.report["error"] = why
        self._finish(1)

    def _finish(self, code: int) -> None:
        self.done = True
        sys.stdout.write(json.dumps(self.report) + "\n")
        sys.stdout.flush()
        self.window.close()
        self.app.exit(code)
