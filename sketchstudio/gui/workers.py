"""QObject workers that run everything heavy off the UI thread and report through signals.

Each worker is moved to a QThread; the UI talks to it only by emitting signals (queued into the
worker's thread) and listens to the worker's signals (queued back into the UI thread). torch, the
engine and the trainer are imported inside the slots, so importing this module is cheap and the
window can appear before torch is loaded.

- :class:`TranslateWorker` loads models and translates one image through
  :func:`sketchstudio.pipeline.translate_face`; a newer request makes older queued ones obsolete
  (and stops a running portrait between tiles).
- :class:`FeatureWorker` turns a translation's student taps and the matching teacher layer into
  pictures (``sketchstudio.features``).
- :class:`BatchWorker` translates a folder through the same call, cancellable between images.
- :class:`ScanWorker` validates a training folder (pairs, unreadable files, optionally faces).
- :class:`TrainWorker` runs :class:`trainer.loop.Trainer`; pause/resume/cancel go through its
  thread-safe :class:`trainer.events.TrainControl`.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, QThread, Signal, Slot

from sketchstudio.errors import (
    CancelledError,
    EyePositionError,
    NoFaceFoundError,
    SketchStudioError,
)
from sketchstudio.pipeline import (  # Qt-free and torch-free at import: cheap
    DIRECTION_LABELS,
    PHOTO2SKETCH,
    SKETCH2PHOTO,  # noqa: F401 - re-exported for the views
    Eyes,
    load_faces,
    output_kind,
)

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)



def describe_exception(exc: BaseException) -> tuple[str, str]:
    """(message for people, detail for bug reports). Our own errors are already written for people."""
    if isinstance(exc, SketchStudioError):
        return str(exc), ""
    return (f"Unexpected error: {type(exc).__name__}: {exc}",
            "".join(traceback.format_exception(exc)))


class _NoFace(Exception):  # noqa: N818 - internal signal, never shown
    """Carries the decoded image out of a failed alignment, so the user can click the eyes on it."""

    def __init__(self, original: np.ndarray, message: str) -> None:
        super().__init__(message)
        self.original, self.message = original, message


# ------------------------------------------------------------------------------------------------
@dataclass
class ModelInfo:
    """What the UI shows about the loaded model; the Translator itself stays with the workers."""

    path: str
    name: str
    directions: list[str]
    device_name: str
    image_size: int
    ngf: int
    n_blocks: int
    step: int
    is_default: bool
    fallback_note: str | None = None
    load_ms: float = 0.0
    #: the evaluation stored by ``sketchstudio-export --metrics`` (empty when there was none)
    metrics: dict[str, Any] = field(default_factory=dict)

    def quality(self) -> str:
        """One sentence on how good the model measured, for the toolbar's tooltip."""
        m = self.metrics
        if not {"photo_fsim", "sketch_fsim"} <= m.keys():
            return ("No test scores are stored in this model (score it with sketchstudio-eval, "
                    "then embed them with sketchstudio-export --metrics).")
        pairs = f" on {m['n_pairs']} test pairs" if "n_pairs" in m else ""
        text = (f"Scored{pairs}: sketch→photo FSIM {m['photo_fsim']:.4f}, "
                f"photo→sketch FSIM {m['sketch_fsim']:.4f}")
        if "input_fsim" in m:
            text += f" (returning the input unchanged scores {m['input_fsim']:.4f})"
        return text + "."


@dataclass
class TranslateRequest:
    seq: int
    source: Any  # a file path, encoded image bytes or an RGB uint8 array
    direction: str = "auto"  # "auto" | photo2sketch | sketch2photo
    align: bool = True
    eyes: Eyes | None = None  # manual eye centres in original-image coordinates
    name: str = ""
    grey_sketch: bool = True  # photo→sketch results in pencil grey
    #: None, "head" or "full": also draw the face with its surroundings (photo→sketch only)
    portrait: str | None = None


