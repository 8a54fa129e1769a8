"""The Diffusion Lab in the window: wires the Lab's view-models and widgets to the main window.

- Replay (:mod:`gui.lab_replay`): a scrubber under the canvas over the x0 frames of the picture shown, and
  Export animation…;
- Live mode (:mod:`gui.lab_live`): the Live switch and Keep beside the preview-mode buttons;
- Forward process (:mod:`gui.lab_forward`), Compare grid (:mod:`gui.lab_grid`) and Guidance at a step
  (:mod:`gui.lab_guidance`): dialogs opened from the Lab menu and the canvas menu.

The window creates one :class:`LabController` after its own widgets and calls :meth:`add_canvas_actions` when it
builds the canvas menu; everything else is connected here. GUI thread only.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PySide6.QtCore import QObject
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QDialog, QFileDialog, QMenu

from engine.errors import DarkroomError
from engine.gallery.gallery import REPLAY_SUFFIX
from engine.images import ImageInputError, read_image
from engine.request import GenerationRequest

from .lab_forward import ForwardDialog, ForwardModel
from .lab_grid import GridDialog, GridRun
from .lab_guidance import GuidanceDialog, GuidanceModel
from .lab_live import LiveBar, LiveController
from .lab_replay import ANIMATION_FILTER, AnimationExporter, ReplayBar, ReplayModel
from .results import Result
from .viewmodel import Frame, Shown

if TYPE_CHECKING:
    from .main_window import MainWindow


class LabController(QObject):
    def __init__(self, window: "MainWindow"):
        super().__init__(window)
        self._window = window
        jobs, live = window.jobs, window.live
        self.replay = ReplayModel(self)
        self.replay_bar = ReplayBar(self.replay)
        live.add_below_canvas(self.replay_bar)
        self.exporter = AnimationExporter(self)
        self.live_mode = LiveController(jobs, window.form_model, window.edit, window.gallery,
                                        window.models.has_models, self)
        self.live_bar = LiveBar(self.live_mode.model, self.live_mode.keep)
        live.add_beside_modes(self.live_bar)
        self.forward = ForwardModel(window.bridge, self)
        self.grid = GridRun(jobs, window.gallery, self)
        self.guidance = GuidanceModel(window.bridge, self)
        self.forward_dialog: ForwardDialog | None = None
        self.grid_dialog: GridDialog | None = None
        self.guidance_dialog: GuidanceDialog | None = None
        self.menu = self._build_menu()

        jobs.shown_changed.connect(self._on_shown)
        jobs.replay_decoded.connect(self.replay.refresh_frames)
        self.replay.position_changed.connect(self._show_replay_frame)
        self.replay_bar.export_requested.connect(self.export_animation_dialog)
        self.exporter.done.connect(self._on_exported)
        self.live_mode.kept.connect(lambda r: window.status.showMessage(f"Kept the live picture (seed {r.request.seed}).", 4000))
        window.edit.model.changed.connect(self._sync_forward_settings)
        window.gallery_tab.forward_process.connect(self.show_forward_file)
        window.form_model.value_changed.connect(lambda name, _v: name in ("model", "steps") and self._sync_forward_settings())

    # -- menus ------------------------------------------------------------------------------------------------
    def _build_menu(self) -> QMenu:
        window = self._window
        menu = QMenu("&Lab", window)
        menu.setToolTipsVisible(True)
        self.live_action = QAction("&Live mode", menu)
        self.live_action.setCheckable(True)
        self.live_action.setToolTip(self.live_bar.switch.toolTip())
        self.live_action.toggled.connect(self.live_mode.model.set_enabled)
        self.live_mode.model.enabled_changed.connect(self.live_action.setChecked)
        menu.addAction(self.live_action)
        self.keep_action = menu.addAction("&Keep the live picture", self.live_mode.keep)
        self.keep_action.setEnabled(False)
        self.live_mode.model.keepable_changed.connect(self.keep_action.setEnabled)
        menu.addSeparator()
        self.export_action = menu.addAction("&Export animation…", self.export_animation_dialog)
        menu.addAction("&Guidance at a step…", self.show_guidance)
        menu.addAction("&Forward process…", self.show_forward)
        menu.addAction("Compare &grid…", self.show_grid)
        bar = window.menuBar()
        help_menu = next((a for a in bar.actions() if a.text().replace("&", "") == "Help"), None)
        if help_menu is not None:
            bar.insertMenu(help_menu, menu)
        else:
            bar.addMenu(menu)
        return menu

    def add_canvas_actions(self, menu: QMenu, result: Result | None) -> None:
        """The Lab's entries of the canvas menu, for the finished picture ``result`` (None: a preview)."""
        menu.addSeparator()
        export = menu.addAction("Export animation…", self.export_animation_dialog)
        export.setEnabled(self.replay.count > 0)
        keep = menu.addAction("Keep the replay with the picture", self.keep_replay)
        keep.setEnabled(self.replay.count > 0 and result is not None and bool(result.saved_path))
        if result is not None:
            menu.addAction("Guidance at a step…", lambda: self.show_guidance(result))
            menu.addAction("Forward process…", lambda: self.show_forward(result))
        menu.addAction("Compare grid…", self.show_grid)

    # -- replay -----------------------------------------------------------------------------------------------
    def _on_shown(self, shown: Shown) -> None:
        finished = shown.result is not None and shown.frame.kind in ("final", "result")
        self.replay.set_result(shown.result if finished else None)

    def _show_replay_frame(self, position: int) -> None:
        shown, result = self._window.jobs.shown, self.replay.result
        if shown is None or result is None or shown.result is not result:
            return
        live = self._window.live
        if self.replay.at_end:
            live.canvas.show_image(shown.image, shown.frame)
            live.canvas.set_caption(shown.caption)
            live.explain()
        else:
            steps = self.replay.count - 1
            live.canvas.show_image(self.replay.image(position), Frame("replay", result.key[0], position + 1, steps,
                                                                      result.key[1]))
            live.canvas.set_caption(self.replay.label())
            how = "decoded by the VAE" if self.replay.decoded else "through the quick approximate decoder"
            live.explanation.setText(f"Replay: the model's guess of the finished picture (x0) after step {position + 1} "
                                     f"of {steps}, {how}. Drag to the end for the picture itself.")

    def export_animation_dialog(self) -> None:
        result = self.replay.result
        if result is None:
            self._window.status.showMessage("This picture has no recorded steps to animate.", 4000)
            return
        suggestion = str(Path(self._window._dialog_dir()) / f"darkroom-{result.request.seed}.webp")
        path, chosen = QFileDialog.getSaveFileName(self._window, "Export animation", suggestion, ANIMATION_FILTER)
        if path:
            if Path(path).suffix.lower() not in (".webp", ".gif"):
                path += ".gif" if "GIF" in chosen else ".webp"
            self._window.settings.last_dir = str(Path(path).parent)
            self.export_animation(path)

    def keep_replay(self) -> Path | None:
        """Save the replay of the picture shown beside its gallery file (``<picture>.replay.webp``): the gallery
        entry keeps how it developed. None when the picture has no replay or is not saved yet."""
        result = self.replay.result
        if result is None or not result.saved_path:
            self._window.status.showMessage("Only a picture saved in the gallery keeps its replay beside it.", 4000)
            return None
        path = Path(result.saved_path).with_suffix(REPLAY_SUFFIX)
        return path if self.export_animation(path) else None

    def export_animation(self, path: str | Path, caption: bool | None = None) -> bool:
        """Write the replay of the picture shown to ``path`` (.webp or .gif), captioned with its prompt when
        ``caption`` (default: the replay bar's Caption switch). False when there is nothing to export or an
        export is running; :attr:`AnimationExporter.done` reports the outcome."""
        frames = self.replay.animation_frames()
        if not frames:
            return False
        if caption is None:
            caption = self.replay_bar.caption_box.isChecked()
        text = self.replay.result.request.prompt if caption else ""
        started = self.exporter.export(frames, path, text)
        if started:
            self._window.status.showMessage(f"Writing {Path(path).name}…", 3000)
        return started

    def _on_exported(self, path: str, message: str, details: str) -> None:
        if path:
            self._window.status.showMessage(f"Saved the animation as {path}", 5000)
        else:
            self._window.banner.error(message, details)

    # -- dialogs ----------------------------------------------------------------------------------------------
    def current_picture(self, result: Result | None = None) -> tuple[np.ndarray, str] | None:
        """(RGB, label) of ``result`` or of the finished picture on the canvas (its saved file once trimmed)."""
        result = result or self._window.current_result()
        if result is None:
            return None
        if result.ready is not None:
            return result.ready.image, f"seed {result.request.seed}"
        if result.saved_path:
            try:
                return read_image(result.saved_path)[0].rgb, Path(result.saved_path).name
            except ImageInputError:
                return None
        return None

    def _sync_forward_settings(self) -> None:
        if self.forward_dialog is None or not self.forward_dialog.isVisible():
            return
        form, edit = self._window.form_model, self._window.edit.model
        self.forward.set_img2img(edit.options.strength, int(form.value("steps")))
        self.forward.set_model(str(form.value("model")))

    def show_forward(self, result: Result | None = None) -> ForwardDialog:
        """The forward process of ``result`` (or the picture on the canvas) under the form's model."""
        if self.forward_dialog is None:
            self.forward_dialog = ForwardDialog(self.forward, self.current_picture, self._window._dialog_dir,
                                                self._window)
        self._show(self.forward_dialog)
        self._sync_forward_settings()
        picture = self.current_picture(result) if result is not None or self.forward.picture is None else None
        if picture is not None:
            self.forward.set_picture(*picture)
        elif self.forward.picture is None:
            self.forward_dialog.status.setText("Open a picture to watch it dissolve into noise.")
        return self.forward_dialog

    def show_forward_file(self, path: str | Path) -> ForwardDialog:
        """The forward process of a picture file (from the gallery)."""
        dialog = self.show_forward()
        dialog.open_picture(path)
        return dialog

    def build_base(self) -> GenerationRequest:
        """The form's request (with the edit's parts), as Generate would make it. Raises ValidationError or
        DarkroomError."""
        if not self._window.models.has_models():
            raise DarkroomError("Add a model first.")
        return self._window.form_model.build(self._window.edit.parts()).request

    def show_grid(self) -> GridDialog:
        if self.grid_dialog is None:
            self.grid_dialog = GridDialog(self.grid, self.build_base, self._window._dialog_dir, self._window)
        self._show(self.grid_dialog)
        return self.grid_dialog

    def show_guidance(self, result: Result | None = None) -> GuidanceDialog:
        if self.guidance_dialog is None:
            self.guidance_dialog = GuidanceDialog(self.guidance, self._window)
        self.guidance.set_result(result or self._window.current_result())
        self.guidance_dialog.sync()
        self._show(self.guidance_dialog)
        return self.guidance_dialog

    @staticmethod
    def _show(dialog: QDialog) -> None:
        dialog.show()
        dialog.raise_()
        dialog.activateWindow()
