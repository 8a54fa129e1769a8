"""The "Edit a picture" part of the Create tab's left column, bound to a :class:`gui.edit_model.EditModel`:
the source picture and what to do with it (image to image, inpaint, outpaint), the hires fix and a ControlNet.

The panel opens files itself (read safely by :func:`engine.images.read_image`); painting happens on the canvas,
which the panel asks for with :attr:`EditPanel.paint_requested`. GUI thread only.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSignalBlocker, Qt, Signal
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from engine.images import ImageInputError, read_image

from .edit_model import CONTROL_SOURCES, MODES, EditModel

IMAGE_FILTER = "Images (*.png *.jpg *.jpeg *.webp *.bmp *.tif *.tiff);;All files (*)"
RESIZE_LABELS = {"fit": "Fit (pad)", "fill": "Fill (crop)", "stretch": "Stretch"}
THUMB = 72


def qimage_of(rgb) -> QImage:
    """A QImage copy of a uint8 H×W×3 array."""
    h, w = rgb.shape[:2]
    return QImage(rgb.tobytes(), w, h, 3 * w, QImage.Format.Format_RGB888).copy()


def _spin(lo: float, hi: float, value: float, step: float = 0.05, decimals: int = 2, tip: str = "") -> QDoubleSpinBox:
    box = QDoubleSpinBox(minimum=lo, maximum=hi, singleStep=step, decimals=decimals, value=value)
    box.setToolTip(tip)
    return box


def _combo(items: dict[str, str]) -> QComboBox:
    combo = QComboBox()
    for value, label in items.items():
        combo.addItem(label, value)
    return combo


class EditPanel(QWidget):
    #: "mask" or "scribble": show that layer's editor on the canvas
    paint_requested = Signal(str)
    #: a message for the banner (level, text)
    message = Signal(str, str)

    def __init__(self, model: EditModel, last_dir=lambda: str(Path.home()), parent: QWidget | None = None):
        super().__init__(parent)
        self._model = model
        self._last_dir = last_dir
        o = model.options

        self.source_box = QGroupBox("Edit a picture")
        self.thumbnail = QLabel()
        self.thumbnail.setFixedSize(THUMB, THUMB)
        self.thumbnail.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.thumbnail.setObjectName("EditThumbnail")
        self.source_text = QLabel()
        self.source_text.setWordWrap(True)
        self.open_button = QPushButton("Open…")
        self.open_button.setToolTip("Choose a picture to edit (or drop one on the canvas)")
        self.clear_button = QPushButton("Clear")
        self.clear_button.setToolTip("Stop editing: Generate makes a new picture from the prompt")
        self.mode = _combo(MODES)
        self.strength = _spin(0.0, 1.0, o.strength, tip="Denoising strength: how much of the picture is made anew "
                              "(0 keeps it, 1 ignores it)")
        self.resize_mode = _combo(RESIZE_LABELS)
        self.resize_mode.setToolTip("How a picture of another shape is fitted to the size in the form")
        self.paint_button = QPushButton("Paint mask")
        self.paint_button.setToolTip("Paint over the part to repaint, on the canvas")
        self.mask_file_button = QPushButton("Mask from file…")
        self.mask_file_button.setToolTip("A black-and-white picture: white is repainted (or a picture's transparency)")
        self.mask_blur = QSpinBox(minimum=0, maximum=64, value=o.mask_blur, suffix=" px")
        self.mask_blur.setToolTip("Soften the mask's edge; 0 keeps every pixel outside the mask exactly")
        self.only_masked = QCheckBox("Only the masked area, at full detail")
        self.padding = QSpinBox(minimum=0, maximum=256, value=o.mask_padding, suffix=" px")
        self.padding.setToolTip("Room kept around the mask when working on the masked area only")
        self.outpaint = [QSpinBox(minimum=0, maximum=2048, singleStep=64, suffix=" px") for _ in range(4)]
        for box, side in zip(self.outpaint, ("left", "right", "top", "bottom")):
            box.setToolTip(f"Pixels added on the {side}")

        top = QHBoxLayout()
        top.addWidget(self.thumbnail)
        side = QVBoxLayout()
        side.addWidget(self.source_text, 1)
        buttons = QHBoxLayout()
        buttons.addWidget(self.open_button)
        buttons.addWidget(self.clear_button)
        side.addLayout(buttons)
        top.addLayout(side, 1)
        self._rows = QFormLayout()
        self._rows.addRow("Mode", self.mode)
        self._rows.addRow("Strength", self.strength)
        self._rows.addRow("Resize", self.resize_mode)
        mask_buttons = QHBoxLayout()
        mask_buttons.addWidget(self.paint_button)
        mask_buttons.addWidget(self.mask_file_button)
        self._mask_row = QWidget()
        self._mask_row.setLayout(mask_buttons)
        mask_buttons.setContentsMargins(0, 0, 0, 0)
        self._rows.addRow(self._mask_row)
        self._rows.addRow("Mask blur", self.mask_blur)
        self._rows.addRow(self.only_masked)
        self._rows.addRow("Padding", self.padding)
        sides = QGridLayout()
        sides.setContentsMargins(0, 0, 0, 0)
        for i, (box, label) in enumerate(zip(self.outpaint, ("Left", "Right", "Top", "Bottom"))):
            sides.addWidget(QLabel(label), i // 2, 2 * (i % 2))
            sides.addWidget(box, i // 2, 2 * (i % 2) + 1)
        self._outpaint_row = QWidget()
        self._outpaint_row.setLayout(sides)
        self._rows.addRow("Add", self._outpaint_row)
        box_layout = QVBoxLayout(self.source_box)
        box_layout.addLayout(top)
        box_layout.addLayout(self._rows)

        self.hires_box = QGroupBox("Hires fix", checkable=True, checked=o.hires)
        self.hires_box.setToolTip("Make the picture, upscale it, then refine it at the larger size")
        self.hires_scale = _spin(1.0, 4.0, o.hires_scale, 0.25, tip="Upscale by this factor")
        self.hires_strength = _spin(0.0, 1.0, o.hires_strength, tip="Denoising strength of the refining pass")
        self.hires_upscaler = _combo({"latent": "Latent", "lanczos": "Lanczos"})
        hires_rows = QFormLayout(self.hires_box)
        hires_rows.addRow("Scale", self.hires_scale)
        hires_rows.addRow("Strength", self.hires_strength)
        hires_rows.addRow("Upscaler", self.hires_upscaler)

        self.control_box = QGroupBox("ControlNet", checkable=True, checked=o.control)
        self.control_box.setToolTip("Steer the layout with an edge map, a scribble or another control picture")
        self.control_model = QLineEdit(placeholderText="ControlNet folder or .safetensors")
        self.control_model_button = QPushButton("…")
        self.control_model_button.setToolTip("Choose a ControlNet model")
        self.control_source = _combo(CONTROL_SOURCES)
        self.control_open = QPushButton("Open picture…")
        self.control_draw = QPushButton("Draw scribble")
        self.control_text = QLabel()
        self.control_text.setWordWrap(True)
        self.control_weight = _spin(0.0, 2.0, o.control_weight, tip="How strongly the control picture steers")
        self.control_start = _spin(0.0, 1.0, o.control_start, tip="Fraction of the steps before it starts steering")
        self.control_end = _spin(0.0, 1.0, o.control_end, tip="Fraction of the steps after which it stops")
        model_row = QHBoxLayout()
        model_row.addWidget(self.control_model, 1)
        model_row.addWidget(self.control_model_button)
        picture_row = QHBoxLayout()
        picture_row.addWidget(self.control_open)
        picture_row.addWidget(self.control_draw)
        control_rows = QFormLayout(self.control_box)
        control_rows.addRow("Model", model_row)
        control_rows.addRow("Input", self.control_source)
        control_rows.addRow(picture_row)
        control_rows.addRow(self.control_text)
        control_rows.addRow("Weight", self.control_weight)
        control_rows.addRow("Start", self.control_start)
        control_rows.addRow("End", self.control_end)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        for box in (self.source_box, self.hires_box, self.control_box):
            layout.addWidget(box)
        self._connect()
        self._sync()

    def _connect(self) -> None:
        m = self._model
        self.open_button.clicked.connect(self.open_source_dialog)
        self.clear_button.clicked.connect(m.clear_source)
        self.mode.currentIndexChanged.connect(lambda _i: m.set_options(mode=self.mode.currentData()))
        self.strength.valueChanged.connect(lambda v: m.set_options(strength=round(v, 4)))
        self.resize_mode.currentIndexChanged.connect(lambda _i: m.set_options(resize=self.resize_mode.currentData()))
        self.paint_button.clicked.connect(lambda: self.paint_requested.emit("mask"))
        self.mask_file_button.clicked.connect(self.open_mask_dialog)
        self.mask_blur.valueChanged.connect(lambda v: m.set_options(mask_blur=v))
        self.only_masked.toggled.connect(lambda on: m.set_options(only_masked=on))
        self.padding.valueChanged.connect(lambda v: m.set_options(mask_padding=v))
        for box in self.outpaint:
            box.valueChanged.connect(lambda _v: m.set_options(outpaint=tuple(b.value() for b in self.outpaint)))
        self.hires_box.toggled.connect(lambda on: m.set_options(hires=on))
        self.hires_scale.valueChanged.connect(lambda v: m.set_options(hires_scale=round(v, 4)))
        self.hires_strength.valueChanged.connect(lambda v: m.set_options(hires_strength=round(v, 4)))
        self.hires_upscaler.currentIndexChanged.connect(
            lambda _i: m.set_options(hires_upscaler=self.hires_upscaler.currentData()))
        self.control_box.toggled.connect(lambda on: m.set_options(control=on))
        self.control_model.textChanged.connect(lambda text: m.set_options(control_model=text))
        self.control_model_button.clicked.connect(self.choose_control_model_dialog)
        self.control_source.currentIndexChanged.connect(
            lambda _i: m.set_options(control_source=self.control_source.currentData()))
        self.control_open.clicked.connect(self.open_control_dialog)
        self.control_draw.clicked.connect(lambda: self.paint_requested.emit("scribble"))
        self.control_weight.valueChanged.connect(lambda v: m.set_options(control_weight=round(v, 4)))
        self.control_start.valueChanged.connect(lambda v: m.set_options(control_start=round(v, 4)))
        self.control_end.valueChanged.connect(lambda v: m.set_options(control_end=round(v, 4)))
        m.changed.connect(self._sync)

    # -- model → widgets --------------------------------------------------------------------------------------
    def _sync(self) -> None:
        m, o = self._model, self._model.options
        has = m.source is not None
        if has:
            w, h = m.source.size
            self.thumbnail.setPixmap(QPixmap.fromImage(qimage_of(m.source.rgb)).scaled(
                THUMB, THUMB, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation))
            self.source_text.setText(f"{m.source_label} · {w}×{h}")
        else:
            self.thumbnail.clear()
            self.thumbnail.setText("—")
            self.source_text.setText("No picture: Generate starts from noise. Drop a picture on the canvas, or "
                                     "use Send to… on a result, to edit it.")
        widgets = {self.mode: o.mode, self.resize_mode: o.resize, self.hires_upscaler: o.hires_upscaler,
                   self.control_source: o.control_source}
        for combo, value in widgets.items():
            with QSignalBlocker(combo):
                combo.setCurrentIndex(max(0, combo.findData(value)))
        for box, value in ((self.strength, o.strength), (self.mask_blur, o.mask_blur), (self.padding, o.mask_padding),
                           (self.hires_scale, o.hires_scale), (self.hires_strength, o.hires_strength),
                           (self.control_weight, o.control_weight), (self.control_start, o.control_start),
                           (self.control_end, o.control_end), *zip(self.outpaint, o.outpaint)):
            with QSignalBlocker(box):
                box.setValue(value)
        for check, value in ((self.only_masked, o.only_masked), (self.hires_box, o.hires), (self.control_box, o.control)):
            with QSignalBlocker(check):
                check.setChecked(value)
        if self.control_model.text() != o.control_model:
            with QSignalBlocker(self.control_model):
                self.control_model.setText(o.control_model)
        self.clear_button.setEnabled(has)
        inpaint, outpaint = has and o.mode == "inpaint", has and o.mode == "outpaint"
        for widget, show in ((self.mode, has), (self.strength, has), (self.resize_mode, has and o.mode == "img2img"),
                             (self._mask_row, inpaint), (self.mask_blur, inpaint),
                             (self.only_masked, inpaint), (self.padding, inpaint and o.only_masked),
                             (self._outpaint_row, outpaint)):
            self._rows.setRowVisible(widget, show)
        scribble = o.control_source == "scribble"
        self.control_open.setVisible(not scribble)
        self.control_draw.setVisible(scribble)
        self.control_text.setText(m.control_label if not scribble and m.control_image is not None else
                                  "" if scribble else "No control picture yet.")

    # -- files ------------------------------------------------------------------------------------------------
    def _open(self, title: str):
        path, _ = QFileDialog.getOpenFileName(self, title, self._last_dir(), IMAGE_FILTER)
        if not path:
            return None, ""
        try:
            return read_image(path)[0], Path(path).name
        except ImageInputError as exc:
            self.message.emit("error", exc.message)
            return None, ""

    def open_source_dialog(self) -> None:
        image, name = self._open("Choose a picture to edit")
        if image is not None:
            self._model.set_source(image, name)

    def open_mask_dialog(self) -> None:
        image, _name = self._open("Choose a mask (white = repaint)")
        if image is None:
            return
        try:
            notice = self._model.load_mask(image, use_alpha=image.alpha is not None and bool((image.alpha < 255).any()))
        except ImageInputError as exc:
            self.message.emit("error", exc.message)
            return
        if notice:
            self.message.emit("info", notice)

    def open_control_dialog(self) -> None:
        image, name = self._open("Choose a control picture")
        if image is not None:
            self._model.set_control_image(image, name)

    def choose_control_model_dialog(self) -> None:
        from engine.edit.control import control_models_dir

        start = control_models_dir() if control_models_dir().is_dir() else self._last_dir()
        path, _ = QFileDialog.getOpenFileName(self, "Choose a ControlNet model", str(start),
                                              "ControlNet (*.safetensors config.json);;All files (*)")
        if path:
            # A diffusers ControlNet is a folder: picking its config.json means the folder.
            chosen = Path(path).parent if Path(path).name == "config.json" else Path(path)
            self._model.set_options(control_model=str(chosen))
