"""The generation form, built from the field registry and bound to a :class:`gui.viewmodel.FormModel`.

Every row of :data:`engine.fields.FIELDS` gets an editor chosen by its kind (text, int, float, seed, sampler,
model) with the registry's label, tooltip, range and choices; edits go to the form model and the model's changes
come back to the editors, so the form holds no values of its own. Validation is the request builder's; the form
only marks the fields named in the model's errors. A new registry field appears here without code; only its place
in the layout (:data:`ROW_ORDER`) and a placeholder text are the form's choice. GUI thread only.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from PySide6.QtCore import QEvent, QObject, QSignalBlocker, QSize, QTimer, Qt, Signal, SignalInstance
from PySide6.QtGui import QFontMetrics
from PySide6.QtWidgets import (
    QAbstractSpinBox,
    QApplication,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from engine import fields
from engine.fields import Field

from .extras_panel import ExtrasPanel
from .models_controller import ModelChoice
from .viewmodel import FormModel

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
#: Where the non-text fields go, top to bottom ("size" is the width × height row); fields not named here follow.
ROW_ORDER = ("model", "sampler", "steps", "cfg", "size", "seed", "batch_count")
SIZE_FIELDS = ("width", "height")
PLACEHOLDERS = {
    "prompt": "Describe the picture… e.g. a lighthouse on a cliff at dusk, oil painting",
    "negative_prompt": "What to leave out (optional)",
    "seed": "random",
}
TEXT_LINES = {"prompt": 4}  # other text fields get 2
ADD_MODEL = "\x00add-model"
#: How long a section brought into view stays in view while the layouts around it settle.
REVEAL_SETTLE_MS = 400


class PromptEdit(QPlainTextEdit):
    """A multi-line text field sized to a few lines, with Tab moving focus instead of inserting a tab."""

    def __init__(self, lines: int, placeholder: str, parent: QWidget | None = None):
        super().__init__(parent)
        self.setPlaceholderText(placeholder)
        self.setTabChangesFocus(True)
        self.setLineWrapMode(QPlainTextEdit.LineWrapMode.WidgetWidth)
        self.setMinimumHeight(QFontMetrics(self.font()).lineSpacing() * lines + 14)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)

    def sizeHint(self) -> QSize:  # noqa: N802
        # Its few lines, not Qt's default of a dozen: the sections under the form stay in view.
        return QSize(super().sizeHint().width(), self.minimumHeight())


class ModelCombo(QComboBox):
    """The model menu: the models found, a model named by an opened picture but not installed, "Add model…"."""

    add_requested = Signal()
    #: the person picked another model (its value: a name or a path)
    chosen = Signal(str)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.setMinimumContentsLength(10)
        self._index = 0
        self.activated.connect(self._activated)
        self.set_choices([])

    def set_choices(self, choices: Sequence[ModelChoice]) -> None:
        keep = self.value()
        with QSignalBlocker(self):
            self.clear()
            for choice in choices:
                self.addItem(choice.label, choice.value)
                self.setItemData(self.count() - 1, choice.tooltip, Qt.ItemDataRole.ToolTipRole)
            if not choices:
                self.addItem("No model yet", "")
                self.model().item(0).setEnabled(False)
            self.insertSeparator(self.count())
            self.addItem("Add model…", ADD_MODEL)
        self.select(keep)

    def value(self) -> str:
        value = self.currentData()
        return "" if value in (None, ADD_MODEL) else str(value)

    def select(self, value: str) -> None:
        index = self.findData(value) if value else -1
        if index < 0 and value:
            # A model named by a request (e.g. from a PNG) that is not installed: show it, so the request is kept
            # as it was; the engine says clearly if it cannot be found.
            with QSignalBlocker(self):
                self.insertItem(0, f"{_short_name(value)} (not installed)", value)
                self.setItemData(0, value, Qt.ItemDataRole.ToolTipRole)
            index = 0
        with QSignalBlocker(self):
            self.setCurrentIndex(max(0, index))
        self._index = max(0, index)

    def _activated(self, index: int) -> None:
        if self.itemData(index) == ADD_MODEL:
            with QSignalBlocker(self):
                self.setCurrentIndex(self._index)
            self.add_requested.emit()
        elif index != self._index:
            self._index = index
            self.chosen.emit(self.value())


class FieldEditor:
    """One field's widget, and how to read, write and watch it."""

    def __init__(self, field: Field, widget: QWidget, get: Callable[[], Any], put: Callable[[Any], None],
                 edited: SignalInstance):
        self.field, self.widget, self._get, self._put, self.edited = field, widget, get, put, edited
        widget.setToolTip(field.tooltip)
        widget.setAccessibleName(field.label)

    def get(self) -> Any:
        return self._get()

    def set(self, value: Any) -> None:
        if self._get() != value:
            with QSignalBlocker(self.widget):
                self._put(value)

    def mark(self, message: str | None) -> None:
        self.widget.setProperty("invalid", message is not None)
        self.widget.setToolTip(message or self.field.tooltip)
        self.widget.style().unpolish(self.widget)
        self.widget.style().polish(self.widget)


