"""Exception types shared by the core, trainer, CLIs and GUI.

Every error a user can trigger derives from :class:`SketchStudioError`, so front ends can show
its message as-is (it is written for people) and treat anything else as a bug.
"""


class SketchStudioError(Exception):
    """Base class: the message is a complete, user-facing explanation."""


class ImageError(SketchStudioError):
    """An image file could not be read, is not an image, is corrupt or is too large."""


class CheckpointError(SketchStudioError):
    """A model/checkpoint file is missing, truncated, of another architecture or has bad values."""


class TeacherUnavailableError(SketchStudioError):
    """No VGG-19 teacher weights could be found; the message says how to supply them."""


class DataError(SketchStudioError):
    """A training/evaluation folder is unusable (unpaired, unreadable or missing files)."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or []


class ConfigError(SketchStudioError):
    """A configuration value or command-line flag is out of range."""


class OutputError(SketchStudioError):
    """An output file or folder cannot be written."""


class DiskFullError(OutputError):
    """The file system (or quota) ran out of space; the message says where and how much."""


class NoFaceFoundError(SketchStudioError):
    """Face detection failed; the caller should ask for manual eye positions."""


class EyePositionError(SketchStudioError):
    """Manually given eye positions are unusable (outside the image, too close, not numbers)."""


class CancelledError(SketchStudioError):
    """The user cancelled a long operation (a tiled portrait, a batch); nothing was written."""
