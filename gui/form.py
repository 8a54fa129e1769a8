"""The generation form: prompt, negative prompt, model, sampler, steps, CFG, size, seed and batch count.

The form only collects values. :meth:`GenerationForm.values` gives keyword arguments for
:func:`engine.request.build_request`, which does all the checking; :meth:`GenerationForm.mark_errors` shows
the fields it rejected. The form never talks to the engine.
"""

from __future__ import annotations

from typing import Any, Iterable

from PySide6.QtCore import QSignalBlocker, Qt, Signal
from PySide6.QtGui import QFontMetrics
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QSizePolicy,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from engine.request import BATCH_RANGE, CFG_RANGE, SCHEDULERS, SEED_MAX, SIZE_RANGE, STEPS_RANGE, GenerationRequest

#: (width, height, label) shown in the size menu
SIZE_PRESETS: tuple[tuple[int, int, str], ...] = (
    (512, 512, "Square"),
    (768, 512, "Landscape 3:2"),
    (512, 768, "Portrait 2:3"),
    (912, 512, "Wide 16:9"),
    (1024, 1024, "Square, large (SDXL)"),
    (1152, 896, "Landscape, large (SDXL)"),
    (896, 1152, "Portrait, large (SDXL)"),
    (256, 256, "Small"),
    (128, 128, "Tiny"),
    (64, 64, "Icon (emoji model)"),
)

ADD_MODEL = "\x00add-model"

#: Plain-words explanations shown as tooltips.
TIPS = {
    "prompt": "What the picture should show. Ctrl+Enter generates.",
    "negative_prompt": "What the picture should not show (optional).",
    "model": "The model that paints the picture. Add your own diffusers folder or .safetensors file.",
    "scheduler": "The sampler: how the noise is removed step by step. Different samplers give different looks.",
    "steps": "How many denoising steps. More steps: more detail and more time.",
    "cfg": "Guidance (CFG scale): how strictly the picture follows the prompt. 5–9 is usual; 0–2 for LCM models.",
    "size": "Picture size in pixels; multiples of 8 (other sizes are rounded).",
    "seed": f"The starting noise. The same seed and settings make the same picture. A number from 0 to {SEED_MAX}, "
    "or \"random\".",
    "batch_count": "How many pictures to make, one after another; picture k uses seed + k.",
}


class PromptEdit(QPlainTextEdit):
    """A multi-line text field sized to a few lines, with Tab moving focus instead of inserting a tab."""

    def __init__(self, lines: int, placeholder: str, parent: QWidget | None = None):
        super().__init__(parent)
        self.setPlaceholderText(placeholder)
        self.setTabChangesFocus(True)
        self.setLineWrapMode(QPlainTextEdit.LineWrapMode.WidgetWidth)
        fm = QFontMetrics(self.font())
        self.setMinimumHeight(fm.lineSpacing() * lines + 14)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)

    def text(self) -> str:
        return self.toPlainText()


