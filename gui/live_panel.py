"""The middle of the Create tab: the live-view switch, the canvas, the progress bar and a line saying in words
what the canvas shows. Bound to a :class:`gui.viewmodel.JobsModel`; GUI thread only."""

from __future__ import annotations

from PySide6.QtGui import QAction
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QStackedWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from .canvas import PreviewCanvas
from .mask_editor import MaskEditor
from .results import Result
from .viewmodel import JobsModel, ProgressState, Shown

PREVIEW_MODES = ("x0", "xt", "off")
PREVIEW_LABELS = {
    "x0": "Live: guess (x0)",
    "xt": "Noisy (x_t)",
    "off": "Off",
}
PREVIEW_TIPS = {
    "x0": "Show the model's current guess of the final image (x0) at every step.",
    "xt": "Show the noisy latent (x_t): the picture plus the noise still to be removed.",
    "off": "No live preview; the picture appears when it is finished (slightly faster).",
}
PREVIEW_EXPLAIN = {
    "x0": "Showing the model's current guess of the finished picture (x0). It starts as a blurry average and "
    "sharpens as the noise is removed.",
    "xt": "Showing the noisy latent (x_t): what the sampler actually holds, the picture plus the noise still to "
    "remove. It clears only at the end.",
    "off": "Live view is off: the picture appears when it is finished.",
}
PREVIEW_NOTE = (
    "Live frames come from a quick approximate decoder (a linear map of the latent), so colours are rough; the "
    "finished picture goes through the model's full decoder (VAE)."
)


class LivePanel(QWidget):
    def __init__(self, jobs: JobsModel, preview_actions: dict[str, QAction], parent: QWidget | None = None):
        super().__init__(parent)
        self._jobs = jobs
        self._mode = "x0"
        self.canvas = PreviewCanvas()
        self.mask_editor = MaskEditor()
        self.stack = QStackedWidget()
        self.stack.addWidget(self.canvas)
        self.stack.addWidget(self.mask_editor)
        self.live_button = QPushButton("Back to live view")
        self.live_button.setToolTip("Show the picture being made again")
        self.live_button.hide()
        self.explanation = QLabel()
        self.explanation.setObjectName("PreviewExplain")
        self.explanation.setWordWrap(True)
        self.progress_bar = QProgressBar()
        self.progress_bar.setTextVisible(True)
        self._show_progress(jobs.progress)

        mode_bar = QHBoxLayout()
        mode_bar.setSpacing(0)
        for mode in PREVIEW_MODES:
            button = QToolButton()
            button.setObjectName("ModeButton")
            button.setDefaultAction(preview_actions[mode])
            button.setMinimumWidth(button.sizeHint().width())  # never elide the labels
            mode_bar.addWidget(button)
        top_row = self._top_row = QHBoxLayout()
        top_row.addLayout(mode_bar)
        top_row.addStretch(1)
        top_row.addWidget(self.live_button)
        layout = self._layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 10, 8, 10)
        layout.setSpacing(8)
        layout.addLayout(top_row)
        layout.addWidget(self.stack, 1)
        layout.addWidget(self.progress_bar)
        layout.addWidget(self.explanation)

        jobs.shown_changed.connect(self._show)
        jobs.progress_changed.connect(self._show_progress)
        jobs.follow_live_changed.connect(lambda _on: self._update_live_button())
        jobs.jobs_changed.connect(self._update_live_button)
        jobs.results.changed.connect(self._result_changed)
        self.live_button.clicked.connect(jobs.follow_live_view)
        self.mask_editor.done.connect(self.show_canvas)
        jobs.jobs_changed.connect(lambda: self._jobs.busy and self.show_canvas())
        self.explain()

    def add_beside_modes(self, widget: QWidget) -> None:
        """Place ``widget`` in the top row, after the preview-mode buttons."""
        self._top_row.insertWidget(self._top_row.count() - 2, widget)

    def add_below_canvas(self, widget: QWidget) -> None:
        """Place ``widget`` right under the canvas, above the progress bar."""
        self._layout.insertWidget(self._layout.indexOf(self.stack) + 1, widget)

    def show_mask_editor(self) -> None:
        """Show the mask editor in place of the canvas (:meth:`MaskEditor.edit` says what it paints)."""
        self.stack.setCurrentWidget(self.mask_editor)

    def show_canvas(self) -> None:
        self.stack.setCurrentWidget(self.canvas)

    @property
    def editing_mask(self) -> bool:
        return self.stack.currentWidget() is self.mask_editor

    def set_preview_mode(self, mode: str) -> None:
        self._mode = mode
        self.explain()

    def explain(self) -> None:
        """Say in words what the canvas shows: the live view (x0 or x_t) or a finished picture."""
        shown = self._jobs.shown
        frame = shown.frame if shown is not None else None
        if frame is None or frame.kind == "preview":
            text, tip = PREVIEW_EXPLAIN[self._mode], (PREVIEW_NOTE if self._mode != "off" else "")
            if frame is not None and frame.job_id != self._jobs.current_job and frame.step < frame.total:
                text = (f"Stopped at step {frame.step} of {frame.total}: this is the model's last guess; the picture "
                        "was not finished or saved.")
        else:
            result = shown.result
            text = "The finished picture, decoded by the model's full decoder (VAE)."
            if result is not None and result.saved_path:
                text += f" Saved as {result.saved_name}."
            elif result is not None and result.save_error:
                text += " Not saved to the gallery (see the message above); use Save as… to keep it."
            tip = result.describe() if result is not None else ""
        if self.explanation.text() != text:
            self.explanation.setText(text)
        self.explanation.setToolTip(tip)

    def _show(self, shown: Shown) -> None:
        self.canvas.show_image(shown.image, shown.frame)
        self.canvas.set_caption(shown.caption)
        self.explain()

    def _show_progress(self, state: ProgressState) -> None:
        self.progress_bar.setRange(0, max(1, state.maximum))
        self.progress_bar.setValue(state.value)
        self.progress_bar.setFormat(state.text.replace("%", "%%"))

    def _result_changed(self, result: Result) -> None:
        shown = self._jobs.shown
        if shown is not None and shown.result is result:
            self.explain()

    def _update_live_button(self) -> None:
        self.live_button.setVisible(not self._jobs.follow_live and self._jobs.busy)