@dataclass
class TranslateResult:
    seq: int
    name: str
    original: np.ndarray
    direction: str
    guessed_direction: str
    auto: bool
    crop: np.ndarray
    output: np.ndarray  # at the crop's size
    pasted: np.ndarray | None = None  # output warped back onto the original
    portrait: np.ndarray | None = None  # the portrait drawing, in the original's orientation
    matrix: np.ndarray | None = None  # 2×3, original -> crop
    eyes: Eyes | None = None  # original coordinates
    crop_eyes: Eyes | None = None  # crop coordinates
    aligned: bool = False
    align_method: str = ""
    n_faces: int = 0
    notes: list[str] = field(default_factory=list)
    elapsed_ms: float = 0.0
    device_name: str = ""
    translation: Any = None  # engine.Translation: taps, input tensor
    translator: Any = None  # engine.Translator that made it (for the feature view)


@dataclass
class FeatureRequest:
    seq: int
    result: TranslateResult
    layer: str
    k: int = 16


@dataclass
class FeatureMaps:
    seq: int
    layer: str
    network: str  # "G" | "F"
    student_shape: tuple[int, int, int]
    student_grid: np.ndarray
    student_channels: list[int]
    student_pca: np.ndarray
    student_heat: np.ndarray
    teacher_side: str  # "P" | "S"
    teacher_tap: str
    teacher_role: str  # "input" | "output": which image the teacher saw
    teacher_shape: tuple[int, int, int] | None = None
    teacher_grid: np.ndarray | None = None
    teacher_channels: list[int] = field(default_factory=list)
    teacher_pca: np.ndarray | None = None
    teacher_heat: np.ndarray | None = None
    teacher_error: str | None = None
    elapsed_ms: float = 0.0


@dataclass
class BatchSummary:
    out_dir: str
    written: list[str]
    problems: list[str]
    cancelled: bool
    total: int
    notes: list[str] = field(default_factory=list)


@dataclass
class ScanReport:
    root: str
    n_pairs: int
    problems: list[str]
    layout: str = ""
    faces_checked: bool = False
    job: int = 0