class GenerationForm(QWidget):
    changed = Signal()
    add_model_requested = Signal()
    #: the person picked another model in the menu (its value: a name or a path)
    model_chosen = Signal(str)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self._last_seed: int | None = None
        self._model_index = 0

        self.prompt = PromptEdit(4, "Describe the picture… e.g. a lighthouse on a cliff at dusk, oil painting")
        self.negative = PromptEdit(2, "What to leave out (optional)")

        self.model = QComboBox()
        self.model.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.model.setMinimumContentsLength(10)
        self.model.activated.connect(self._model_activated)
        self.scheduler = QComboBox()
        self.scheduler.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.scheduler.setMinimumContentsLength(10)
        self.scheduler.addItems(SCHEDULERS)

        self.steps = QSpinBox()
        self.steps.setRange(*STEPS_RANGE)
        self.cfg = QDoubleSpinBox()
        self.cfg.setRange(*CFG_RANGE)
        self.cfg.setSingleStep(0.5)
        self.cfg.setDecimals(1)

        self.size_preset = QComboBox()
        self.size_preset.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.size_preset.setMinimumContentsLength(10)
        for w, h, label in SIZE_PRESETS:
            self.size_preset.addItem(f"{w} × {h}  ·  {label}", f"{w}x{h}")
        self.size_preset.addItem("Custom", None)
        self.size_preset.activated.connect(self._preset_chosen)
        self.width_box = QSpinBox()
        self.height_box = QSpinBox()
        for box in (self.width_box, self.height_box):
            box.setRange(*SIZE_RANGE)
            box.setSingleStep(8)
            box.valueChanged.connect(self._size_changed)
        self.swap_size = QToolButton()
        self.swap_size.setText("⇄")
        self.swap_size.setToolTip("Swap width and height")
        self.swap_size.clicked.connect(self._swap)

        self.seed = QLineEdit()
        self.seed.setPlaceholderText("random")
        self.seed.setClearButtonEnabled(True)
        self.random_seed = QPushButton("Random")
        self.random_seed.setToolTip("Use a new random seed for every generation")
        self.random_seed.clicked.connect(lambda: self.seed.setText("random"))
        self.reuse_seed = QPushButton("Reuse last")
        self.reuse_seed.setToolTip("Use the seed of the last picture again")
        self.reuse_seed.setEnabled(False)
        self.reuse_seed.clicked.connect(self.reuse_last_seed)

        self.batch = QSpinBox()
        self.batch.setRange(*BATCH_RANGE)

        self._fields: dict[str, QWidget] = {
            "prompt": self.prompt,
            "negative_prompt": self.negative,
            "model": self.model,
            "scheduler": self.scheduler,
            "steps": self.steps,
            "cfg": self.cfg,
            "width": self.width_box,
            "height": self.height_box,
            "seed": self.seed,
            "batch_count": self.batch,
        }
        for name, widget in self._fields.items():
            tip = TIPS.get(name) or TIPS["size"]
            widget.setToolTip(tip)
            widget.setAccessibleName(name.replace("_", " "))
        self.size_preset.setToolTip(TIPS["size"])

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(6)
        layout.addWidget(_heading("Prompt"))
        layout.addWidget(self.prompt, 2)
        layout.addWidget(_heading("Negative prompt"))
        layout.addWidget(self.negative, 1)

        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        form.setLabelAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        form.setHorizontalSpacing(10)
        form.setVerticalSpacing(8)
        form.addRow("Model", self.model)
        form.addRow("Sampler", self.scheduler)
        form.addRow("Steps", self.steps)
        form.addRow("CFG scale", self.cfg)
        form.addRow("Size", self.size_preset)
        size_row = QHBoxLayout()
        size_row.setSpacing(4)
        size_row.addWidget(self.width_box, 1)
        size_row.addWidget(QLabel("×"))
        size_row.addWidget(self.height_box, 1)
        size_row.addWidget(self.swap_size)
        form.addRow("", size_row)
        form.addRow("Seed", self.seed)
        seed_buttons = QHBoxLayout()
        seed_buttons.setSpacing(4)
        seed_buttons.addWidget(self.random_seed)
        seed_buttons.addWidget(self.reuse_seed)
        form.addRow("", seed_buttons)
        form.addRow("Batch count", self.batch)
        layout.addSpacing(4)
        layout.addLayout(form)

        for sig in (
            self.prompt.textChanged,
            self.negative.textChanged,
            self.scheduler.currentIndexChanged,
            self.steps.valueChanged,
            self.cfg.valueChanged,
            self.seed.textChanged,
            self.batch.valueChanged,
        ):
            sig.connect(self.changed)
        for name, widget in self._fields.items():
            _connect_edit(widget, lambda *_, n=name: self._clear_error(n))

        self.set_values(GenerationRequest(prompt=""))
        self.seed.setText("random")

    # -- values -----------------------------------------------------------------------------------------------
    def values(self) -> dict[str, Any]:
        """Keyword arguments for :func:`engine.request.build_request`."""
        return {
            "prompt": self.prompt.toPlainText().strip(),
            "negative_prompt": self.negative.toPlainText().strip(),
            "seed": self.seed.text().strip() or "random",
            "steps": self.steps.value(),
            "cfg": round(self.cfg.value(), 2),
            "width": self.width_box.value(),
            "height": self.height_box.value(),
            "scheduler": self.scheduler.currentText(),
            "model": self.model_value(),
            "batch_count": self.batch.value(),
        }

    def set_values(self, request: GenerationRequest | dict[str, Any], *, with_seed: bool = True) -> None:
        """Fill the form from a request (or a dict of the same fields). Unknown models are added to the list."""
        data = request if isinstance(request, dict) else request.to_dict()
        if "prompt" in data:
            self.prompt.setPlainText(str(data["prompt"]))
        if "negative_prompt" in data:
            self.negative.setPlainText(str(data["negative_prompt"]))
        if "scheduler" in data and data["scheduler"] in SCHEDULERS:
            self.scheduler.setCurrentText(data["scheduler"])
        for key, box in (("steps", self.steps), ("width", self.width_box), ("height", self.height_box),
                         ("batch_count", self.batch)):
            if isinstance(data.get(key), int):
                box.setValue(data[key])
        if isinstance(data.get("cfg"), (int, float)):
            self.cfg.setValue(float(data["cfg"]))
        if with_seed and "seed" in data:
            self.seed.setText(str(data["seed"]))
        if isinstance(data.get("model"), str):
            self.select_model(data["model"])
        self._sync_preset()
        self.clear_errors()

    def set_size(self, width: int, height: int) -> None:
        with QSignalBlocker(self.width_box), QSignalBlocker(self.height_box):
            self.width_box.setValue(width)
            self.height_box.setValue(height)
        self._size_changed()

    def set_seed(self, seed: int | str) -> None:
        self.seed.setText(str(seed))
        self._clear_error("seed")

    def set_last_seed(self, seed: int | None) -> None:
        self._last_seed = seed
        self.reuse_seed.setEnabled(seed is not None)
        self.reuse_seed.setToolTip(
            f"Use the seed of the last picture again ({seed})" if seed is not None else "No picture made yet"
        )

    def last_seed(self) -> int | None:
        return self._last_seed

    def reuse_last_seed(self) -> None:
        if self._last_seed is not None:
            self.set_seed(self._last_seed)

    # -- models -----------------------------------------------------------------------------------------------
    def set_models(self, models: Iterable[tuple[str, str, str]], current: str | None = None) -> None:
        """Fill the model menu with (value, label, tooltip) triples; keeps the current choice when it exists."""
        keep = self.model_value() if current is None else current
        with QSignalBlocker(self.model):
            self.model.clear()
            for value, label, tip in models:
                self.model.addItem(label, value)
                self.model.setItemData(self.model.count() - 1, tip, Qt.ItemDataRole.ToolTipRole)
            if self.model.count() == 0:
                self.model.addItem("No model yet", "")
                self.model.model().item(0).setEnabled(False)
            self.model.insertSeparator(self.model.count())
            self.model.addItem("Add model…", ADD_MODEL)
        self.select_model(keep)

    def has_models(self) -> bool:
        return any(self.model.itemData(i) not in (ADD_MODEL, "", None) for i in range(self.model.count()))

    def select_model(self, value: str) -> None:
        idx = self.model.findData(value) if value else -1
        if idx < 0 and value:
            # A model named by a request (e.g. opened from a PNG) that is not in the list: show it anyway, so the
            # request is kept as it was; the engine reports clearly if it cannot be found.
            with QSignalBlocker(self.model):
                self.model.insertItem(0, f"{_short_name(value)} (not installed)", value)
                self.model.setItemData(0, value, Qt.ItemDataRole.ToolTipRole)
            idx = 0
        if idx < 0:
            idx = 0
        with QSignalBlocker(self.model):
            self.model.setCurrentIndex(idx)
        self._model_index = idx

    def model_value(self) -> str:
        value = self.model.currentData()
        return "" if value in (None, ADD_MODEL) else str(value)

    def _model_activated(self, index: int) -> None:
        if self.model.itemData(index) == ADD_MODEL:
            with QSignalBlocker(self.model):
                self.model.setCurrentIndex(self._model_index)
            self.add_model_requested.emit()
        else:
            changed = index != self._model_index
            self._model_index = index
            self.changed.emit()
            if changed:
                self.model_chosen.emit(self.model_value())

    # -- size -------------------------------------------------------------------------------------------------
    def _preset_chosen(self, index: int) -> None:
        size = self.size_preset.itemData(index)
        if size:
            w, h = (int(v) for v in size.split("x"))
            with QSignalBlocker(self.width_box), QSignalBlocker(self.height_box):
                self.width_box.setValue(w)
                self.height_box.setValue(h)
            self.changed.emit()

    def _size_changed(self) -> None:
        self._sync_preset()
        self.changed.emit()

    def _swap(self) -> None:
        w, h = self.width_box.value(), self.height_box.value()
        with QSignalBlocker(self.width_box), QSignalBlocker(self.height_box):
            self.width_box.setValue(h)
            self.height_box.setValue(w)
        self._size_changed()

    def _sync_preset(self) -> None:
        idx = self.size_preset.findData(f"{self.width_box.value()}x{self.height_box.value()}")
        with QSignalBlocker(self.size_preset):
            self.size_preset.setCurrentIndex(idx if idx >= 0 else self.size_preset.count() - 1)

    # -- errors -----------------------------------------------------------------------------------------------
    def mark_errors(self, errors: dict[str, str]) -> None:
        """Highlight the fields :func:`build_request` rejected; the first one gets the focus."""
        self.clear_errors()
        first = None
        for name, message in errors.items():
            widget = self._fields.get(name)
            if widget is None:
                continue
            widget.setProperty("invalid", True)
            widget.setToolTip(message)
            _repolish(widget)
            first = first or widget
        if first is not None:
            first.setFocus(Qt.FocusReason.OtherFocusReason)

    def error_fields(self) -> list[str]:
        return [name for name, w in self._fields.items() if w.property("invalid")]

    def clear_errors(self) -> None:
        for name in self._fields:
            self._clear_error(name)

    def _clear_error(self, name: str) -> None:
        widget = self._fields[name]
        if widget.property("invalid"):
            widget.setProperty("invalid", False)
            widget.setToolTip(TIPS.get(name) or TIPS["size"])
            _repolish(widget)


def _heading(text: str) -> QLabel:
    label = QLabel(text)
    label.setObjectName("FieldHeading")
    return label


def _repolish(widget: QWidget) -> None:
    widget.style().unpolish(widget)
    widget.style().polish(widget)
    widget.update()


def _connect_edit(widget: QWidget, slot) -> None:
    if isinstance(widget, QPlainTextEdit):
        widget.textChanged.connect(slot)
    elif isinstance(widget, QLineEdit):
        widget.textEdited.connect(slot)
    elif isinstance(widget, (QSpinBox, QDoubleSpinBox)):
        widget.valueChanged.connect(slot)
    elif isinstance(widget, QComboBox):
        widget.currentIndexChanged.connect(slot)


def _short_name(value: str) -> str:
    text = value.rstrip("/\\")
    for sep in ("/", "\\"):
        text = text.rsplit(sep, 1)[-1]
    return text or value
