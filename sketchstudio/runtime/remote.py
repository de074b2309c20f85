"""A runner in a child process: :class:`RemoteRunner` is a :class:`~.backends.Runner` whose
ONNX Runtime or OpenVINO session lives in a long-lived child that serves it over pipes.

Why: importing ``onnxruntime`` or ``openvino`` and compiling a model run native code that holds
the GIL; on the tuning thread of the app that stalled the UI thread for 60 ms (warm cache:
runtime import + compile) and 132 ms (cold cache) in issue 23's UI-stall benchmark, over its
50 ms limit. Exports already ran in a child (:mod:`.onnx_export`); with the runners there too the
app process never imports a runtime at all. A crash of a runtime then also cannot take the app
down: a dead child is a :class:`RuntimeError` on the next call, and the Translator goes back to
torch with a note.

The wire format, both ways over the child's stdin and stdout: frames of a 1-byte kind, an 8-byte
little-endian payload length and the payload. The parent sends ``X`` (an input array in ``.npy``
format) or ``Q`` (quit); the child answers a load with ``R`` (ready), ``M`` (runtime package
missing) or ``E`` (error text), and each input with ``Y`` (the output array) or ``E``. The child
also exits when its stdin closes, i.e. when the parent has died. Its stderr is drained by a thread
(an unread pipe would fill and block it) and the last lines go into error messages.

The child does not import torch: ``python -m`` would run ``sketchstudio.runtime``'s ``__init__``,
which imports torch (about 4 s and 600 MB on the 2-core test machine, per child), so a small
bootstrap (``-c``) registers the package without running it and imports only this module and
:mod:`.backends`. For the same reason :mod:`.onnx_export` (torch) is imported only on the parent's
side, inside :class:`RemoteRunner`.
"""

from __future__ import annotations

import collections
import contextlib
import io
import json
import logging
import os
import signal
import struct
import subprocess
import sys
import threading
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import numpy as np

from .backends import BackendMissing, runner_class

log = logging.getLogger(__name__)

#: the child's answer to a load may take this long (OpenVINO compiles the shipped model in
#: seconds; a loaded machine may be ten times slower); then it is killed
LOAD_TIMEOUT_S = 600.0
#: one forward of the shipped model takes 0.5-5 s; a child that takes this long is hung
CALL_TIMEOUT_S = 600.0
#: how long close() waits for a call in flight and then for the child to exit before killing it
CLOSE_WAIT_S = 5.0
STDERR_LINES = 20
_HEADER = struct.Struct("<cQ")
#: ``python -c`` bootstrap of the child: ``sketchstudio.runtime`` as a bare package (its
#: ``__init__``, which imports torch, is not run), then :func:`serve`; argv: RUNTIME_DIR NAME ...
_BOOTSTRAP = """\
import sys, types
pkg = types.ModuleType("sketchstudio.runtime")
pkg.__path__ = [sys.argv[1]]
sys.modules["sketchstudio.runtime"] = pkg
from sketchstudio.runtime.remote import serve
sys.exit(serve(sys.argv[2:]))
"""


class RemoteRunnerError(RuntimeError):
    """The runner's child failed to load, died, or sent a broken reply."""


# -- framing ---------------------------------------------------------------------------------------
def _send(fh: IO[bytes], kind: bytes, payload: bytes = b"") -> None:
    fh.write(_HEADER.pack(kind, len(payload)))
    fh.write(payload)
    fh.flush()


def _read_exactly(fh: IO[bytes], n: int) -> bytes | None:
    data = fh.read(n) if n else b""
    return data if data is not None and len(data) == n else None


def _recv(fh: IO[bytes]) -> tuple[bytes, bytes] | None:
    """The next frame, or None at the end of the stream (also when it ends mid-frame)."""
    head = _read_exactly(fh, _HEADER.size)
    if head is None:
        return None
    kind, n = _HEADER.unpack(head)
    payload = _read_exactly(fh, n)
    return None if payload is None else (kind, payload)


def _encode(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.ascontiguousarray(arr), allow_pickle=False)
    return buf.getvalue()


def _decode(payload: bytes) -> np.ndarray:
    return np.lib.format.read_array(io.BytesIO(payload), allow_pickle=False)


def _error_text(exc: BaseException) -> bytes:
    return f"{type(exc).__name__}: {exc}"[:1000].encode("utf-8", "replace")