# ------------------------------------------------------------------------------------------------
class TranslateWorker(QObject):
    """Owns the Translator (built in this worker's thread) and translates single images."""

    model_loaded = Signal(object, object)  # ModelInfo, Translator
    model_failed = Signal(str, str)  # message, detail
    result_ready = Signal(object)  # TranslateResult
    failed = Signal(int, str, str)  # seq, message, detail
    no_face = Signal(int, object, str)  # seq, original image, message
    progress = Signal(int, int, int)  # seq, tiles done, tiles in all (portraits)
    #: start-up work after a load (warm-up, fast-path export or loading), for the status bar;
    #: emitted from this thread and from the fast-path thread (queued to the UI either way)
    preparing = Signal(str)
    #: a fast-path decision arrived: the engine's new description ("CPU…, ONNX Runtime int8"),
    #: the decision's note
    prepared = Signal(str, str)

    def __init__(self) -> None:
        super().__init__()
        self.translator: Any = None
        #: set from the UI thread before a request is queued; older queued requests are skipped
        self.latest_seq = 0
        #: intra-op threads for translations (the app's thread budget); set from the UI thread
        self.threads: int | None = None
        #: the newest request this thread has taken up: latest_seq beyond it means one is queued
        self._taken_seq = 0

    @Slot(str, str, str, bool)
    def load_model(self, path: str, device: str, teacher_path: str, is_default: bool) -> None:
        t0 = time.perf_counter()
        try:
            from sketchstudio.engine import Translator

            tr = Translator(path or None, device=device, teacher_path=teacher_path or None)
            for d in tr.directions:  # build the nets now: failures show at load, first result is fast
                tr.net(d)
        except Exception as exc:  # noqa: BLE001 - reported to the user, app keeps the old model
            msg, detail = describe_exception(exc)
            self.model_failed.emit(msg, detail)
            return
        self.translator = tr
        m = tr.ckpt.meta
        info = ModelInfo(path=str(tr.model_path), name=Path(str(tr.model_path)).name,
                         directions=list(tr.directions), device_name=tr.describe,
                         image_size=int(m.image_size), ngf=int(m.ngf), n_blocks=int(m.n_blocks),
                         step=int(m.step), is_default=is_default, fallback_note=tr.fallback_note,
                         load_ms=(time.perf_counter() - t0) * 1e3, metrics=dict(m.metrics or {}))
        log.info("Model %s loaded on %s in %.0f ms", info.path, info.device_name, info.load_ms)
        tr.set_threads(self.threads)
        self.model_loaded.emit(info, tr)
        self._start_fast_paths(tr)
        self._warm_up(tr, self.latest_seq)

    def _start_fast_paths(self, tr: Any) -> None:
        """Start the fast-path decision now, on its own thread, not after the first slow
        translation: a cached decision is loaded (and warmed up), else the export and the
        measurement run while the user picks a photo. Progress goes to the status bar."""
        dirs = [d for d in tr.directions if tr.fast.worth_tuning(d)] if tr.fast_eligible else []
        if not dirs:
            return
        tr.fast.progress = lambda direction, msg: self.preparing.emit(
            f"Fast path ({DIRECTION_LABELS.get(direction, direction)}): {msg}")
        for fut in tr.prepare_fast_paths(dirs).values():
            fut.add_done_callback(lambda f, tr=tr: self._fast_done(tr, f))

    def _fast_done(self, tr: Any, fut: Any) -> None:
        """Runs on the fast-path thread: only emits (queued to the UI thread)."""
        try:
            note = fut.result().note
        except Exception as exc:  # noqa: BLE001 - the future never raises today; be safe
            note = str(exc)
        if tr is self.translator:
            self.prepared.emit(tr.describe, note)

    def _warm_up(self, tr: Any, seq: int) -> None:
        """One throw-away forward per direction right after loading, in this (compute) thread:
        the first forward of a network pays for memory and kernel set-up, and the user's first
        translation should not. Skipped as soon as a translation is queued (an image given on
        the command line, a drop during the load): that one warms up the network it needs.
        Alignment models load on the first translation. ``seq``: the newest request at the end
        of the load; a newer one, or one not yet taken up, stops the warm-up."""
        import numpy as np

        s = int(tr.image_size)
        blank = np.full((s, s, 3), 128, np.uint8)
        t0 = time.perf_counter()
        for d in tr.directions:
            if self.latest_seq != seq or seq > self._taken_seq or tr is not self.translator:
                return
            self.preparing.emit(f"Warming up the model ({DIRECTION_LABELS.get(d, d)})…")
            try:
                tr.translate(blank, d)
            except Exception as exc:  # noqa: BLE001 - a failed warm-up shows on first use instead
                log.info("warm-up of %s failed: %s", d, exc)
                return
        self.preparing.emit(f"Model ready (warmed up in {time.perf_counter() - t0:.1f} s).")

    @Slot(str)
    def set_teacher(self, path: str) -> None:
        if self.translator is not None:
            self.translator.set_teacher_path(path or None)

    @Slot(object)
    def translate(self, req: TranslateRequest) -> None:
        self._taken_seq = max(self._taken_seq, req.seq)
        if req.seq < self.latest_seq:
            return  # superseded while queued (e.g. several eye drags in a row)
        try:
            res = self._translate(req)
        except _NoFace as nf:
            self.no_face.emit(req.seq, nf.original, nf.message)
            return
        except CancelledError:
            return  # a newer request took over; it reports for itself
        except Exception as exc:  # noqa: BLE001 - shown in the message bar; the app keeps working
            msg, detail = describe_exception(exc)
            self.failed.emit(req.seq, msg, detail)
            return
        if res is not None:
            self.result_ready.emit(res)

    def _translate(self, req: TranslateRequest) -> TranslateResult | None:
        """Decode the source and run :func:`sketchstudio.pipeline.translate_face`; nothing else.

        The pasted result is always made (it is cheap), so the view can toggle it without a re-run.
        """
        import numpy as np

        from sketchstudio.imaging import check_rgb, load_image
        from sketchstudio.pipeline import translate_face

        t0 = time.perf_counter()
        tr = self.translator
        if tr is None:
            raise SketchStudioError("No model is loaded. Open a checkpoint (Model ▸ Open model…) "
                                    "or train one in the Train tab.")
        if isinstance(req.source, str | Path | bytes):
            original = load_image(req.source)
        else:
            original = check_rgb(np.asarray(req.source))
        stale = lambda: req.seq < self.latest_seq  # noqa: E731 - a newer request supersedes this one
        try:
            ft = translate_face(original, tr, direction=req.direction, align=req.align,
                                eyes=req.eyes, grey_sketch=req.grey_sketch, paste_back=True,
                                portrait=req.portrait, portrait_only_for=PHOTO2SKETCH,
                                # taps only when the Feature maps view asks (FeatureWorker): a
                                # plain translation can take the fast exported runtime
                                return_taps=False, faces=load_faces(),
                                progress=lambda done, total: self.progress.emit(req.seq, done, total),
                                cancelled=stale, before_network=stale)
        except (NoFaceFoundError, EyePositionError) as exc:
            raise _NoFace(original, str(exc)) from exc  # either way the user can place the eyes
        if ft is None:
            return None
        return TranslateResult(
            seq=req.seq, name=req.name, original=ft.original, direction=ft.direction,
            guessed_direction=ft.guessed_direction, auto=ft.auto, crop=ft.crop, output=ft.output,
            pasted=ft.pasted, portrait=ft.portrait.image if ft.portrait is not None else None,
            matrix=ft.matrix, eyes=ft.eyes, crop_eyes=ft.crop_eyes, aligned=ft.aligned,
            align_method=ft.method, n_faces=ft.n_faces, notes=ft.notes,
            elapsed_ms=(time.perf_counter() - t0) * 1e3, device_name=tr.describe,
            translation=ft.translation, translator=tr)


