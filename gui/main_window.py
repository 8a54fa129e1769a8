"""Darkroom's main window: lays the panels out and wires them to the view-models and controllers.

State lives outside the widgets: :class:`gui.viewmodel.FormModel` (the form's values), :class:`gui.viewmodel.JobsModel`
(jobs, progress, what the canvas shows, this session's results), :class:`gui.models_controller.ModelsController`
(the model menu) and :class:`gui.gallery_controller.GalleryController` (the gallery folder, saving). The window
talks to the engine only through :class:`gui.bridge.Bridge`, and to people through one banner. Importing this
module imports Qt but not torch: the engine's worker thread imports torch after the window is on screen.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Literal

from PySide6.QtCore import QEvent, QPoint, Qt, QTimer, QUrl
from PySide6.QtGui import QCloseEvent, QDesktopServices, QDragEnterEvent, QDropEvent, QGuiApplication
from PySide6.QtWidgets import (
    QFileDialog,
    QMainWindow,
    QMenu,
    QSplitter,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from engine import settings as settings_mod
from engine.engine import EngineOptions
from engine.errors import DarkroomError
from engine.events import ImageReady, StatusChanged
from engine.gallery import Gallery, SavedImage
from engine.request import GenerationRequest, ValidationError

from . import actions as actions_mod
from . import window_state
from .banner import Message, MessageBanner
from .bridge import Bridge
from .edit_controller import SEND_TARGETS, EditController
from .edit_panel import EditPanel
from .form import FormPanel
from .gallery_controller import GalleryController, open_gallery
from .gallery_tab import GalleryTab
from .gallery_view import GalleryView
from .lab_controller import LabController
from .live_panel import LivePanel
from .memory_menu import MemoryModeMenu
from .models_controller import ModelsController
from .models_dialog import ModelsDialog, choose_model_file, choose_model_folder
from .open_parameters import FILE_FILTER, image_paths_from_mime, open_parameters
from .preloader import ModelPreloader
from .results import Result
from .session import SessionPanel
from .status_bar import EngineStatusBar
from .theme import app_icon
from .viewmodel import FormModel, JobsModel, ProgressState

log = logging.getLogger(__name__)

NO_MODEL_TEXT = "No model yet — add a model folder or .safetensors file."


class MainWindow(QMainWindow):
    """The Darkroom window. ``start_engine=False`` leaves the engine idle until :meth:`start_engine` is called.
    ``gallery``: the gallery to save into, None for none, or "default" to open the one the settings name."""

    def __init__(self, settings: settings_mod.Settings | None = None, engine_options: EngineOptions | None = None, *,
                 start_engine: bool = True, gallery: Gallery | None | Literal["default"] = "default",
                 parent: QWidget | None = None):
        super().__init__(parent)
        load_problem, first_run = "", False
        if settings is None:
            first_run = not settings_mod.settings_path().exists()
            settings, load_problem = settings_mod.load()
        self.settings = settings
        self._start_engine_after_paint = start_engine
        self._closing = False
        self._form_message: Message | None = None  # the banner's complaint about the form, dismissed once fixed
        #: when the window was first painted (time.perf_counter()) and whether torch had been imported by then
        self.first_paint_at: float | None = None
        self.torch_loaded_at_first_paint: bool | None = None

        gallery_error = ""
        if gallery == "default":
            gallery, gallery_error = open_gallery(settings.gallery_dir)
        options = engine_options or EngineOptions(fast_path=settings.fast_path, memory_mode=settings.memory_mode)
        self.bridge = Bridge(options, parent=self)
        self.form_model = FormModel(self)
        self.jobs = JobsModel(self.bridge, parent=self)
        self.models = ModelsController(settings, self.form_model, self)
        self.gallery = GalleryController(settings, gallery, self)
        self.preloader = ModelPreloader(self.bridge, self.form_model, self)
        self.setWindowTitle("Darkroom")
        self.setWindowIcon(app_icon())
        self.setAcceptDrops(True)
        self.setMinimumSize(800, 560)
        self.commands = actions_mod.make_actions(self, self._action_slots(), fast_path_on=settings.fast_path)
        self._build_widgets()
        actions_mod.fill_menu_bar(self.menuBar(), self.commands, MemoryModeMenu(settings, self.bridge, self))
        self._add_model_menu = QMenu(self)
        self._add_model_menu.addActions([self.commands.add_model_folder, self.commands.add_model_file])
        self._add_model_menu.addAction("Model library and downloads…", self.open_models_dialog)
        self._connect()
        self._restore_settings()
        self.models.refresh()
        self.models.settle(first_run)

        self.form.widget("prompt").setFocus(Qt.FocusReason.OtherFocusReason)
        if load_problem:
            self.banner.warning(load_problem)
        if gallery_error:
            self.banner.warning("The gallery could not be opened, so pictures will not be saved automatically. "
                                "Use Save as… to keep them.", gallery_error)

    # -- construction -----------------------------------------------------------------------------------------
    def _action_slots(self) -> actions_mod.ActionSlots:
        return actions_mod.ActionSlots(
            generate=self.generate, cancel=self.jobs.cancel_current, cancel_all=self.jobs.cancel_all,
            random_seed=lambda: self.form_model.set_value("seed", "random"), reuse_seed=self.form_model.reuse_last_seed,
            open_parameters=self.open_parameters_dialog,
            add_model_folder=lambda: choose_model_folder(self, self.models, self._dialog_dir()),
            add_model_file=lambda: choose_model_file(self, self.models, self._dialog_dir()), save_as=self.save_current_as, copy=self.copy_current,
            show_gallery_folder=self.show_gallery_folder, choose_gallery_folder=self.choose_gallery_folder_dialog,
            quit=self.close, create_tab=lambda: self.tabs.setCurrentIndex(0),
            gallery_tab=lambda: self.tabs.setCurrentIndex(1), about=lambda: actions_mod.show_about(self),
            shortcuts=lambda: actions_mod.show_shortcuts(self, self.commands), fast_path=self.set_fast_path,
            preview_mode=self.set_preview_mode,
        )

    def _build_widgets(self) -> None:
        self.banner = MessageBanner()
        self.form_panel = FormPanel(self.form_model)
        self.form = self.form_panel.form
        self.generate_button = self.form_panel.generate_button
        self.cancel_button = self.form_panel.cancel_button
        self.live = LivePanel(self.jobs, self.commands.preview)
        self.edit = EditController(self.form_model, self.gallery, self.live, self)
        self.edit_panel = EditPanel(self.edit.model, self._dialog_dir)
        self.form_panel.add_section(self.edit_panel)
        self.session = SessionPanel(self.jobs)
        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        for i, (panel, stretch) in enumerate(((self.form_panel, 0), (self.live, 1), (self.session, 0))):
            self.splitter.addWidget(panel)
            self.splitter.setStretchFactor(i, stretch)
        self.splitter.setSizes([360, 700, 262])
        self.splitter.setChildrenCollapsible(False)

        self.tabs = QTabWidget()
        self.tabs.setDocumentMode(True)
        self.tabs.addTab(self.splitter, "Create")
        self.gallery_tab = GalleryTab(self.gallery)
        self.tabs.addTab(self.gallery_tab, "Gallery")
        central = QWidget()
        layout = QVBoxLayout(central)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.banner)
        layout.addWidget(self.tabs, 1)
        self.setCentralWidget(central)

        self.status = EngineStatusBar()
        self.setStatusBar(self.status)

    def _connect(self) -> None:
        self.tabs.currentChanged.connect(lambda i: self.commands.set_create_tab_shown(self.tabs.widget(i) is self.splitter))
        self.status.watch(self.bridge)
        self.jobs.jobs_changed.connect(self._on_jobs_changed)
        self.jobs.progress_changed.connect(self._on_progress)
        self.jobs.result_added.connect(self._on_result)
        self.jobs.failed.connect(lambda e: self.banner.error(e.message, e.details))
        self.jobs.notes.connect(self.banner.info)
        self.gallery.saved.connect(self._on_saved)
        self.gallery.save_failed.connect(self._on_save_failed)
        self.gallery_tab.use_parameters.connect(self.use_parameters)
        self.gallery_tab.use_seed.connect(self.use_seed)
        self.gallery_tab.send_to.connect(self.send_to_edit)
        self.gallery_tab.status_message.connect(lambda text: self.status.showMessage(text, 5000))
        self.models.choices_changed.connect(self._on_models_changed)
        self.models.message.connect(self.banner.post)
        self.models.status.connect(lambda text: self.status.showMessage(text, 5000))
        self.form.add_model_requested.connect(self._show_add_model_menu)
        self.form.model_chosen.connect(self.models.apply_model_defaults)
        strip = self.session.strip
        strip.save_as_requested.connect(self.save_result_as)
        strip.use_parameters_requested.connect(lambda r: self.use_parameters(r.request))
        strip.use_seed_requested.connect(lambda r: self.use_seed(r.request.seed))
        strip.send_requested.connect(self.edit.send_result)
        self.edit_panel.paint_requested.connect(self.edit.paint)
        self.edit.model.source_changed.connect(lambda: self.form_panel.reveal(self.edit_panel.source_box))
        for source in (self.edit_panel, self.edit):
            source.message.connect(self.banner.show_message)
        self.generate_button.clicked.connect(self.generate)
        self.cancel_button.clicked.connect(self.jobs.cancel_current)
        self.live.canvas.activated.connect(self.save_current_as)
        self.live.canvas.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.live.canvas.customContextMenuRequested.connect(self._canvas_menu)
        self.lab = LabController(self)  # the Diffusion Lab: replay, live mode, forward process, grids, guidance
        self._on_jobs_changed()

    # -- settings ---------------------------------------------------------------------------------------------
    def _restore_settings(self) -> None:
        s = self.settings
        self.form_model.set_values(s.generation)
        self.form_model.set_last_seed(s.last_seed)
        self.set_preview_mode(s.preview_mode)
        window_state.restore(self, self.splitter, s)

    def save_settings(self) -> bool:
        """Store the form and the window's geometry in :attr:`settings` and write them to disk."""
        s = self.settings
        s.generation = self.form_model.values()
        s.last_seed = self.form_model.last_seed
        window_state.store(self, self.splitter, s)
        try:
            settings_mod.save(s)
        except OSError as exc:
            log.warning("could not save settings: %s", exc)
            if not self._closing:
                self.banner.warning(f"Your settings could not be saved ({exc.strerror or exc}).", str(exc))
            return False
        return True

    def set_fast_path(self, on: bool) -> None:
        """Remember the GPU fast path choice; the engine reads it when it starts."""
        self.settings.fast_path = bool(on)
        self.banner.info("The GPU fast path will be " + ("on" if on else "off") + " from the next launch.")

    def set_preview_mode(self, mode: str) -> None:
        self.settings.preview_mode = mode
        self.commands.preview[mode].setChecked(True)
        self.live.set_preview_mode(mode)
        self.bridge.set_preview_mode(mode)

    # -- models -----------------------------------------------------------------------------------------------
    def _on_models_changed(self, choices: list) -> None:
        self.form.set_model_choices(choices)
        has = bool(choices)
        self.generate_button.setEnabled(has)
        self.commands.generate.setEnabled(has)
        if has:
            self.live.canvas.set_empty_message(
                "Nothing here yet", "Type a prompt and press Generate (Ctrl+Enter) to watch it develop.")
        else:
            self.live.canvas.set_empty_message(
                "No model yet", "Add a model folder or .safetensors file: a diffusers folder (with model_index.json) "
                "or a single checkpoint.", "Add model…", self._show_add_model_menu)
        self._on_jobs_changed()

    def _show_add_model_menu(self) -> None:
        anchor = self.form.models if self.form.models.isVisible() else self.live.canvas
        self._add_model_menu.popup(anchor.mapToGlobal(QPoint(0, anchor.height())))

    def open_models_dialog(self) -> ModelsDialog:
        """The model library window (non-modal; closing it cancels a download)."""
        dialog = ModelsDialog(self.models, self._dialog_dir(), self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.show()
        return dialog

    def _dialog_dir(self) -> str:
        return self.settings.last_dir or str(Path.home())

    # -- engine -----------------------------------------------------------------------------------------------
    def event(self, event: QEvent) -> bool:
        handled = super().event(event)
        if event.type() == QEvent.Type.UpdateRequest and self.first_paint_at is None:
            # The whole window has just been painted and flushed to the screen: only now let the engine thread
            # import torch, so the person sees the window first.
            self.first_paint_at = time.perf_counter()
            self.torch_loaded_at_first_paint = "torch" in sys.modules
            if self._start_engine_after_paint:
                QTimer.singleShot(0, self.start_engine)
        return handled

    def start_engine(self) -> None:
        if not self._closing:
            self.status.show_engine_status(StatusChanged("Starting the engine…", busy=True))
            self.bridge.start()

    # -- generating -------------------------------------------------------------------------------------------
    def generate(self) -> int | None:
        """Validate the form and queue a job. Returns the job id, or None when the form was rejected."""
        if self._closing:
            return None
        if not self.models.has_models():
            self.banner.error(NO_MODEL_TEXT)
            return None
        try:
            built = self.form_model.build(self.edit.parts())
        except DarkroomError as exc:  # a picture of the edit could not be read or stored
            self.banner.error(exc.message, exc.details)
            return None
        except ValidationError as exc:
            problems = list(exc.errors.values())
            self.banner.error(problems[0] if len(problems) == 1 else "Some settings need fixing: " + " ".join(problems))
            self._form_message = self.banner.message()
            return None
        shown = self.banner.message()
        if built.notices:
            self.banner.info(" ".join(built.notices))
        elif shown is not None and (shown.level != "error" or shown is self._form_message):
            self.banner.dismiss()  # notices and the form's own complaints are settled; engine errors stay
        try:
            job_id = self.jobs.submit(built.request)
        except RuntimeError as exc:
            self.banner.error("The engine has stopped; restart Darkroom to generate again.", str(exc))
            return None
        self.form_model.set_last_seed(built.request.seed)
        self.save_settings()
        return job_id

    def _on_jobs_changed(self) -> None:
        n = len(self.jobs.jobs())
        self.cancel_button.setEnabled(n > 0)
        self.commands.cancel.setEnabled(n > 0)
        self.commands.cancel_all.setEnabled(n > 1)
        self.generate_button.setToolTip(
            NO_MODEL_TEXT if not self.models.has_models() else "Generate (Ctrl+Enter)" if n == 0 else
            "Add to the queue (Ctrl+Enter); it starts when the pictures before it are done")

    def _on_progress(self, state: ProgressState) -> None:
        # The title carries the progress, so it stays visible while the window is minimised.
        self.setWindowTitle(f"{state.fraction:.0%} · Darkroom" if state.running else "Darkroom")

    def _on_result(self, result: Result) -> None:
        self.form_model.set_last_seed(result.request.seed)
        if not result.kind:  # live pictures are saved when kept, grid cells by their grid
            self.gallery.save(result)

    # -- saving -----------------------------------------------------------------------------------------------
    def _on_saved(self, ready: ImageReady, saved: SavedImage) -> None:
        if saved.warnings:
            self.banner.warning(" ".join(saved.warnings))
        if self.jobs.results.set_saved((ready.job_id, ready.image_index), str(saved.path)) is not None:
            self.status.showMessage(f"Saved {saved.path.name}", 4000)

    def _on_save_failed(self, ready: ImageReady, message: str, details: str) -> None:
        result = self.jobs.results.set_save_error((ready.job_id, ready.image_index), message)
        self.banner.error(
            f"The picture could not be saved to the gallery: {message} It is still here; use Save as… to keep it.",
            details, action_text="Save as…",
            action=(lambda: self.save_result_as(result)) if result is not None else None,
        )

    def current_result(self) -> Result | None:
        """The finished picture on the canvas, or None when it shows a preview or nothing."""
        shown = self.jobs.shown
        return shown.result if shown is not None else None

    def save_current_as(self) -> None:
        result = self.current_result()
        if result is None:
            self.status.showMessage("No finished picture on the canvas to save.", 4000)
        else:
            self.save_result_as(result)

    def save_result_as(self, result: Result, path: str | None = None) -> bool:
        if path is None:
            suggestion = str(Path(self._dialog_dir()) / f"darkroom-{result.request.seed}.png")
            path, _ = QFileDialog.getSaveFileName(self, "Save picture as", suggestion, "PNG image (*.png)")
            if not path:
                return False
        if not path.lower().endswith(".png"):
            path += ".png"
        self.settings.last_dir = str(Path(path).parent)
        try:
            self.gallery.save_as(result, Path(path))
        except DarkroomError as exc:
            self.banner.error(f"The picture could not be saved to {path}: {exc.message}", exc.details,
                              action_text="Try again…", action=lambda: self.save_result_as(result))
            return False
        self.status.showMessage(f"Saved {path}", 5000)
        message = self.banner.message()
        if message is not None and message.action_text == "Save as…":
            self.banner.dismiss()
        return True

    def _canvas_menu(self, pos: QPoint) -> None:
        if self.live.canvas.image() is None:
            return
        result = self.current_result()
        menu = QMenu(self)
        menu.addAction(self.commands.save_as)
        menu.addAction(self.commands.copy)
        if result is not None:
            menu.addSeparator()
            menu.addAction("Use these parameters", lambda: self.use_parameters(result.request))
            menu.addAction(f"Use seed {result.request.seed}", lambda: self.use_seed(result.request.seed))
            menu.addSeparator()
            for target, text in SEND_TARGETS.items():
                menu.addAction(text, lambda t=target: self.edit.send_result(t, result))
        self.lab.add_canvas_actions(menu, result)
        self.commands.save_as.setEnabled(result is not None)
        menu.exec(self.live.canvas.mapToGlobal(pos))
        self.commands.save_as.setEnabled(True)

    def copy_current(self) -> None:
        image = self.live.canvas.image()
        if image is not None:
            QGuiApplication.clipboard().setImage(image)
            self.status.showMessage("Copied the picture.", 3000)

    # -- gallery folder ---------------------------------------------------------------------------------------
    def show_gallery_folder(self) -> None:
        folder = self.gallery.folder()
        folder.mkdir(parents=True, exist_ok=True)
        QDesktopServices.openUrl(QUrl.fromLocalFile(str(folder)))

    def choose_gallery_folder_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Choose the gallery folder", str(self.gallery.folder()))
        if folder:
            self.set_gallery_folder(folder)

    def set_gallery_folder(self, folder: str | Path) -> bool:
        """Save into, and show, the gallery in ``folder`` from now on (remembered across launches)."""
        ok, error = self.gallery.set_folder(folder)
        if not ok:
            self.banner.error(f"The gallery in {folder} could not be opened.", error)
            return False
        self.save_settings()
        self.status.showMessage(f"Pictures are now saved in {self.gallery.folder()}.", 5000)
        return True

    # -- parameters from elsewhere ----------------------------------------------------------------------------
    def use_parameters(self, request: GenerationRequest) -> None:
        """Fill the form and the edit with a recipe: remaking it gives the same picture."""
        self.form_model.set_request(request)
        self.edit.restore(request)
        self.tabs.setCurrentIndex(0)
        self.status.showMessage("Parameters filled in from the picture.", 4000)

    def send_to_edit(self, target: str, path: Path, request: GenerationRequest | None) -> None:
        if self.edit.send_file(target, path, request):
            self.tabs.setCurrentIndex(0)

    def use_seed(self, seed: int) -> None:
        self.form_model.set_value("seed", seed)
        self.tabs.setCurrentIndex(0)

    @property
    def gallery_view(self) -> GalleryView | None:
        """The Gallery tab's view, None while there is no gallery."""
        return self.gallery_tab.view

    def open_parameters_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open parameters from a picture", self._dialog_dir(), FILE_FILTER)
        if path:
            self.settings.last_dir = str(Path(path).parent)
            self.open_parameters(path)

    def open_parameters(self, path: str | Path) -> bool:
        """Fill the form from the parameters stored in a PNG (Darkroom's own, A1111, Fooocus, InvokeAI, ComfyUI).

        Only the values the picture records change (never the batch count); a picture without a seed sets the
        seed to "random"."""
        opened = open_parameters(Path(path))
        if not opened.ok:
            self.banner.error(opened.message)
            return False
        values = {k: v for k, v in opened.fields.items() if k != "batch_count"}
        values.setdefault("seed", "random")
        self.form_model.set_values(values)
        self.tabs.setCurrentIndex(0)
        self.banner.show_message("warning" if opened.warnings else "info", opened.message)
        return True

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802
        if _dropped_png(event.mimeData()) is not None:
            event.acceptProposedAction()
        else:
            event.ignore()

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802
        path = _dropped_png(event.mimeData())
        if path is not None:
            event.acceptProposedAction()
            self.open_parameters(path)

    # -- closing ----------------------------------------------------------------------------------------------
    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802
        """Save the settings, stop the gallery tab's threads, finish queued saves and close the gallery, then
        cancel and stop the engine without waiting for its thread (see :meth:`Bridge.shutdown`). The engine goes
        last: on its way out it lets go of the model, which holds the GIL for a while."""
        if not self._closing:
            self._closing = True
            self.save_settings()
            self.gallery_tab.shutdown()
            self.gallery.shutdown()
            self.bridge.shutdown()
        event.accept()
        super().closeEvent(event)


def _dropped_png(mime) -> Path | None:
    files = [p for p in image_paths_from_mime(mime) if p.suffix.lower() == ".png"]
    return files[0] if files else None
