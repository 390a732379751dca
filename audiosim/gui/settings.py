"""What the window remembers between runs (QSettings): layout, library, devices, query options, folders."""

from __future__ import annotations

import json
import os
from pathlib import Path

from PySide6.QtCore import QByteArray, QSettings

MAX_RECENT = 8


class Settings:
    """Typed access to QSettings. ``path`` (or ``$AUDIOSIM_SETTINGS``) stores them in an INI file instead
    of the platform's place: tests and portable installs use it."""

    def __init__(self, path: str | os.PathLike | None = None) -> None:
        path = path or os.environ.get("AUDIOSIM_SETTINGS")
        if path:
            self.qsettings = QSettings(str(path), QSettings.Format.IniFormat)
        else:
            self.qsettings = QSettings("audiosim", "audiosim")

    # -- plumbing -----------------------------------------------------------------------------------------
    def _get(self, key: str, default=None):
        value = self.qsettings.value(key, default)
        return default if value is None else value

    def _set(self, key: str, value) -> None:
        self.qsettings.setValue(key, value)

    def sync(self) -> None:
        self.qsettings.sync()

    # -- layout -------------------------------------------------------------------------------------------
    def layout(self, name: str) -> QByteArray | None:
        value = self.qsettings.value(f"layout/{name}")
        return value if isinstance(value, QByteArray) else None

    def set_layout(self, name: str, state: QByteArray) -> None:
        self._set(f"layout/{name}", state)

    # -- library ------------------------------------------------------------------------------------------
    @property
    def library(self) -> str | None:
        return self._get("library/current") or None

    @library.setter
    def library(self, folder: str) -> None:
        self._set("library/current", folder)
        recent = [folder] + [f for f in self.recent_libraries if f != folder]
        self._set("library/recent", json.dumps(recent[:MAX_RECENT]))

    @property
    def recent_libraries(self) -> list[str]:
        try:
            return [str(f) for f in json.loads(self._get("library/recent", "[]"))]
        except (TypeError, ValueError):
            return []

    def pending_scan(self, library: str) -> list[str]:
        """Roots of an indexing run the window was closed during (resumed on next start)."""
        try:
            return list(json.loads(self._get(f"pending_scan/{_key(library)}", "[]")))
        except (TypeError, ValueError):
            return []

    def set_pending_scan(self, library: str, roots: list[str]) -> None:
        self._set(f"pending_scan/{_key(library)}", json.dumps(roots))

    # -- audio --------------------------------------------------------------------------------------------
    @property
    def output_device(self) -> str | None:
        return self._get("audio/output_device") or None

    @output_device.setter
    def output_device(self, name: str | None) -> None:
        self._set("audio/output_device", name or "")

    @property
    def input_device(self) -> str | None:
        return self._get("audio/input_device") or None

    @input_device.setter
    def input_device(self, name: str | None) -> None:
        self._set("audio/input_device", name or "")

    @property
    def volume(self) -> int:
        return _int(self._get("audio/volume", 80), 80)

    @volume.setter
    def volume(self, value: int) -> None:
        self._set("audio/volume", int(value))

    # -- indexing -----------------------------------------------------------------------------------------
    @property
    def cluster_address(self) -> str | None:
        """Where indexing analyses files: ``local:N``, ``tcp://host:8786``, or None for this computer's pool."""
        return (self._get("indexing/cluster") or "").strip() or None

    @cluster_address.setter
    def cluster_address(self, address: str | None) -> None:
        self._set("indexing/cluster", (address or "").strip())

    # -- query --------------------------------------------------------------------------------------------
    @property
    def k(self) -> int:
        return max(1, _int(self._get("query/k", 50), 50))

    @k.setter
    def k(self, value: int) -> None:
        self._set("query/k", int(value))

    @property
    def level(self) -> str:
        value = self._get("query/level", "segment")
        return value if value in ("segment", "file") else "segment"

    @level.setter
    def level(self, value: str) -> None:
        self._set("query/level", value)

    def flag(self, name: str, default: bool) -> bool:
        value = self._get(f"query/{name}", default)
        return value in (True, "true", "1", 1) if not isinstance(value, bool) else value

    def set_flag(self, name: str, value: bool) -> None:
        self._set(f"query/{name}", bool(value))

    # -- folders ------------------------------------------------------------------------------------------
    def last_folder(self, purpose: str) -> str:
        folder = self._get(f"folders/{purpose}", "")
        return folder if folder and Path(folder).is_dir() else str(Path.home())

    def set_last_folder(self, purpose: str, folder: str | os.PathLike) -> None:
        self._set(f"folders/{purpose}", str(folder))


def _int(value, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _key(library: str) -> str:
    import hashlib

    return hashlib.blake2b(str(library).encode(), digest_size=6).hexdigest()