class FeatureWorker(QObject):
    """Student taps + the teacher layer they were trained against, rendered as images."""

    maps_ready = Signal(object)  # FeatureMaps
    failed = Signal(int, str, str)

    def __init__(self) -> None:
        super().__init__()
        self.latest_seq = 0
        self._cache_for: Any = None  # the Translation whose teacher taps are cached
        self._cache: dict[str, dict[str, Any]] = {}
        self._taps_for: Any = None  # the Translation whose student taps were computed here
        self._taps: Any = None

    @Slot(object)
    def compute(self, req: FeatureRequest) -> None:
        if req.seq < self.latest_seq:
            return
        try:
            self.maps_ready.emit(self._compute(req))
        except Exception as exc:  # noqa: BLE001 - reported, the view stays usable
            msg, detail = describe_exception(exc)
            self.failed.emit(req.seq, msg, detail)

    def _with_taps(self, res: TranslateResult) -> Any:
        """The translation with the student's taps: the Translate view asks for none (so it can
        run an exported runtime), so they are computed here, once per translation, with torch."""
        if res.translation is not None and res.translation.taps:
            return res.translation
        if self._taps_for is not res.translation or self._taps is None:
            self._taps_for = res.translation
            self._taps = res.translator.translate(res.crop, res.direction, return_taps=True)
        return self._taps

    def _teacher_taps(self, res: TranslateResult, side: str, role: str) -> dict[str, Any]:
        """Teacher taps for ``side``, computed once per translation (they do not depend on the layer)."""
        from sketchstudio.imaging import to_tensor

        if res.translation is not self._cache_for:
            self._cache_for, self._cache = res.translation, {}
        if side not in self._cache:
            tr = res.translator
            x = self._with_taps(res).input_tensor if role == "input" else to_tensor(res.output, tr.image_size)
            self._cache[side] = tr.teacher_features(x)
        return self._cache[side]

    def _compute(self, req: FeatureRequest) -> FeatureMaps:
        from sketchstudio import features as ft
        from sketchstudio.errors import TeacherUnavailableError
        from sketchstudio.vocab import F_TEACHER_PAIRS, G_TEACHER_PAIRS

        t0 = time.perf_counter()
        res = req.result
        g = res.direction == PHOTO2SKETCH
        side, ttap = ft.teacher_counterpart(G_TEACHER_PAIRS if g else F_TEACHER_PAIRS, req.layer)
        role = ft.teacher_input_role(side, res.direction)
        s = ft.as_array(self._with_taps(res).taps[req.layer])
        grid, chans = ft.channel_grid(s, k=req.k)
        fm = FeatureMaps(seq=req.seq, layer=req.layer, network="G" if g else "F",
                         student_shape=tuple(int(v) for v in s.shape), student_grid=grid,
                         student_channels=chans, student_pca=ft.pca_rgb(s), student_heat=ft.heat_map(s),
                         teacher_side=side, teacher_tap=ttap, teacher_role=role)
        try:
            t = ft.as_array(self._teacher_taps(res, side, role)[ttap])
        except TeacherUnavailableError as exc:
            fm.teacher_error = str(exc)
        else:
            fm.teacher_shape = tuple(int(v) for v in t.shape)
            fm.teacher_grid, fm.teacher_channels = ft.channel_grid(t, k=req.k)
            fm.teacher_pca, fm.teacher_heat = ft.pca_rgb(t), ft.heat_map(t)
        fm.elapsed_ms = (time.perf_counter() - t0) * 1e3
        return fm