# -- the child's side ------------------------------------------------------------------------------
def serve(argv: list[str]) -> int:
    """The child: ``NAME MODEL_PATH THREADS``. Loads the runner, reports, then answers inputs
    until its stdin ends or a ``Q`` frame arrives."""
    name, path, threads = argv[0], argv[1], int(argv[2])
    # a Ctrl-C in the terminal reaches the whole process group: the parent decides what happens
    # (the child ends when its stdin closes), a half-handled interrupt here would only break a call
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    # native code that prints to stdout must not corrupt the frames: fd 1 becomes stderr
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    sys.stdout = sys.stderr
    inp = sys.stdin.buffer
    try:
        try:
            runner = runner_class(name)(name, path, threads)
        except BackendMissing as exc:
            _send(out, b"M", str(exc).encode())
            return 2
        except Exception as exc:  # noqa: BLE001 - any load failure is reported to the parent
            _send(out, b"E", _error_text(exc))
            return 1
        _send(out, b"R", json.dumps({"pid": os.getpid(), "name": name}).encode())
        while True:
            frame = _recv(inp)
            if frame is None or frame[0] == b"Q":  # stdin closed: the parent is gone or done
                return 0
            try:
                y = np.asarray(runner(_decode(frame[1])), np.float32)
            except Exception as exc:  # noqa: BLE001 - reported; the next input may work
                _send(out, b"E", _error_text(exc))
            else:
                _send(out, b"Y", _encode(y))
    except (BrokenPipeError, ConnectionError):  # the parent died while we answered
        return 0


# -- the parent's side -----------------------------------------------------------------------------
def _drain(stream: IO[bytes], lines: collections.deque[str], name: str) -> None:
    """Read the child's stderr to its end (keeping the last lines), so it can never fill up."""
    with contextlib.suppress(OSError, ValueError), stream:
        for raw in stream:
            line = raw.decode("utf-8", "replace").rstrip()
            if line:
                lines.append(line)
                log.debug("%s runner: %s", name, line)


def _end(proc: subprocess.Popen[bytes], forget: Callable[[Any], None]) -> None:
    """Stop a child: close its stdin (it exits at the end of its input), kill it if it does not
    exit in time, and drop it from the child set. Runs once per child (weakref.finalize)."""
    with contextlib.suppress(OSError, ValueError):
        proc.stdin.close()  # type: ignore[union-attr]
    try:
        proc.wait(timeout=CLOSE_WAIT_S)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(OSError):
            proc.kill()
        proc.wait()
    forget(proc)
    with contextlib.suppress(OSError, ValueError):
        proc.stdout.close()  # type: ignore[union-attr]


