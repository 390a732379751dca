"""Preferences: output and input devices, the default number of results, the cluster indexing runs on."""

from __future__ import annotations

from PySide6.QtWidgets import (QComboBox, QDialog, QDialogButtonBox, QFormLayout, QLabel, QLineEdit, QSpinBox,
                               QWidget)

from audiosim.gui.settings import Settings

SYSTEM_DEFAULT = "System default"


class PreferencesDialog(QDialog):
    def __init__(self, settings: Settings, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Preferences")
        self.settings = settings
        self.output = QComboBox()
        self.input = QComboBox()
        self.k = QSpinBox(minimum=1, maximum=1000, value=settings.k)
        self.cluster = QLineEdit(settings.cluster_address or "")
        self.cluster.setPlaceholderText("empty: this computer; local:4 or tcp://scheduler:8786 for Dask")
        self.cluster.setToolTip("Analyse files on Dask workers while indexing (needs audiosim[cluster]); "
                                "remote workers must see the files at the same paths")
        self.message = QLabel()
        self.message.setWordWrap(True)
        self.message.setStyleSheet("color: #c0392b;")
        outputs, inputs, error = _devices()
        for combo, names, current in ((self.output, outputs, settings.output_device),
                                      (self.input, inputs, settings.input_device)):
            combo.addItem(SYSTEM_DEFAULT, None)
            for name in names:
                combo.addItem(name, name)
            if current and combo.findData(current) < 0:
                combo.addItem(f"{current} (not available)", current)
            combo.setCurrentIndex(max(0, combo.findData(current)))
        if error:
            self.message.setText(error)
        form = QFormLayout(self)
        form.addRow("Output device", self.output)
        form.addRow("Input device (recording)", self.input)
        form.addRow("Results per query (k)", self.k)
        form.addRow("Cluster address", self.cluster)
        form.addRow(self.message)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)

    def accept(self) -> None:
        """Refuse an address indexing could not use (a typo, dask missing) here, not at the next drop."""
        address = self.cluster.text().strip()
        if address:
            from audiosim.cluster import check_cluster_address
            from audiosim.errors import AudiosimError

            try:
                check_cluster_address(address)
            except AudiosimError as exc:
                self.message.setText(str(exc))
                self.cluster.setFocus()
                return
        super().accept()

    def apply(self) -> None:
        self.settings.output_device = self.output.currentData()
        self.settings.input_device = self.input.currentData()
        self.settings.k = self.k.value()
        self.settings.cluster_address = self.cluster.text()


def _devices() -> tuple[list[str], list[str], str | None]:
    from audiosim.playback import AudioDeviceError, input_devices, output_devices

    try:
        return [n for _, n in output_devices()], [n for _, n in input_devices()], None
    except AudioDeviceError as exc:
        return [], [], str(exc)
    except Exception as exc:  # noqa: BLE001 - PortAudio errors: show them, keep the dialog usable
        return [], [], f"cannot list audio devices: {exc}"