class BatchWorker(QObject):
    """Translate every image of a folder into an output folder; cancel stops between images (and
    between the tiles of a large portrait)."""

    progress = Signal(int, int, str)  # done, total, current file name
    finished = Signal(object)  # BatchSummary

    def __init__(self, translator: Any, files: list[str], out_dir: str, direction: str = "auto",
                 align: bool = True, paste_back: bool = False, fmt: str = "png",
                 grey_sketch: bool = True, portrait: str | None = None) -> None:
        super().__init__()
        self.translator, self.files, self.out_dir = translator, list(files), out_dir
        self.direction, self.align, self.paste_back, self.fmt = direction, align, paste_back, fmt
        self.grey_sketch, self.portrait = grey_sketch, portrait
        self._cancel = threading.Event()

    def cancel(self) -> None:
        """Thread-safe: called from the UI thread while :meth:`run` is busy."""
        self._cancel.set()

    @Slot()
    def run(self) -> None:
        from sketchstudio.fsutil import output_dir
        from sketchstudio.outputs import split_earlier_outputs

        written: list[str] = []
        problems: list[str] = []
        notes: list[str] = []
        total = len(self.files)
        faces = load_faces() if self.align else (None, "")
        if self.align and faces[0] is None:
            notes.append(faces[1])
            faces = (None, "")  # said once for the batch, not once per image
        files, earlier = split_earlier_outputs([Path(f) for f in self.files], self.out_dir)
        if earlier:  # the previous batch's results, when a folder is translated into itself
            notes.append(f"{len(earlier)} image(s) written there earlier by SketchStudio were not "
                         "translated again.")
            self.files = [str(f) for f in files]
            total = len(self.files)
        try:
            with output_dir(self.out_dir) as out:  # a new folder nothing was written to goes again
                self._translate_each(out, faces, written, problems, notes)
        except SketchStudioError as exc:
            self.finished.emit(BatchSummary(self.out_dir, [], [str(exc)], False, total))
            return
        cancelled = self._cancel.is_set() and len(written) + len(problems) < total
        self.progress.emit(total if not cancelled else len(written), total, "")
        self.finished.emit(BatchSummary(str(out), written, problems, cancelled, total, notes))

    def _translate_each(self, out: Path, faces: Any, written: list[str], problems: list[str],
                        notes: list[str]) -> None:
        """Translate ``self.files`` into ``out`` one by one through the pipeline, collecting what
        was written, what failed and the pipeline's notes ("name: note", as the CLI prints them).
        Outputs never replace an input, each other or a file SketchStudio did not write
        (:class:`~sketchstudio.outputs.OutputNamer`); a full disk stops the batch."""
        from sketchstudio.errors import DiskFullError
        from sketchstudio.imaging import load_image, save_image
        from sketchstudio.outputs import OutputNamer
        from sketchstudio.pipeline import translate_face

        total = len(self.files)
        namer = OutputNamer(out, self.files)
        renamed = 0
        for i, f in enumerate(self.files):
            if self._cancel.is_set():
                break
            name = Path(f).name
            self.progress.emit(i, total, name)
            try:
                ft = translate_face(load_image(f), self.translator, direction=self.direction,
                                    align=self.align, grey_sketch=self.grey_sketch,
                                    paste_back=self.paste_back, portrait=self.portrait,
                                    portrait_only_for=PHOTO2SKETCH, faces=faces,
                                    cancelled=self._cancel.is_set)
                notes.extend(f"{name}: {n}" for n in ft.notes)
                claim = namer.claim(f, output_kind(ft.direction), self.fmt)
                written.append(str(save_image(ft.image, claim.path)))
                renamed += claim.note is not None
            except CancelledError:
                break
            except DiskFullError as exc:
                left = total - i - 1
                problems.append(f"{name}: {exc}" + (f" Stopped; {left} image(s) not translated."
                                                    if left else ""))
                break
            except Exception as exc:  # noqa: BLE001 - one bad file must not stop the batch
                problems.append(f"{name}: {describe_exception(exc)[0]}")
        if renamed:
            notes.append(f"{renamed} result(s) were given a distinct name (such as "
                         f"'<name>.sketch.{self.fmt}') so that no input or other file was overwritten.")


