"""Darkroom's main window: the form on the left, the live canvas in the middle, this session's results and the
queue on the right, a Gallery tab, and one message banner for everything that goes wrong.

The window talks to the engine only through :class:`gui.bridge.Bridge`. Importing this module imports Qt but not
torch: the engine's worker thread imports torch after the window is on screen.
"""

from __future__ import annotations

import base64
import logging
import sys
import time
from pathlib import Path
from typing import Any

from PySide6.QtCore import QByteArray, QEvent, QPoint, QSize, Qt, QTimer, QUrl, Signal
from PySide6.QtGui import (
    QAction,
    QActionGroup,
    QCloseEvent,
    QDesktopServices,
    QDragEnterEvent,
    QDropEvent,
    QGuiApplication,
    QImage,
    QKeySequence,
)
from PySide6.QtWidgets import (
    QFileDialog,
    QFrame,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QMenu,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSplitter,
    QTabWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from engine import __version__, paths
from engine.engine import EngineOptions
from engine.events import Cancelled, Failed, Finished, ImageReady, Preview, Progress, Started, StatusChanged
from engine.request import GenerationRequest, ValidationError, build_request

from engine import settings as settings_mod
from .banner import MessageBanner
from .bridge import Bridge
from .canvas import Frame, PreviewCanvas
from .form import GenerationForm
from .session import QueueList, Result, SessionStrip
from engine.settings import Settings

log = logging.getLogger(__name__)

ICON_DIR = paths.RESOURCES / "icons"

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
NO_MODEL_TEXT = "No model yet — add a model folder or .safetensors file."
NO_MODEL_TITLE = "No model yet"
NO_MODEL_DETAIL = (
    "Add a model folder or .safetensors file: a diffusers folder (with model_index.json) or a single checkpoint."
)


def app_icon():
    from PySide6.QtGui import QIcon

    icon = QIcon()
    svg = ICON_DIR / "darkroom.svg"
    for size in (16, 32, 48, 64, 128, 256, 512):
        png = ICON_DIR / f"darkroom-{size}.png"
        if png.is_file():
            icon.addFile(str(png), QSize(size, size))
    if icon.isNull() and svg.is_file():
        icon.addFile(str(svg))
    return icon


def format_seconds(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def progress_text(p: Progress) -> str:
    parts = []
    if p.image_count > 1:
        parts.append(f"Image {p.image_index + 1}/{p.image_count}")
    parts.append(f"Step {p.step}/{p.total}")
    if p.its > 0:
        parts.append(f"{p.its:.1f} it/s" if p.its >= 1 else f"{1 / p.its:.1f} s/it")
    if p.step < p.total or p.image_index + 1 < p.image_count:
        parts.append(f"ETA {format_seconds(p.eta_s)}")
    return "  ·  ".join(parts)


def _b64(data: QByteArray) -> str:
    return base64.b64encode(bytes(data.data())).decode("ascii")


def _unb64(text: str) -> QByteArray | None:
    if not text:
        return None
    try:
        return QByteArray(base64.b64decode(text.encode("ascii"), validate=True))
    except ValueError:
        return None


class MainWindow(QMainWindow):
    """The Darkroom window. ``start_engine=False`` leaves the engine idle until :meth:`start_engine` is called."""

    #: emitted when the window has shown a finished image (for tests and scripting)
    result_added = Signal(object)

    def __init__(
        self,
        settings: Settings | None = None,
        engine_options: EngineOptions | None = None,
        *,
        start_engine: bool = True,
        gallery: Any = "default",
        parent: QWidget | None = None,
    ):
        super().__init__(parent)
        self._start_engine_after_paint = start_engine
        #: when the window was first painted (time.perf_counter()) and whether torch had been imported by then
        self.first_paint_at: float | None = None
        self.torch_loaded_at_first_paint: bool | None = None
        load_problem = ""
        first_run = False
        if settings is None:
            first_run = not settings_mod.settings_path().exists()
            settings, load_problem = settings_mod.load()
        self.settings = settings
        self._closing = False
        self._follow_live = True
        self._current_job: int | None = None
        self._last_progress: Progress | None = None
        self._showing: Result | None = None
        self._form_message = None  # the banner message about the form, dismissed once the form is accepted
        self.close_seconds: float | None = None
        self.shutdown_clean: bool | None = None

        gallery_error = ""
        self._retired_galleries: list[Any] = []
        if gallery == "default":
            gallery, gallery_error = _open_gallery(settings.gallery_dir or None)
        if gallery is not None and hasattr(gallery, "autosave"):
            gallery.autosave = settings.autosave
        options = engine_options or EngineOptions(fast_path=settings.fast_path)
        self.bridge = Bridge(options, gallery=gallery, parent=self)

        self.setWindowTitle("Darkroom")
        self.setWindowIcon(app_icon())
        self.setAcceptDrops(True)
        self.setMinimumSize(800, 560)

        self._build_widgets()
        self._build_actions()
        self._build_menus()
        self._connect()
        self._apply_settings()
        self.refresh_models()
        if first_run and self.form.has_models():
            self.use_native_size()
        self._on_queue_changed()

        self.form.prompt.setFocus(Qt.FocusReason.OtherFocusReason)
        if load_problem:
            self.banner.warning(load_problem)
        if gallery_error:
            self.banner.warning("The gallery could not be opened, so pictures will not be saved automatically. "
                                "Use Save as… to keep them.", gallery_error)

    # -- construction -----------------------------------------------------------------------------------------
    def _build_widgets(self) -> None:
        self.banner = MessageBanner()
        self.form = GenerationForm()

        self.generate_button = QPushButton("Generate")
        self.generate_button.setObjectName("GenerateButton")
        self.generate_button.setToolTip("Generate (Ctrl+Enter)")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setObjectName("CancelButton")
        self.cancel_button.setToolTip("Cancel the running picture (Esc)")
        self.cancel_button.setEnabled(False)

        form_box = QWidget()
        form_layout = QVBoxLayout(form_box)
        form_layout.setContentsMargins(12, 10, 8, 10)
        form_layout.addWidget(self.form)
        form_layout.addStretch(0)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setWidget(form_box)
        buttons = QHBoxLayout()
        buttons.setContentsMargins(12, 4, 8, 12)
        buttons.addWidget(self.generate_button, 3)
        buttons.addWidget(self.cancel_button, 1)
        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        left_layout.setSpacing(0)
        left_layout.addWidget(scroll, 1)
        left_layout.addLayout(buttons)
        # Wide enough for the form without a horizontal scroll bar (plus the vertical one).
        left.setMinimumWidth(form_box.minimumSizeHint().width() + scroll.verticalScrollBar().sizeHint().width() + 2)

        # centre: preview mode switch, canvas, explanation, progress
        self.canvas = PreviewCanvas()
        self.live_button = QPushButton("Back to live view")
        self.live_button.setToolTip("Show the picture being made again")
        self.live_button.hide()
        self.mode_bar = QHBoxLayout()
        self.mode_bar.setSpacing(0)
        self.preview_explain = QLabel()
        self.preview_explain.setObjectName("PreviewExplain")
        self.preview_explain.setWordWrap(True)
        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setValue(0)
        self.progress_bar.setTextVisible(True)
        self.progress_bar.setFormat("Idle")
        centre = QWidget()
        centre_layout = QVBoxLayout(centre)
        centre_layout.setContentsMargins(8, 10, 8, 10)
        centre_layout.setSpacing(8)
        top_row = QHBoxLayout()
        top_row.addLayout(self.mode_bar)
        top_row.addStretch(1)
        top_row.addWidget(self.live_button)
        centre_layout.addLayout(top_row)
        centre_layout.addWidget(self.canvas, 1)
        centre_layout.addWidget(self.progress_bar)
        centre_layout.addWidget(self.preview_explain)

        # right: session strip and queue
        self.strip = SessionStrip()
        self.queue_list = QueueList()
        self.queue_list.setMaximumHeight(180)
        self.queue_list.hide()
        self.queue_empty = QLabel("Nothing waiting.")
        self.queue_empty.setObjectName("PreviewExplain")
        right = QWidget()
        right_layout = QVBoxLayout(right)
        right_layout.setContentsMargins(8, 10, 12, 10)
        right_layout.setSpacing(6)
        strip_heading = QLabel("This session")
        strip_heading.setObjectName("PanelHeading")
        self.queue_heading = queue_heading = QLabel("Queue")
        queue_heading.setObjectName("PanelHeading")
        right_layout.addWidget(strip_heading)
        right_layout.addWidget(self.strip, 1)
        right_layout.addWidget(queue_heading)
        right_layout.addWidget(self.queue_empty)
        right_layout.addWidget(self.queue_list)
        right.setMinimumWidth(160)

        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.addWidget(left)
        self.splitter.addWidget(centre)
        self.splitter.addWidget(right)
        self.splitter.setStretchFactor(0, 0)
        self.splitter.setStretchFactor(1, 1)
        self.splitter.setStretchFactor(2, 0)
        self.splitter.setSizes([360, 700, 262])
        self.splitter.setChildrenCollapsible(False)

        self.tabs = QTabWidget()
        self.tabs.setDocumentMode(True)
        self.tabs.addTab(self.splitter, "Create")
        self.gallery_view = self._make_gallery_view()
        self.tabs.addTab(self.gallery_view, "Gallery")

        central = QWidget()
        layout = QVBoxLayout(central)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.banner)
        layout.addWidget(self.tabs, 1)
        self.setCentralWidget(central)

        self.status_label = QLabel("Starting…")
        self.status_busy = QProgressBar()
        self.status_busy.setRange(0, 0)
        self.status_busy.setMaximumWidth(90)
        self.status_busy.setMaximumHeight(12)
        self.status_busy.setTextVisible(False)
        self.status_busy.hide()
        self.device_label = QLabel("")
        self.device_label.setToolTip("Where pictures are computed, and the number format used")
        self.statusBar().addWidget(self.status_label, 1)
        self.statusBar().addPermanentWidget(self.status_busy)
        self.statusBar().addPermanentWidget(self.device_label)
        self.statusBar().setSizeGripEnabled(True)

    def _make_gallery_view(self) -> QWidget:
        gallery = self.bridge.gallery
        if gallery is not None:
            try:
                from .gallery_view import GalleryView
            except ImportError:
                log.info("gallery view not available")
            else:
                try:
                    view = GalleryView(gallery, self)
                except Exception as exc:  # noqa: BLE001 - the window must open even if the gallery view fails
                    log.exception("gallery view failed to open")
                    return _placeholder(f"The gallery could not be shown: {exc}")
                view.use_parameters.connect(self.use_parameters)
                view.use_seed.connect(self.use_seed)
                if hasattr(view, "status_message"):
                    view.status_message.connect(lambda text: self.statusBar().showMessage(text, 5000))
                if hasattr(view, "autosave_changed"):
                    view.autosave_changed.connect(lambda on: setattr(self.settings, "autosave", bool(on)))
                return view
        return _placeholder(
            "The gallery is not available. Pictures you make are still shown in this session's strip, and "
            "Save as… keeps them."
        )

    def _build_actions(self) -> None:
        self._create_tab_keys: dict[QAction, list[QKeySequence]] = {}

        def action(text, slot, shortcuts=(), tip="", create_tab=False) -> QAction:
            """An action for menus and shortcuts. ``create_tab`` ones have their keys only while the Create tab is
            shown, so they never clash with the Gallery tab's own keys (Esc, Ctrl+R, Ctrl+Shift+C…)."""
            a = QAction(text, self)
            if shortcuts:
                a.setShortcuts([QKeySequence(s) for s in shortcuts])
            if tip:
                a.setToolTip(tip)
                a.setStatusTip(tip)
            a.triggered.connect(slot)
            if create_tab:
                self._create_tab_keys[a] = a.shortcuts()
            self.addAction(a)
            return a

        self.generate_action = action(
            "&Generate", self.generate, ("Ctrl+Return", "Ctrl+Enter"), "Generate with these settings"
        )
        self.cancel_action = action("&Cancel", self.cancel_current, ("Esc",), "Cancel the running picture", True)
        self.cancel_all_action = action("Cancel &all", self.cancel_all, ("Shift+Esc",), "Cancel every queued job", True)
        self.random_seed_action = action("&Random seed", lambda: self.form.set_seed("random"), ("Ctrl+R",),
                                         create_tab=True)
        self.reuse_seed_action = action("Reuse &last seed", self.form.reuse_last_seed, ("Ctrl+Shift+R",),
                                        create_tab=True)
        self.open_params_action = action(
            "&Open parameters…", self.open_parameters_dialog, (QKeySequence.StandardKey.Open,),
            "Fill the form from a PNG made by Darkroom or another tool",
        )
        self.add_folder_action = action("Add model &folder…", self.add_model_folder_dialog)
        self.add_file_action = action("Add model fi&le (.safetensors)…", self.add_model_file_dialog)
        self.save_as_action = action("&Save image as…", self.save_current_as, (QKeySequence.StandardKey.Save,),
                                     create_tab=True)
        self.copy_action = action("&Copy image", self.copy_current, ("Ctrl+Shift+C",), create_tab=True)
        self.open_gallery_folder_action = action("Show gallery &folder", self.open_gallery_folder)
        self.choose_gallery_folder_action = action("C&hoose gallery folder…", self.choose_gallery_folder_dialog)
        self.quit_action = action("&Quit", self.close, ("Ctrl+Q",))
        self.create_tab_action = action("&Create", lambda: self.tabs.setCurrentIndex(0), ("Ctrl+1",))
        self.gallery_tab_action = action("&Gallery", lambda: self.tabs.setCurrentIndex(1), ("Ctrl+2",))
        self.about_action = action("&About Darkroom", self.show_about)
        self.shortcuts_action = action("&Keyboard shortcuts", self.show_shortcuts, ("F1",))
        self.fast_path_action = action("GPU &fast path (compiled, from the next launch)", self.set_fast_path)
        self.fast_path_action.setCheckable(True)
        self.fast_path_action.setChecked(self.settings.fast_path)
        self.fast_path_action.setStatusTip(
            "On a CUDA GPU, compile the U-Net in the background and replay it as a CUDA graph. Takes effect "
            "the next time Darkroom starts; turn it off if generation on your GPU misbehaves."
        )

        self.preview_group = QActionGroup(self)
        self.preview_group.setExclusive(True)
        self.preview_actions: dict[str, QAction] = {}
        for mode in ("x0", "xt", "off"):
            a = QAction(PREVIEW_LABELS[mode], self.preview_group)
            a.setCheckable(True)
            a.setToolTip(PREVIEW_TIPS[mode])
            a.setStatusTip(PREVIEW_TIPS[mode])
            a.setData(mode)
            a.triggered.connect(lambda _=False, m=mode: self.set_preview_mode(m))
            self.preview_actions[mode] = a
            button = QToolButton()
            button.setObjectName("ModeButton")
            button.setDefaultAction(a)
            button.setMinimumWidth(button.sizeHint().width())  # never elide the labels
            self.mode_bar.addWidget(button)

        self.generate_button.clicked.connect(self.generate)
        self.cancel_button.clicked.connect(self.cancel_current)

    def set_fast_path(self, on: bool) -> None:
        """Remember the GPU fast path choice; the engine reads it when it starts."""
        self.settings.fast_path = bool(on)
        self.banner.info("The GPU fast path will be " + ("on" if on else "off") + " from the next launch.")

    def _build_menus(self) -> None:
        bar = self.menuBar()
        file_menu = bar.addMenu("&File")
        file_menu.addAction(self.open_params_action)
        file_menu.addSeparator()
        file_menu.addAction(self.add_folder_action)
        file_menu.addAction(self.add_file_action)
        file_menu.addSeparator()
        file_menu.addAction(self.save_as_action)
        file_menu.addAction(self.copy_action)
        file_menu.addAction(self.open_gallery_folder_action)
        file_menu.addAction(self.choose_gallery_folder_action)
        file_menu.addSeparator()
        file_menu.addAction(self.quit_action)
        gen_menu = bar.addMenu("&Generate")
        gen_menu.addAction(self.generate_action)
        gen_menu.addAction(self.cancel_action)
        gen_menu.addAction(self.cancel_all_action)
        gen_menu.addSeparator()
        gen_menu.addAction(self.random_seed_action)
        gen_menu.addAction(self.reuse_seed_action)
        view_menu = bar.addMenu("&View")
        preview_menu = view_menu.addMenu("Live view")
        preview_menu.setToolTipsVisible(True)
        for a in self.preview_actions.values():
            preview_menu.addAction(a)
        view_menu.addSeparator()
        view_menu.addAction(self.create_tab_action)
        view_menu.addAction(self.gallery_tab_action)
        view_menu.addSeparator()
        view_menu.addAction(self.fast_path_action)
        help_menu = bar.addMenu("&Help")
        help_menu.addAction(self.shortcuts_action)
        help_menu.addAction(self.about_action)
        self._add_model_menu = QMenu(self)
        self._add_model_menu.addAction(self.add_folder_action)
        self._add_model_menu.addAction(self.add_file_action)

    def _tab_changed(self, index: int) -> None:
        on_create_tab = self.tabs.widget(index) is self.splitter
        for a, keys in self._create_tab_keys.items():
            a.setShortcuts(keys if on_create_tab else [])

    def _connect(self) -> None:
        self.tabs.currentChanged.connect(self._tab_changed)
        b = self.bridge
        b.status_changed.connect(self._on_status)
        b.job_started.connect(self._on_started)
        b.progress.connect(self._on_progress)
        b.preview.connect(self._on_preview)
        b.image_ready.connect(self._on_image_ready)
        b.job_finished.connect(self._on_job_ended)
        b.job_cancelled.connect(self._on_job_ended)
        b.job_failed.connect(self._on_failed)
        b.queue_changed.connect(self._on_queue_changed)
        b.image_saved.connect(self._on_saved)
        b.save_failed.connect(self._on_save_failed)
        self.form.add_model_requested.connect(self._show_add_model_menu)
        self.form.model_chosen.connect(self.use_native_size)
        self.strip.result_chosen.connect(self.show_result)
        self.strip.save_as_requested.connect(self.save_result_as)
        self.strip.use_parameters_requested.connect(lambda r: self.use_parameters(r.ready.request))
        self.strip.use_seed_requested.connect(lambda r: self.use_seed(r.ready.request.seed))
        self.queue_list.cancel_requested.connect(self.cancel_job)
        self.live_button.clicked.connect(self.follow_live)
        self.canvas.activated.connect(self.save_current_as)
        self.canvas.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.canvas.customContextMenuRequested.connect(self._canvas_menu)

    # -- settings ---------------------------------------------------------------------------------------------
    def _apply_settings(self) -> None:
        s = self.settings
        self.form.set_values(
            {
                "prompt": s.prompt,
                "negative_prompt": s.negative_prompt,
                "seed": s.seed,
                "steps": s.steps,
                "cfg": s.cfg,
                "width": s.width,
                "height": s.height,
                "scheduler": s.scheduler,
                "batch_count": s.batch_count,
            }
        )
        self.form.set_last_seed(s.last_seed)
        self.preview_actions[s.preview_mode].setChecked(True)
        self.set_preview_mode(s.preview_mode)
        geometry = _unb64(s.window_geometry)
        if geometry is None or not self.restoreGeometry(geometry):
            self.resize(1280, 820)
        state = _unb64(s.window_state)
        if state is not None:
            self.restoreState(state)
        splitter = _unb64(s.splitter_state)
        if splitter is not None:
            self.splitter.restoreState(splitter)

    def collect_settings(self) -> Settings:
        """Copy the form and the window's geometry into :attr:`settings` and return it."""
        s = self.settings
        v = self.form.values()
        s.prompt = self.form.prompt.toPlainText()
        s.negative_prompt = self.form.negative.toPlainText()
        s.seed = v["seed"]
        s.steps, s.cfg, s.width, s.height = v["steps"], float(v["cfg"]), v["width"], v["height"]
        s.scheduler, s.model, s.batch_count = v["scheduler"], v["model"], v["batch_count"]
        s.last_seed = self.form.last_seed()
        gallery = self.bridge.gallery
        if gallery is not None and hasattr(gallery, "autosave"):
            s.autosave = bool(gallery.autosave)
        s.window_geometry = _b64(self.saveGeometry())
        s.window_state = _b64(self.saveState())
        s.splitter_state = _b64(self.splitter.saveState())
        return s

    def save_settings(self) -> bool:
        try:
            settings_mod.save(self.collect_settings())
        except OSError as exc:
            log.warning("could not save settings: %s", exc)
            if not self._closing:
                self.banner.warning(f"Your settings could not be saved ({exc.strerror or exc}).", str(exc))
            return False
        return True

    # -- models -----------------------------------------------------------------------------------------------
    def refresh_models(self, select: str | None = None) -> None:
        from engine.models import available_models

        try:
            entries = available_models(tuple(self.settings.user_models))
        except OSError as exc:
            entries = []
            self.banner.warning("The models folder could not be read.", str(exc))
        items = []
        for e in entries:
            value = str(e.path) if e.source == "path" else e.name
            source = {"bundled": "comes with Darkroom", "user": "in your models folder", "path": "added by you"}
            items.append((value, e.name, f"{e.name} — {source.get(e.source, e.source)}\n{e.path}"))
        wanted = select if select is not None else self.settings.model
        self.form.set_models(items, current=wanted)
        self._update_empty_state()

    def use_native_size(self, model: str | None = None) -> None:
        """Set the size to the one the model was trained at (other sizes work, but look worse)."""
        from engine.models import native_size

        model = self.form.model_value() if model is None else model
        width, height = native_size(model)
        if (width, height) != (self.form.width_box.value(), self.form.height_box.value()):
            self.form.set_size(width, height)
            self.statusBar().showMessage(f"Size set to {width} × {height}, the size this model was trained at.", 5000)

    def _update_empty_state(self) -> None:
        has = self.form.has_models()
        self.generate_button.setEnabled(has)
        self.generate_action.setEnabled(has)
        self.generate_button.setToolTip("Generate (Ctrl+Enter)" if has else NO_MODEL_TEXT)
        if has:
            self.canvas.set_empty_message(
                "Nothing here yet", "Type a prompt and press Generate (Ctrl+Enter) to watch it develop."
            )
        else:
            self.canvas.set_empty_message(NO_MODEL_TITLE, NO_MODEL_DETAIL, "Add model…", self._show_add_model_menu)

    def _show_add_model_menu(self) -> None:
        anchor = self.form.model if self.form.model.isVisible() else self.canvas
        self._add_model_menu.popup(anchor.mapToGlobal(QPoint(0, anchor.height())))

    def add_model_folder_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Choose a diffusers model folder", self._dialog_dir())
        if folder:
            self.add_model_path(folder)

    def add_model_file_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Choose a model file", self._dialog_dir(), "Safetensors checkpoints (*.safetensors)"
        )
        if path:
            self.add_model_path(path)

    def add_model_path(self, path: str | Path) -> bool:
        """Add a diffusers folder or .safetensors file to the model list and select it."""
        from engine.models import CHECKPOINT_SUFFIXES, UNSAFE_SUFFIXES, is_model_folder

        p = Path(path).expanduser()
        self.settings.last_dir = str(p.parent)
        if p.is_dir():
            if not is_model_folder(p):
                self.banner.error(
                    f"The folder “{p.name}” is not a diffusers model: it has no model_index.json. Choose the folder "
                    "that contains model_index.json, or a single .safetensors file.",
                    str(p),
                )
                return False
        elif p.is_file():
            suffix = p.suffix.lower()
            if suffix in UNSAFE_SUFFIXES:
                self.banner.error(
                    f"{p.name} is a pickle-based checkpoint, which can run code when opened. Darkroom only opens "
                    ".safetensors files; convert it first.",
                    str(p),
                )
                return False
            if suffix not in CHECKPOINT_SUFFIXES:
                self.banner.error(f"{p.name} is not a model file. Choose a .safetensors file or a model folder.", str(p))
                return False
        else:
            self.banner.error(f"{p} does not exist.")
            return False
        value = str(p.resolve())
        if value not in self.settings.user_models:
            self.settings.user_models.append(value)
        self.refresh_models(select=value)
        # The list shows user-folder models by name; select whichever entry points at this path.
        if self.form.model_value() != value:
            for i in range(self.form.model.count()):
                tip = self.form.model.itemData(i, Qt.ItemDataRole.ToolTipRole) or ""
                if tip.endswith(str(p)) or tip.endswith(value):
                    self.form.select_model(self.form.model.itemData(i))
                    break
        self.use_native_size()
        self.banner.info(f"Added the model “{p.stem if p.is_file() else p.name}”.")
        return True

    def _dialog_dir(self) -> str:
        return self.settings.last_dir or str(Path.home())

    # -- engine lifecycle -------------------------------------------------------------------------------------
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
        if self._closing:
            return
        self._set_status("Starting the engine…", busy=True)
        self.bridge.start()

    def _set_status(self, text: str, busy: bool = False) -> None:
        self.status_label.setText(text)
        self.status_busy.setVisible(busy)

    def _on_status(self, event: StatusChanged) -> None:
        self._set_status(event.message, event.busy)
        if event.device:
            self.device_label.setText(f"{event.device} · {event.dtype}" if event.dtype else event.device)

    # -- generating -------------------------------------------------------------------------------------------
    def generate(self) -> int | None:
        """Validate the form and queue a job. Returns the job id, or None when the form was rejected."""
        if self._closing:
            return None
        if not self.form.has_models():
            self.banner.error(NO_MODEL_TEXT)
            return None
        try:
            built = build_request(**self.form.values())
        except ValidationError as exc:
            self.form.mark_errors(exc.errors)
            problems = list(exc.errors.values())
            text = problems[0] if len(problems) == 1 else "Some settings need fixing: " + " ".join(problems)
            self.banner.error(text)
            self._form_message = self.banner.message()
            return None
        self.form.clear_errors()
        request = built.request
        shown = self.banner.message()
        if built.notices:
            self.form.width_box.setValue(request.width)
            self.form.height_box.setValue(request.height)
            self.banner.info(" ".join(built.notices))
        elif shown is not None and (shown.level != "error" or shown is self._form_message):
            self.banner.dismiss()  # notices and the form's own complaints are settled; engine errors stay
        try:
            job_id = self.bridge.submit(request)
        except RuntimeError as exc:
            self.banner.error("The engine has stopped; restart Darkroom to generate again.", str(exc))
            return None
        self.form.set_last_seed(request.seed)
        self.settings.last_seed = request.seed
        self.save_settings()
        return job_id

    def cancel_current(self) -> bool:
        return self.bridge.cancel_running()

    def cancel_job(self, job_id: int) -> bool:
        return self.bridge.cancel(job_id)

    def cancel_all(self) -> None:
        self.bridge.cancel_all()

    def _on_queue_changed(self) -> None:
        jobs = self.bridge.jobs()
        self.queue_list.set_jobs(jobs)
        self.queue_list.setVisible(bool(jobs))
        self.queue_empty.setVisible(not jobs)
        self.cancel_button.setEnabled(bool(jobs))
        self.cancel_action.setEnabled(bool(jobs))
        self.cancel_all_action.setEnabled(len(jobs) > 1)
        n = len(jobs)
        running = sum(1 for j in jobs if j.state == "running")
        waiting = n - running
        self.queue_heading.setText("Queue" if n == 0 else f"Queue · {running} running, {waiting} waiting")
        self.generate_button.setToolTip("Generate (Ctrl+Enter)" if n == 0 else
                                        "Add to the queue (Ctrl+Enter); it starts when the pictures before it are done")

    def _on_started(self, event: Started) -> None:
        self._current_job = event.job_id
        self._last_progress = None
        r = event.request
        self.progress_bar.setRange(0, r.steps * r.batch_count)
        self.progress_bar.setValue(0)
        self.progress_bar.setFormat(f"Starting {r.width}×{r.height}, {r.steps} steps, seed {r.seed}…")
        self.follow_live()

    def _on_progress(self, p: Progress) -> None:
        if p.job_id != self._current_job:
            return
        self._last_progress = p
        self.progress_bar.setMaximum(p.total * p.image_count)
        self.progress_bar.setValue(p.image_index * p.total + p.step)
        self.progress_bar.setFormat(progress_text(p).replace("%", "%%"))
        done = (p.image_index * p.total + p.step) / max(1, p.total * p.image_count)
        self.setWindowTitle(f"{done:.0%} · Darkroom")  # progress stays visible when the window is minimised

    def _on_preview(self, event: Preview, image: QImage) -> None:
        if not self._follow_live:
            return
        self._showing = None
        self.canvas.show_image(image, Frame("preview", event.job_id, event.step, event.total, event.image_index))
        what = "model's guess (x0)" if event.kind == "x0" else "noisy latent (x_t)"
        self.canvas.set_caption(f"Step {event.step}/{event.total} · {what}")
        self._explain()

    def _on_image_ready(self, ready: ImageReady, image: QImage) -> None:
        result = Result(ready, image)
        self.strip.add_result(result)
        self.form.set_last_seed(ready.request.seed)
        if self._follow_live:
            self._show(result, Frame("final", ready.job_id, ready.request.steps, ready.request.steps, ready.image_index))
        if ready.notes:
            self.banner.info(" ".join(ready.notes))
        self.result_added.emit(result)

    def _on_job_ended(self, event: Finished | Cancelled) -> None:
        if event.job_id != self._current_job and isinstance(event, Finished):
            return
        if isinstance(event, Cancelled) and event.job_id == self._current_job:
            frame = self.canvas.frame()
            if frame and frame.kind == "preview" and frame.job_id == event.job_id:
                self.canvas.set_caption(f"Cancelled at step {frame.step}/{frame.total}")
            self._set_progress_idle("Cancelled")
            self._current_job = None
            self._explain()
        elif isinstance(event, Finished):
            self._set_progress_idle(f"Done: {event.images} picture{'s' if event.images != 1 else ''}", full=True)
            self._current_job = None

    def _on_failed(self, event: Failed) -> None:
        if event.job_id is not None:
            if event.job_id == self._current_job:
                self._current_job = None
            self._set_progress_idle("Failed")
        self.banner.error(event.message, event.details)

    def _set_progress_idle(self, text: str, full: bool = False) -> None:
        if self.bridge.busy:
            return  # the next job's Started resets the bar
        self.setWindowTitle("Darkroom")
        if full:
            self.progress_bar.setValue(self.progress_bar.maximum())
        else:
            self.progress_bar.setRange(0, 1)
            self.progress_bar.setValue(0)
        self.progress_bar.setFormat(text)

    # -- showing results --------------------------------------------------------------------------------------
    def _show(self, result: Result, frame: Frame) -> None:
        self._showing = result
        self.canvas.show_image(result.image, frame)
        r = result.ready.request
        extra = f" · {result.ready.seconds:.1f} s" if result.ready.seconds else ""
        self.canvas.set_caption(f"Seed {r.seed} · {r.steps} steps · {r.scheduler}{extra}")
        self._explain()

    def show_result(self, result: Result) -> None:
        """Show an earlier result; while a job runs, the live view waits behind "Back to live view"."""
        self._follow_live = False
        self._show(result, Frame("result", result.ready.job_id, result.ready.request.steps,
                                 result.ready.request.steps, result.ready.image_index))
        self.live_button.setVisible(self.bridge.busy)

    def follow_live(self) -> None:
        self._follow_live = True
        self.live_button.hide()

    def current_result(self) -> Result | None:
        """The finished image on the canvas, or None when it shows a preview or nothing."""
        return self._showing

    # -- saving -----------------------------------------------------------------------------------------------
    def _on_saved(self, ready: ImageReady, saved: Any) -> None:
        image_saved = getattr(self.gallery_view, "image_saved", None)
        if callable(image_saved):
            image_saved(saved)
        warnings = getattr(saved, "warnings", ())
        if warnings:
            self.banner.warning(" ".join(warnings))
        result = self.strip.result((ready.job_id, ready.image_index))
        if result is None:
            return
        path = getattr(saved, "path", saved)
        result.saved_path = str(path) if path is not None else None
        result.save_error = None
        self.strip.refresh(result)
        if result is self._showing:
            self._explain()
        if result.saved_path:
            self.statusBar().showMessage(f"Saved {Path(result.saved_path).name}", 4000)

    def _on_save_failed(self, ready: ImageReady, message: str, details: str) -> None:
        result = self.strip.result((ready.job_id, ready.image_index))
        if result is not None:
            result.save_error = message
            self.strip.refresh(result)
            if result is self._showing:
                self._explain()
        self.banner.error(
            f"The picture could not be saved to the gallery: {message} It is still here; use Save as… to keep it.",
            details,
            action_text="Save as…",
            action=(lambda r=result: self.save_result_as(r)) if result is not None else None,
        )

    def save_current_as(self) -> None:
        result = self.current_result()
        if result is None:
            self.statusBar().showMessage("No finished picture on the canvas to save.", 4000)
            return
        self.save_result_as(result)

    def save_result_as(self, result: Result, path: str | None = None) -> bool:
        if path is None:
            r = result.ready.request
            suggestion = str(Path(self._dialog_dir()) / f"darkroom-{r.seed}.png")
            path, _ = QFileDialog.getSaveFileName(self, "Save picture as", suggestion, "PNG image (*.png)")
            if not path:
                return False
        if not path.lower().endswith(".png"):
            path += ".png"
        self.settings.last_dir = str(Path(path).parent)
        try:
            _write_png(result, Path(path), self.bridge.gallery)
        except Exception as exc:  # noqa: BLE001 - shown to the person, the image stays on screen
            message = getattr(exc, "message", None) or getattr(exc, "strerror", None) or str(exc)
            self.banner.error(f"The picture could not be saved to {path}: {message}",
                              getattr(exc, "details", "") or str(exc), action_text="Try again…",
                              action=lambda: self.save_result_as(result))
            return False
        self.statusBar().showMessage(f"Saved {path}", 5000)
        if self.banner.message() and self.banner.message().action_text == "Save as…":
            self.banner.dismiss()
        return True

    def _canvas_menu(self, pos: QPoint) -> None:
        result = self.current_result()
        if self.canvas.image() is None:
            return
        menu = QMenu(self)
        menu.addAction(self.save_as_action)
        menu.addAction(self.copy_action)
        if result is not None:
            menu.addSeparator()
            menu.addAction("Use these parameters", lambda: self.use_parameters(result.ready.request))
            menu.addAction(f"Use seed {result.ready.request.seed}", lambda: self.use_seed(result.ready.request.seed))
        self.save_as_action.setEnabled(result is not None)
        menu.exec(self.canvas.mapToGlobal(pos))
        self.save_as_action.setEnabled(True)

    def copy_current(self) -> None:
        image = self.canvas.image()
        if image is not None:
            QGuiApplication.clipboard().setImage(image)
            self.statusBar().showMessage("Copied the picture.", 3000)

    def open_gallery_folder(self) -> None:
        folder = paths.default_gallery_dir()
        gallery = self.bridge.gallery
        folder = Path(getattr(gallery, "folder", None) or getattr(gallery, "root", None) or folder)
        folder.mkdir(parents=True, exist_ok=True)
        QDesktopServices.openUrl(QUrl.fromLocalFile(str(folder)))

    def choose_gallery_folder_dialog(self) -> None:
        gallery = self.bridge.gallery
        current = str(getattr(gallery, "root", "") or paths.default_gallery_dir())
        folder = QFileDialog.getExistingDirectory(self, "Choose the gallery folder", current)
        if folder:
            self.set_gallery_folder(folder)

    def set_gallery_folder(self, folder: str | Path) -> bool:
        """Save into, and show, the gallery in ``folder`` from now on (remembered across launches)."""
        folder = Path(folder).expanduser()
        gallery, error = _open_gallery(str(folder))
        if gallery is None:
            self.banner.error(f"The gallery in {folder} could not be opened.", error)
            return False
        old = self.bridge.gallery
        if old is not None:
            gallery.autosave = getattr(old, "autosave", True)
            self._retired_galleries.append(old)  # closed on quit: a save into it may still be running
        self.bridge.set_gallery(gallery)
        old_view = self.gallery_view
        index = self.tabs.indexOf(old_view)
        self.gallery_view = self._make_gallery_view()
        self.tabs.removeTab(index)
        self.tabs.insertTab(index, self.gallery_view, "Gallery")
        shutdown = getattr(old_view, "shutdown", None)
        if callable(shutdown):
            shutdown()
        old_view.deleteLater()
        self.settings.gallery_dir = str(folder)
        self.save_settings()
        self.statusBar().showMessage(f"Pictures are now saved in {folder}.", 5000)
        return True

    # -- parameters from elsewhere ----------------------------------------------------------------------------
    def use_parameters(self, request: GenerationRequest) -> None:
        self.form.set_values(request)
        self.tabs.setCurrentIndex(0)
        self.statusBar().showMessage("Parameters filled in from the picture.", 4000)

    def use_seed(self, seed: int) -> None:
        self.form.set_seed(seed)
        self.tabs.setCurrentIndex(0)

    def open_parameters_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Open parameters from a picture", self._dialog_dir(), "PNG images (*.png);;All files (*)"
        )
        if path:
            self.settings.last_dir = str(Path(path).parent)
            self.open_parameters(path)

    def open_parameters(self, path: str | Path) -> bool:
        """Fill the form from the parameters stored in a PNG (Darkroom's own, A1111, Fooocus, InvokeAI, ComfyUI).

        Only the values the picture records change; a picture without a seed sets the seed to "random".
        """
        try:
            from .open_parameters import open_parameters
        except ImportError:
            self.banner.error("Reading parameters from pictures is not available in this build.")
            return False
        opened = open_parameters(Path(path))
        if not opened.ok:
            self.banner.error(opened.message)
            return False
        values = {k: v for k, v in opened.fields.items() if k != "batch_count"}
        if "seed" not in values:
            values["seed"] = "random"
        self.form.set_values(values)
        self.tabs.setCurrentIndex(0)
        self.banner.show_message("warning" if opened.warnings else "info", opened.message)
        return True

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802
        if self._dropped_image(event.mimeData()) is not None:
            event.acceptProposedAction()
        else:
            event.ignore()

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802
        path = self._dropped_image(event.mimeData())
        if path is not None:
            event.acceptProposedAction()
            self.open_parameters(path)

    @staticmethod
    def _dropped_image(mime) -> Path | None:
        try:
            from .open_parameters import image_paths_from_mime
        except ImportError:
            return None
        files = [p for p in image_paths_from_mime(mime) if p.suffix.lower() == ".png"]
        return files[0] if files else None

    # -- view -------------------------------------------------------------------------------------------------
    def set_preview_mode(self, mode: str) -> None:
        self.settings.preview_mode = mode
        self.preview_actions[mode].setChecked(True)
        self._explain()
        self.bridge.set_preview_mode(mode)

    def _explain(self, frame: Frame | None = None) -> None:
        """Say in words what the canvas shows: the live view (x0 or x_t) or a finished picture."""
        frame = frame or self.canvas.frame()
        mode = self.settings.preview_mode
        if frame is None or frame.kind == "preview":
            text, tip = PREVIEW_EXPLAIN[mode], (PREVIEW_NOTE if mode != "off" else "")
            if frame is not None and frame.job_id != self._current_job and frame.step < frame.total:
                text = (f"Stopped at step {frame.step} of {frame.total}: this is the model's last guess; the picture was "
                        "not finished or saved.")
        else:
            result = self._showing
            text = "The finished picture, decoded by the model's full decoder (VAE)."
            if result is not None and result.saved_path:
                text += f" Saved as {Path(result.saved_path).name}."
            elif result is not None and result.save_error:
                text += " Not saved to the gallery (see the message above); use Save as… to keep it."
            tip = result.describe() if result is not None else ""
        if self.preview_explain.text() != text:
            self.preview_explain.setText(text)
        self.preview_explain.setToolTip(tip)

    def show_shortcuts(self) -> None:
        rows = [
            ("Generate (adds to the queue while busy)", self.generate_action),
            ("Cancel the running picture", self.cancel_action),
            ("Cancel everything queued", self.cancel_all_action),
            ("Random seed", self.random_seed_action),
            ("Reuse the last seed", self.reuse_seed_action),
            ("Save the picture as…", self.save_as_action),
            ("Copy the picture", self.copy_action),
            ("Open parameters from a PNG", self.open_params_action),
            ("Create tab / Gallery tab", None),
            ("Quit", self.quit_action),
        ]
        native = QKeySequence.SequenceFormat.NativeText
        html = ["<table cellspacing='6'>"]
        for text, act in rows:
            keys = (" or ".join(k.toString(native) for k in act.shortcuts()) if act is not None
                    else f"{self.create_tab_action.shortcut().toString(native)} / "
                         f"{self.gallery_tab_action.shortcut().toString(native)}")
            html.append(f"<tr><td><b>{keys}</b></td><td>{text}</td></tr>")
        html.append("</table><p>Drop a PNG on the window to reuse its parameters.</p>")
        QMessageBox.information(self, "Keyboard shortcuts", "".join(html))

    def show_about(self) -> None:
        QMessageBox.about(
            self,
            "About Darkroom",
            f"<h3>Darkroom {__version__}</h3><p>Watch pictures develop out of noise.</p>"
            "<p>The live view shows, at every step, what the model currently believes the finished picture "
            "looks like (x0), or the noisy latent it is working on (x_t).</p>",
        )

    # -- closing ----------------------------------------------------------------------------------------------
    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802
        if not self._closing:
            self._closing = True
            started = time.monotonic()
            self.save_settings()
            view_shutdown = getattr(self.gallery_view, "shutdown", None)
            if callable(view_shutdown):
                view_shutdown()
            # While the engine is still warming up its thread is inside `import torch`, which cannot be
            # interrupted and has nothing to cancel; don't make the person wait for it (the launcher then leaves
            # without joining it).
            warm = self.bridge.last_status is not None and bool(self.bridge.last_status.device)
            self.shutdown_clean = self.bridge.shutdown(timeout=2.0 if warm or not self.bridge.engine.running else 0.25)
            self.close_seconds = time.monotonic() - started
            log.info("closed in %.2f s (engine stopped cleanly: %s)", self.close_seconds, self.shutdown_clean)
            for gallery in [*self._retired_galleries, self.bridge.gallery]:
                close = getattr(gallery, "close", None)
                if callable(close):
                    try:
                        close()
                    except Exception:  # noqa: BLE001
                        log.exception("closing the gallery failed")
        event.accept()
        super().closeEvent(event)


