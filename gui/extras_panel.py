"""LoRAs and embeddings in the form, the way AUTOMATIC1111 people know them: picking one writes it into the
prompt (``<lora:name:weight>`` for a LoRA, the embedding's word for an embedding), so the prompt stays the one
place that says what a picture uses, and a prompt pasted from an A1111 picture means the same here.

The lists are the ``.safetensors`` files in the models folder's ``loras`` and ``embeddings`` folders (subfolders
too), read again with Refresh. Bound to a :class:`gui.viewmodel.FormModel`; GUI thread only.
"""

from __future__ import annotations

from PySide6.QtCore import QUrl
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QGridLayout,
    QGroupBox,
    QPushButton,
    QWidget,
)

from engine import addon_files, paths
from engine.gallery.infotext import format_number

from .viewmodel import FormModel


def lora_tag(name: str, weight: float) -> str:
    return f"<lora:{name}:{format_number(weight)}>"


def add_to_prompt(prompt: str, text: str) -> str:
    """``prompt`` with ``text`` added at its end (with a comma before it where the prompt does not end in one)."""
    stripped = prompt.rstrip()
    if not stripped:
        return text
    return f"{stripped}{'' if stripped.endswith(',') else ','} {text}"


class ExtrasPanel(QGroupBox):
    def __init__(self, form: FormModel, parent: QWidget | None = None):
        super().__init__("LoRAs and embeddings", parent)
        self._form = form
        self.loras = QComboBox()
        self.loras.setToolTip("LoRA files in your models folder's loras folder")
        self.weight = QDoubleSpinBox(minimum=-4.0, maximum=4.0, singleStep=0.1, decimals=2, value=1.0)
        self.weight.setToolTip("How strongly the LoRA applies (the number in <lora:name:weight>)")
        self.add_lora = QPushButton("Add to prompt")
        self.add_lora.setToolTip("Write <lora:name:weight> into the prompt; change or remove it there")
        self.embeddings = QComboBox()
        self.embeddings.setToolTip("Textual-inversion embeddings in your models folder's embeddings folder")
        self.add_embedding = QPushButton("Add to prompt")
        self.add_embedding.setToolTip("Write the embedding's word into the prompt")
        self.refresh_button = QPushButton("Refresh")
        self.open_button = QPushButton("Open folder")
        self.open_button.setToolTip("Put LoRA and embedding .safetensors files in these folders")
        grid = QGridLayout(self)
        grid.addWidget(self.loras, 0, 0)
        grid.addWidget(self.weight, 0, 1)
        grid.addWidget(self.add_lora, 0, 2)
        grid.addWidget(self.embeddings, 1, 0, 1, 2)
        grid.addWidget(self.add_embedding, 1, 2)
        grid.addWidget(self.refresh_button, 2, 1)
        grid.addWidget(self.open_button, 2, 2)
        grid.setColumnStretch(0, 1)
        self.add_lora.clicked.connect(self.insert_lora)
        self.add_embedding.clicked.connect(self.insert_embedding)
        self.refresh_button.clicked.connect(self.refresh)
        self.open_button.clicked.connect(self.open_folder)
        self.refresh()

    def refresh(self) -> None:
        for combo, folder, what in ((self.loras, paths.loras_dir(), "LoRAs"),
                                    (self.embeddings, paths.embeddings_dir(), "embeddings")):
            names = sorted({path.stem for path in addon_files.listing(folder).values()}, key=str.lower)
            combo.clear()
            combo.addItems(names)
            combo.setEnabled(bool(names))
            if not names:
                combo.addItem(f"No {what} in {folder.name}/")
        self.add_lora.setEnabled(self.loras.isEnabled())
        self.add_embedding.setEnabled(self.embeddings.isEnabled())

    def insert_lora(self) -> None:
        if self.loras.isEnabled():
            prompt = self._form.value("prompt")
            self._form.set_value("prompt", add_to_prompt(prompt, lora_tag(self.loras.currentText(), self.weight.value())))

    def insert_embedding(self) -> None:
        if self.embeddings.isEnabled():
            self._form.set_value("prompt", add_to_prompt(self._form.value("prompt"), self.embeddings.currentText()))

    def open_folder(self) -> None:
        for folder in (paths.loras_dir(), paths.embeddings_dir()):
            folder.mkdir(parents=True, exist_ok=True)
        QDesktopServices.openUrl(QUrl.fromLocalFile(str(paths.loras_dir().parent)))