class ScanWorker(QObject):
    """Validate a paired training folder; with ``check_faces`` also run face detection on it."""

    progress = Signal(int, int, int)  # job, done, total
    finished = Signal(object)  # ScanReport

    def __init__(self, root: str, check_faces: bool = False, job: int = 0) -> None:
        super().__init__()
        self.root, self.check_faces, self.job = root, check_faces, job
        self._cancel = threading.Event()

    def cancel(self) -> None:
        self._cancel.set()

    @Slot()
    def run(self) -> None:
        try:
            from trainer.data import scan_pairs

            scan = scan_pairs(self.root)
            report = ScanReport(root=str(scan.root), n_pairs=len(scan.pairs),
                                problems=list(scan.problems), layout=scan.layout)
            if self.check_faces and scan.pairs:
                self._check_faces(scan.pairs, report)
        except Exception as exc:  # noqa: BLE001 - shown as a problem line
            report = ScanReport(root=self.root, n_pairs=0, problems=[describe_exception(exc)[0]])
        report.job = self.job
        self.finished.emit(report)

    def _check_faces(self, pairs: list[Any], report: ScanReport) -> None:
        from sketchstudio.imaging import load_image

        faces, why = load_faces()
        if faces is None:
            report.problems.append(why)
            return
        items = [(p.photo, "photo") for p in pairs] + [(p.sketch, "sketch") for p in pairs]
        for i, (path, kind) in enumerate(items):
            if self._cancel.is_set():
                return
            self.progress.emit(self.job, i, len(items))
            try:
                faces.align(load_image(path), kind=kind)
            except NoFaceFoundError:
                report.problems.append(f"no face found: {path}")
            except SketchStudioError as exc:
                report.problems.append(f"{path}: {exc}")
        report.faces_checked = True


class TrainWorker(QObject):
    """Runs one :class:`trainer.loop.Trainer` job; every trainer event is forwarded as a signal."""

    event = Signal(object)  # trainer.events.TrainEvent
    failed = Signal(str, str)
    finished = Signal()

    def __init__(self, config: Any, resume: bool = False, threads: int | None = None) -> None:
        super().__init__()
        from trainer.events import TrainControl

        self.config, self.resume = config, resume
        #: intra-op threads of the training thread (the app's budget); None: torch's default
        self.threads = threads
        self.control = TrainControl()
        self.result: Any = None

    def pause(self) -> None:
        self.control.pause()

    def resume_training(self) -> None:
        self.control.resume()

    def cancel(self) -> None:
        self.control.cancel()

    @Slot()
    def run(self) -> None:
        try:
            from trainer.loop import Trainer

            if self.threads is not None:
                from sketchstudio.threads import use_threads

                use_threads(self.threads)  # this thread only (see sketchstudio.threads)
            trainer = Trainer(self.config, on_event=self.event.emit, control=self.control,
                              resume=self.resume, preview_features=True)
            self.result = trainer.run()
        except Exception as exc:  # noqa: BLE001 - the panel shows it; the app keeps running
            msg, detail = describe_exception(exc)
            self.failed.emit(msg, detail)
        finally:
            self.finished.emit()


# Note for connections: a worker's signal must go to a bound method of a QObject that lives in the
# UI thread (queued across threads). A plain lambda has no thread affinity and would run in the
# worker's thread, touching widgets from there.
def start_worker(worker: QObject, name: str, entry: Any = None) -> QThread:
    """Move ``worker`` to a new QThread named ``name``, call ``entry`` (a slot) when it starts."""
    thread = QThread()
    thread.setObjectName(name)
    worker.moveToThread(thread)
    if entry is not None:
        thread.started.connect(entry)
    thread.start()
    return thread