def _placeholder(text: str) -> QWidget:
    w = QFrame()
    label = QLabel(text)
    label.setWordWrap(True)
    label.setAlignment(Qt.AlignmentFlag.AlignCenter)
    label.setObjectName("PreviewExplain")
    layout = QVBoxLayout(w)
    layout.addStretch(1)
    layout.addWidget(label)
    layout.addStretch(1)
    return w


def _open_gallery(root: str | None = None) -> tuple[Any, str]:
    """The gallery in ``root`` (None: the default folder), or (None, why not)."""
    try:
        from engine.gallery import Gallery
    except ImportError:
        return None, ""
    try:
        return Gallery(root), ""
    except Exception as exc:  # noqa: BLE001 - the window opens without a gallery and says so
        log.exception("could not open the gallery")
        return None, f"{type(exc).__name__}: {exc}"


def _write_png(result: Result, path: Path, gallery: Any = None) -> None:
    """Save a result as PNG with its parameters, through the gallery (which indexes it when it lands inside the
    gallery folder) or its encoder; a plain PNG only when neither exists."""
    save_as = getattr(gallery, "save_as", None)
    if callable(save_as):
        save_as(result.ready, path)
        return
    try:
        from engine.gallery import Gallery
    except ImportError:
        if not result.image.save(str(path), "PNG"):
            raise OSError(f"Qt could not write {path}") from None
        return
    from engine.gallery.store import write_file_replacing

    write_file_replacing(path, Gallery.encode(result.ready))
