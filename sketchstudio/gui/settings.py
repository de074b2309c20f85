"""Persistent user preferences (QSettings): window geometry, last folders, recent files, options.

One small typed wrapper instead of string keys scattered over the widgets, so that a renamed key
or a wrong type (INI files return strings) cannot silently lose a preference.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QByteArray, QSettings

ORGANIZATION = "SketchStudio"
APPLICATION = "SketchStudio"
MAX_RECENT = 8


class Settings:
    """Typed access to the app's QSettings; tests pass their own (INI file in a temp folder)."""

    def __init__(self, qsettings: QSettings | None = None) -> None:
        self.q = qsettings if qsettings is not None else QSettings(ORGANIZATION, APPLICATION)

    @classmethod
    def at(cls, path: str | Path) -> Settings:
        """Settings stored in an INI file at ``path`` (tests, screenshots, benchmarks)."""
        return cls(QSettings(str(path), QSettings.Format.IniFormat))

    # --- window -------------------------------------------------------------------------------
    def geometry(self) -> QByteArray | None:
        v = self.q.value("window/geometry")
        return v if isinstance(v, QByteArray) and not v.isEmpty() else None

    def set_geometry(self, data: QByteArray) -> None:
        self.q.setValue("window/geometry", data)

    def current_tab(self) -> int:
        return int(self.q.value("window/tab", 0, type=int))

    def set_current_tab(self, index: int) -> None:
        self.q.setValue("window/tab", int(index))

    # --- folders and recent files -------------------------------------------------------------
    def last_dir(self, key: str) -> str:
        """Last folder used for ``key`` ("open", "save", "batch", "train_data", ...), or home."""
        v = str(self.q.value(f"dirs/{key}", "") or "")
        return v if v and Path(v).is_dir() else str(Path.home())

    def set_last_dir(self, key: str, path: str | Path) -> None:
        p = Path(path)
        self.q.setValue(f"dirs/{key}", str(p if p.is_dir() else p.parent))

    def _list(self, key: str) -> list[str]:
        v = self.q.value(key, [])
        if isinstance(v, str):  # QSettings returns a bare string for one-element lists
            v = [v] if v else []
        return [str(x) for x in (v or [])]

    def recent(self, kind: str) -> list[str]:
        """Recent ``kind`` ("models" or "images") paths that still exist, newest first."""
        return [p for p in self._list(f"recent/{kind}") if Path(p).exists()]

    def add_recent(self, kind: str, path: str | Path) -> list[str]:
        try:
            p = str(Path(path).resolve())
        except (OSError, RuntimeError):  # a symlink loop: keep the path as given (3.11 raises here)
            p = str(Path(path).absolute())
        items = [p] + [x for x in self._list(f"recent/{kind}") if x != p]
        items = items[:MAX_RECENT]
        self.q.setValue(f"recent/{kind}", items)
        return items

    # --- options ------------------------------------------------------------------------------
    def _bool(self, key: str, default: bool) -> bool:
        return bool(self.q.value(key, default, type=bool))

    @property
    def force_cpu(self) -> bool:
        return self._bool("device/force_cpu", False)

    @force_cpu.setter
    def force_cpu(self, value: bool) -> None:
        self.q.setValue("device/force_cpu", bool(value))

    @property
    def device(self) -> str:
        """The device string the engine and trainer get ("cpu" when forced, else "auto")."""
        return "cpu" if self.force_cpu else "auto"

    @property
    def model_path(self) -> str:
        """The model the user last loaded ("" = the shipped default)."""
        return str(self.q.value("model/path", "") or "")

    @model_path.setter
    def model_path(self, value: str) -> None:
        self.q.setValue("model/path", str(value or ""))

    @property
    def teacher_path(self) -> str:
        return str(self.q.value("model/teacher", "") or "")

    @teacher_path.setter
    def teacher_path(self, value: str) -> None:
        self.q.setValue("model/teacher", str(value or ""))

    @property
    def align_faces(self) -> bool:
        return self._bool("translate/align", True)

    @align_faces.setter
    def align_faces(self, value: bool) -> None:
        self.q.setValue("translate/align", bool(value))

    @property
    def paste_back(self) -> bool:
        return self._bool("translate/paste_back", False)

    @paste_back.setter
    def paste_back(self, value: bool) -> None:
        self.q.setValue("translate/paste_back", bool(value))

    @property
    def portrait(self) -> bool:
        """Photo→sketch draws a head-and-shoulders portrait (the app's default), not just the crop."""
        return self._bool("translate/portrait", True)

    @portrait.setter
    def portrait(self, value: bool) -> None:
        self.q.setValue("translate/portrait", bool(value))

    @property
    def grey_sketch(self) -> bool:
        return self._bool("translate/grey_sketch", True)

    @grey_sketch.setter
    def grey_sketch(self, value: bool) -> None:
        self.q.setValue("translate/grey_sketch", bool(value))

    def value(self, key: str, default: object = None) -> object:
        return self.q.value(key, default)

    def set_value(self, key: str, value: object) -> None:
        self.q.setValue(key, value)

    def sync(self) -> None:
        self.q.sync()