def make_editor(field: Field) -> FieldEditor:
    """The editor for a registry field, by its kind."""
    if field.kind == "text":
        w = PromptEdit(TEXT_LINES.get(field.name, 2), PLACEHOLDERS.get(field.name, ""))
        return FieldEditor(field, w, w.toPlainText, w.setPlainText, w.textChanged)
    if field.kind == "int":
        w = QSpinBox()
        w.setRange(int(field.range[0]), int(field.range[1]))
        w.setSingleStep(field.multiple)
        return FieldEditor(field, w, w.value, lambda v: w.setValue(int(v)), w.valueChanged)
    if field.kind == "float":
        w = QDoubleSpinBox()
        fine = field.range[1] - field.range[0] <= 1
        w.setDecimals(2 if fine else 1)
        w.setRange(*field.range)
        w.setSingleStep(0.05 if fine else 0.5)
        return FieldEditor(field, w, lambda: round(w.value(), 4), lambda v: w.setValue(float(v)), w.valueChanged)
    if field.kind == "seed":
        w = QLineEdit()
        w.setPlaceholderText(PLACEHOLDERS.get(field.name, ""))
        w.setClearButtonEnabled(True)
        return FieldEditor(field, w, w.text, lambda v: w.setText(str(v)), w.textChanged)
    if field.kind == "sampler":
        w = QComboBox()
        w.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        w.setMinimumContentsLength(10)
        w.addItems(field.choices())
        return FieldEditor(field, w, w.currentText, w.setCurrentText, w.currentTextChanged)
    if field.kind == "model":
        w = ModelCombo()
        return FieldEditor(field, w, w.value, w.select, w.chosen)
    raise ValueError(f"no editor for fields of kind {field.kind!r}")


