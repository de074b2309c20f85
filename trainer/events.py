"""Events the training loop emits, and the thread-safe control the GUI/CLI uses to steer it."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np

from sketchstudio.features import TapPair


@dataclass
class TrainEvent:
    step: int


@dataclass
class StartEvent(TrainEvent):
    total_steps: int
    steps_per_epoch: int
    device: str
    resumed: bool


@dataclass
class StepEvent(TrainEvent):
    total_steps: int
    epoch: int
    losses: dict[str, float]
    sec_per_step: float
    eta_s: float


@dataclass
class PreviewEvent(TrainEvent):
    """Images of a fixed pair: photo, G(photo), sketch, F(sketch) as uint8 RGB arrays; and, when
    the trainer was asked for them, each student tap next to its teacher tap (12 pairs)."""

    images: dict[str, np.ndarray] = field(default_factory=dict)
    features: list[TapPair] = field(default_factory=list)


@dataclass
class EpochEvent(TrainEvent):
    epoch: int
    mean_losses: dict[str, float]


@dataclass
class ValEvent(TrainEvent):
    """Validation FSIM at ``step`` (fp32, held-out pairs); ``best`` if it is the best so far."""

    photo_fsim: float
    sketch_fsim: float
    subsets: dict[str, dict[str, float]] = field(default_factory=dict)
    best: bool = False

    @property
    def mean_fsim(self) -> float:
        return (self.photo_fsim + self.sketch_fsim) / 2


@dataclass
class CheckpointEvent(TrainEvent):
    path: str


@dataclass
class StateEvent(TrainEvent):
    state: str  # "paused" | "running"


@dataclass
class DoneEvent(TrainEvent):
    path: str
    cancelled: bool


@dataclass
class ErrorEvent(TrainEvent):
    message: str


class TrainControl:
    """Pause / resume / cancel flags, safe to flip from any thread; checked between steps."""

    def __init__(self) -> None:
        self._running = threading.Event()
        self._running.set()
        self._cancel = threading.Event()

    def pause(self) -> None:
        self._running.clear()

    def resume(self) -> None:
        self._running.set()

    def cancel(self) -> None:
        self._cancel.set()
        self._running.set()  # wake a paused loop so it can stop

    @property
    def paused(self) -> bool:
        return not self._running.is_set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def wait_while_paused(self, poll_s: float = 0.2) -> None:
        while not self._running.wait(poll_s):
            if self._cancel.is_set():
                return