class RemoteRunner:
    """A runner (``name``: "onnx-fp32", "openvino-int8", ...) of the model at ``path`` with
    ``threads`` intra-op threads, loaded and run in a child process.

    The constructor returns once the child has loaded the model, or raises: :class:`BackendMissing`
    when the runtime package is not installed there, :class:`RemoteRunnerError` (a RuntimeError)
    with the child's reason when the model does not load, ``ExportError`` when the process is
    exiting. Calls are serialised by a lock (one child answers one input at a time); a dead or
    hung child makes a call raise :class:`RemoteRunnerError`. :meth:`close` ends the child; so do
    garbage collection, :func:`.onnx_export.stop_children` and the parent's death.
    """

    def __init__(self, name: str, path: str | os.PathLike[str], threads: int) -> None:
        # imported here, not at the top: onnx_export imports torch, which the child must not
        from . import onnx_export

        runner_class(name)  # an unknown name is a ValueError before any process starts
        self.name, self.threads, self.path = name, max(1, int(threads)), Path(path)
        self._lock = threading.Lock()
        self._closed = False
        self._timed_out: float | None = None  # the timeout after which the watchdog killed it
        self._stderr: collections.deque[str] = collections.deque(maxlen=STDERR_LINES)
        self._proc: subprocess.Popen[bytes] = onnx_export.start_child(
            ["-c", _BOOTSTRAP, str(Path(__file__).resolve().parent), name, str(self.path),
             str(self.threads)], self.threads, what=f"{name} runner",
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self._finalize = weakref.finalize(self, _end, self._proc, onnx_export.forget_child)
        self._drainer = threading.Thread(target=_drain, args=(self._proc.stderr, self._stderr, name),
                                         name=f"{name}-runner-stderr", daemon=True)
        self._drainer.start()
        try:
            kind, payload = self._reply(LOAD_TIMEOUT_S, f"loading {self.path.name}")
            text = payload.decode("utf-8", "replace")
            if kind == b"M":
                raise BackendMissing(text)
            if kind == b"E":
                raise RemoteRunnerError(f"{name} could not load {self.path.name}: {text}")
            if kind != b"R":
                raise RemoteRunnerError(f"{name} runner process: unexpected reply {kind!r} to a load")
        except BaseException:
            self.close()
            raise
        log.info("%s runner of %s loaded in process %d (%d thread(s))", name, self.path.name,
                 self._proc.pid, self.threads)

    @property
    def pid(self) -> int:
        return self._proc.pid

    @property
    def alive(self) -> bool:
        return not self._closed and self._proc.poll() is None

    def _kill_for_timeout(self, timeout: float) -> None:
        self._timed_out = timeout
        with contextlib.suppress(OSError):
            self._proc.kill()

    def _died(self, doing: str) -> str:
        """Why the child stopped answering, for the RuntimeError of the caller."""
        try:
            rc: int | None = self._proc.wait(timeout=CLOSE_WAIT_S)
        except subprocess.TimeoutExpired:
            rc = None
        self._drainer.join(timeout=1.0)  # its last lines, if it wrote any before dying
        why = (f"was killed after {self._timed_out:.0f} s without an answer" if self._timed_out
               else "was stopped: the app is exiting" if _stopping()
               else f"exited (status {rc})" if rc is not None else "stopped answering")
        last = self._stderr[-1][:300] if self._stderr else ""
        return f"the {self.name} runner process {why} while {doing}" + (f": {last}" if last else "")

    def _reply(self, timeout: float, doing: str) -> tuple[bytes, bytes]:
        """The child's next frame; a watchdog kills a child that does not answer in time."""
        timer = threading.Timer(timeout, self._kill_for_timeout, args=(timeout,))
        timer.daemon = True
        timer.start()
        try:
            frame = _recv(self._proc.stdout)  # type: ignore[arg-type]
        except (OSError, ValueError):
            frame = None
        finally:
            timer.cancel()
        if frame is None:
            raise RemoteRunnerError(self._died(doing))
        return frame

    def __call__(self, x: np.ndarray) -> np.ndarray:
        payload = _encode(np.ascontiguousarray(x, np.float32))
        with self._lock:
            if self._closed:
                raise RemoteRunnerError(f"the {self.name} runner is closed")
            try:
                _send(self._proc.stdin, b"X", payload)  # type: ignore[arg-type]
            except (OSError, ValueError) as exc:  # a broken pipe: the child is gone
                raise RemoteRunnerError(self._died("taking an input")) from exc
            kind, reply = self._reply(CALL_TIMEOUT_S, "running")
        if kind == b"Y":
            try:
                return _decode(reply)
            except ValueError as exc:
                raise RemoteRunnerError(f"the {self.name} runner sent a broken array ({exc})") from exc
        if kind == b"E":
            raise RemoteRunnerError(f"{self.name} failed in its process: "
                                    f"{reply.decode('utf-8', 'replace')[:300]}")
        raise RemoteRunnerError(f"the {self.name} runner process: unexpected reply {kind!r}")

    def close(self) -> None:
        """End the child (idempotent): after a call in flight, if it ends within a few seconds."""
        got = self._lock.acquire(timeout=CLOSE_WAIT_S)
        try:
            self._closed = True
            self._finalize()
        finally:
            if got:
                self._lock.release()

    def __repr__(self) -> str:
        return (f"RemoteRunner({self.name!r}, {str(self.path)!r}, threads={self.threads}, "
                f"pid={self._proc.pid})")


def _stopping() -> bool:
    from . import onnx_export

    return onnx_export.stopping()


def close_runner(runner: object) -> None:
    """Close ``runner`` if it holds a child (a RemoteRunner); in-process runners need nothing."""
    close = getattr(runner, "close", None)
    if callable(close):
        with contextlib.suppress(Exception):  # closing must never break the caller's fallback
            close()


if __name__ == "__main__":  # for debugging by hand; the app uses the torch-free bootstrap above
    sys.exit(serve(sys.argv[1:]))
