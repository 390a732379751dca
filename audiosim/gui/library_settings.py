"""Library ▸ Storage…: where the library keeps its vectors, and a switch to another store.

The dialog only builds a store spec (`audiosim.gui.library_ops.build_store_spec`); the window then runs
``store copy`` (`audiosim.library.store_ops.copy_store`) in its writer thread, as the CLI does.
"""

from __future__ import annotations

from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QWidget,
)

from audiosim.gui.library_ops import STORE_KINDS, build_store_spec, store_kind_of


class StorageDialog(QDialog):
    """Shows the current store and metadata DB; ``chosen_spec()`` is the store to switch to (or None)."""

    def __init__(self, info: dict, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Library storage")
        self.info = info
        self.kind = QComboBox()
        for key, (label, _hint) in STORE_KINDS.items():
            self.kind.addItem(label, key)
        self.location = QLineEdit()
        self.browse = QPushButton("Browse…")
        self.browse.clicked.connect(self._browse)
        self.message = QLabel()
        self.message.setWordWrap(True)
        self.message.setStyleSheet("color: #c0392b;")
        current_kind, current_location = store_kind_of(info["store_spec"])
        self.kind.setCurrentIndex(self.kind.findData(current_kind))
        self.location.setText(current_location)
        self.kind.currentIndexChanged.connect(self._kind_changed)
        self._kind_changed()
        row = QHBoxLayout()
        row.addWidget(self.location)
        row.addWidget(self.browse)
        form = QFormLayout(self)
        form.addRow("Current store", QLabel(info["store"]))
        form.addRow("Metadata database", QLabel(info["db"]))
        form.addRow("Vector store", self.kind)
        form.addRow("Location", row)
        form.addRow(QLabel("Switching copies every vector to the new store; the old one is left as it was."))
        form.addRow(self.message)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok
                                        | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.accepted.connect(self._accept)
        self.buttons.rejected.connect(self.reject)
        form.addRow(self.buttons)

    def _kind_changed(self) -> None:
        key = self.kind.currentData()
        hint = STORE_KINDS[key][1]
        self.location.setEnabled(hint is not None)
        self.browse.setEnabled(key == "milvus-lite")
        self.location.setPlaceholderText(hint or "in the library folder")

    def _browse(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Milvus Lite file", self.location.text() or "vectors.db",
                                              "Milvus Lite (*.db)")
        if path:
            self.location.setText(path)

    def chosen_spec(self) -> str | None:
        """The spec of the chosen store, or None when it is the current one."""
        spec = build_store_spec(self.kind.currentData(), self.location.text())
        return None if spec == self.info["store_spec"] else spec

    def _accept(self) -> None:
        from audiosim.errors import AudiosimError

        try:
            self.chosen_spec()
        except AudiosimError as exc:
            self.message.setText(str(exc))
            return
        self.accept()