class GenerationForm(QWidget):
    """The form's widgets, laid out, bound to ``model``."""

    add_model_requested = Signal()
    #: the person picked another model in the menu (its value: a name or a path)
    model_chosen = Signal(str)

    def __init__(self, model: FormModel, parent: QWidget | None = None):
        super().__init__(parent)
        self._model = model
        self._editors = {f.name: make_editor(f) for f in fields.FIELDS}
        self.models: ModelCombo = self._editors["model"].widget  # type: ignore[assignment]
        self.models.add_requested.connect(self.add_model_requested)
        self.models.chosen.connect(self.model_chosen)

        self.size_preset = QComboBox()
        self.size_preset.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.size_preset.setMinimumContentsLength(10)
        for w, h, label in SIZE_PRESETS:
            self.size_preset.addItem(f"{w} × {h}  ·  {label}", f"{w}x{h}")
        self.size_preset.addItem("Custom", None)
        self.size_preset.setToolTip("Picture size in pixels; multiples of 8 (other sizes are rounded).")
        self.size_preset.activated.connect(self._preset_chosen)
        swap = QToolButton()
        swap.setText("⇄")
        swap.setToolTip("Swap width and height")
        swap.clicked.connect(self._swap)
        self.random_seed = QPushButton("Random")
        self.random_seed.setToolTip("Use a new random seed for every generation")
        self.random_seed.clicked.connect(lambda: model.set_value("seed", "random"))
        self.reuse_seed = QPushButton("Reuse last")
        self.reuse_seed.clicked.connect(model.reuse_last_seed)
        self._show_last_seed(model.last_seed)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(6)
        rows = QFormLayout()
        rows.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        rows.setLabelAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        rows.setHorizontalSpacing(10)
        rows.setVerticalSpacing(8)
        for field in fields.FIELDS:
            if field.kind == "text":
                layout.addWidget(_heading(field.label))
                layout.addWidget(self._editors[field.name].widget, TEXT_LINES.get(field.name, 2) // 2)
        placed = [n for n in ROW_ORDER if n == "size" or n in fields.FIELD]
        placed += [f.name for f in fields.FIELDS if f.kind != "text" and f.name not in ROW_ORDER + SIZE_FIELDS]
        for name in placed:
            if name == "size":
                rows.addRow("Size", self.size_preset)
                size_row = QHBoxLayout()
                size_row.setSpacing(4)
                size_row.addWidget(self._editors["width"].widget, 1)
                size_row.addWidget(QLabel("×"))
                size_row.addWidget(self._editors["height"].widget, 1)
                size_row.addWidget(swap)
                rows.addRow("", size_row)
                continue
            rows.addRow(fields.FIELD[name].label, self._editors[name].widget)
            if fields.FIELD[name].kind == "seed":
                buttons = QHBoxLayout()
                buttons.setSpacing(4)
                buttons.addWidget(self.random_seed)
                buttons.addWidget(self.reuse_seed)
                rows.addRow("", buttons)
        layout.addSpacing(4)
        layout.addLayout(rows)

        for name, editor in self._editors.items():
            editor.set(model.value(name))
            editor.edited.connect(lambda *_, n=name, e=editor: model.set_value(n, e.get()))
        model.value_changed.connect(self._value_changed)
        model.errors_changed.connect(self._show_errors)
        model.last_seed_changed.connect(self._show_last_seed)
        self._sync_preset()

    # -- API --------------------------------------------------------------------------------------------------
    def widget(self, name: str) -> QWidget:
        """The editor widget of a registry field (for focus, layout and tests)."""
        return self._editors[name].widget

    def set_model_choices(self, choices: Sequence[ModelChoice]) -> None:
        self.models.set_choices(choices)
        self.models.select(self._model.value("model"))

    def error_fields(self) -> list[str]:
        return [name for name, e in self._editors.items() if e.widget.property("invalid")]

    # -- binding ----------------------------------------------------------------------------------------------
    def _value_changed(self, name: str, value: Any) -> None:
        editor = self._editors.get(name)
        if editor is not None:
            editor.set(value)
        if name in SIZE_FIELDS:
            self._sync_preset()

    def _show_errors(self, errors: dict[str, str]) -> None:
        first = None
        for name, editor in self._editors.items():
            editor.mark(errors.get(name))
            if name in errors and first is None:
                first = editor.widget
        if first is not None:
            first.setFocus(Qt.FocusReason.OtherFocusReason)

    def _show_last_seed(self, seed: int | None) -> None:
        self.reuse_seed.setEnabled(seed is not None)
        self.reuse_seed.setToolTip(f"Use the seed of the last picture again ({seed})" if seed is not None
                                   else "No picture made yet")

    # -- size -------------------------------------------------------------------------------------------------
    def _preset_chosen(self, index: int) -> None:
        size = self.size_preset.itemData(index)
        if size:
            self._model.set_values(dict(zip(SIZE_FIELDS, (int(v) for v in size.split("x")))))

    def _swap(self) -> None:
        width, height = (self._model.value(n) for n in SIZE_FIELDS)
        self._model.set_values({"width": height, "height": width})

    def _sync_preset(self) -> None:
        index = self.size_preset.findData("x".join(str(self._model.value(n)) for n in SIZE_FIELDS))
        with QSignalBlocker(self.size_preset):
            self.size_preset.setCurrentIndex(index if index >= 0 else self.size_preset.count() - 1)


def _heading(text: str) -> QLabel:
    label = QLabel(text)
    label.setObjectName("FieldHeading")
    return label


def _short_name(value: str) -> str:
    text = value.rstrip("/\\")
    for sep in ("/", "\\"):
        text = text.rsplit(sep, 1)[-1]
    return text or value


class WheelGuard(QObject):
    """Keeps the mouse wheel for scrolling the form: a number box or menu under the pointer takes the wheel only
    once it has been clicked into (has focus), so scrolling down the form never changes a value on the way."""

    def __init__(self, scroll: QScrollArea):
        super().__init__(scroll)
        self._scroll = scroll

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802
        if event.type() == QEvent.Type.Wheel and isinstance(watched, QWidget) and not watched.hasFocus():
            QApplication.sendEvent(self._scroll.viewport(), event)  # the form scrolls instead
            return True
        return False

    def guard(self, root: QWidget) -> None:
        for widget in [*root.findChildren(QAbstractSpinBox), *root.findChildren(QComboBox)]:
            widget.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
            widget.installEventFilter(self)


class FormPanel(QWidget):
    """The left side of the Create tab: the form (with its LoRAs and embeddings) in a scroll area above the
    Generate and Cancel buttons."""

    def __init__(self, model: FormModel, parent: QWidget | None = None):
        super().__init__(parent)
        self.form = GenerationForm(model)
        self.generate_button = QPushButton("Generate")
        self.generate_button.setObjectName("GenerateButton")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setObjectName("CancelButton")
        self.cancel_button.setToolTip("Cancel the running picture (Esc)")
        box = QWidget()
        box_layout = QVBoxLayout(box)
        box_layout.setContentsMargins(12, 10, 8, 10)
        box_layout.addWidget(self.form)
        self.extras = ExtrasPanel(model)
        box_layout.addWidget(self.extras)
        self._sections = box_layout
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setWidget(box)
        buttons = QHBoxLayout()
        buttons.setContentsMargins(12, 4, 8, 12)
        buttons.addWidget(self.generate_button, 3)
        buttons.addWidget(self.cancel_button, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(scroll, 1)
        layout.addLayout(buttons)
        self._box, self._scroll = box, scroll
        self._revealing: QWidget | None = None
        self._settled = QTimer(self, singleShot=True, interval=REVEAL_SETTLE_MS)
        self._settled.timeout.connect(lambda: setattr(self, "_revealing", None))
        scroll.verticalScrollBar().rangeChanged.connect(self._keep_revealed)
        self._wheel_guard = WheelGuard(scroll)
        self._wheel_guard.guard(box)
        self._fit_width()

    def add_section(self, widget: QWidget) -> None:
        """Put ``widget`` below the form, in the same scroll area (e.g. the picture-editing panel)."""
        self._sections.addWidget(widget)
        self._wheel_guard.guard(widget)
        self._fit_width()

    def reveal(self, widget: QWidget) -> None:
        """Scroll so that ``widget`` (a section below the form) is in view, and keep it in view while the layouts
        settle (for :data:`REVEAL_SETTLE_MS`): the picture that grew the section and the tab that showed the form
        resize the form in steps, each after the one before."""
        self._revealing = widget
        self._settled.start()
        QTimer.singleShot(0, self, self._keep_revealed)

    def _keep_revealed(self) -> None:
        if self._revealing is not None:
            self._scroll.ensureWidgetVisible(self._revealing, 0, 0)

    def _fit_width(self) -> None:
        box, scroll = self._box, self._scroll
        # Wide enough for the form without a horizontal scroll bar (plus the vertical one).
        self.setMinimumWidth(box.minimumSizeHint().width() + scroll.verticalScrollBar().sizeHint().width() + 2)
