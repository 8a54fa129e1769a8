"""The window's actions (menu entries and keyboard shortcuts), its menu bar, and the Help dialogs.

:func:`make_actions` builds every :class:`QAction` with its text, keys and tip and connects it to a slot the
window gives; :func:`fill_menu_bar` places them. Actions of the Create tab (Esc cancels, Ctrl+R random seed…)
hold their keys only while that tab is shown, so they never clash with the Gallery tab's own keys. GUI thread only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from PySide6.QtGui import QAction, QActionGroup, QKeySequence
from PySide6.QtWidgets import QMenu, QMenuBar, QMessageBox, QWidget

from . import help_menu
from .live_panel import PREVIEW_LABELS, PREVIEW_MODES, PREVIEW_TIPS

Slot = Callable[[], object]


@dataclass
class WindowActions:
    generate: QAction
    cancel: QAction
    cancel_all: QAction
    random_seed: QAction
    reuse_seed: QAction
    open_parameters: QAction
    add_model_folder: QAction
    add_model_file: QAction
    save_as: QAction
    copy: QAction
    show_gallery_folder: QAction
    choose_gallery_folder: QAction
    quit: QAction
    create_tab: QAction
    gallery_tab: QAction
    about: QAction
    shortcuts: QAction
    fast_path: QAction
    open_log: QAction
    preview: dict[str, QAction] = field(default_factory=dict)
    create_tab_keys: dict[QAction, list[QKeySequence]] = field(default_factory=dict)

    def set_create_tab_shown(self, shown: bool) -> None:
        """Give the Create tab's actions their keys while that tab is shown, and take them away otherwise."""
        for action, keys in self.create_tab_keys.items():
            action.setShortcuts(keys if shown else [])


@dataclass(frozen=True)
class ActionSlots:
    """What each action does (the window's methods)."""

    generate: Slot
    cancel: Slot
    cancel_all: Slot
    random_seed: Slot
    reuse_seed: Slot
    open_parameters: Slot
    add_model_folder: Slot
    add_model_file: Slot
    save_as: Slot
    copy: Slot
    show_gallery_folder: Slot
    choose_gallery_folder: Slot
    quit: Slot
    create_tab: Slot
    gallery_tab: Slot
    about: Slot
    shortcuts: Slot
    fast_path: Callable[[bool], object]
    preview_mode: Callable[[str], object]


def make_actions(owner: QWidget, slots: ActionSlots, *, fast_path_on: bool) -> WindowActions:
    create_tab_keys: dict[QAction, list[QKeySequence]] = {}

    def action(text: str, slot: Slot, keys=(), tip: str = "", create_tab: bool = False) -> QAction:
        a = QAction(text, owner)
        if keys:
            a.setShortcuts([QKeySequence(k) for k in keys])
        if tip:
            a.setToolTip(tip)
            a.setStatusTip(tip)
        a.triggered.connect(lambda _checked=False: slot())
        if create_tab:
            create_tab_keys[a] = a.shortcuts()
        owner.addAction(a)
        return a

    s = slots
    actions = WindowActions(
        generate=action("&Generate", s.generate, ("Ctrl+Return", "Ctrl+Enter"), "Generate with these settings"),
        cancel=action("&Cancel", s.cancel, ("Esc",), "Cancel the running picture", True),
        cancel_all=action("Cancel &all", s.cancel_all, ("Shift+Esc",), "Cancel every queued job", True),
        random_seed=action("&Random seed", s.random_seed, ("Ctrl+R",), create_tab=True),
        reuse_seed=action("Reuse &last seed", s.reuse_seed, ("Ctrl+Shift+R",), create_tab=True),
        open_parameters=action("&Open parameters…", s.open_parameters, (QKeySequence.StandardKey.Open,),
                               "Fill the form from a PNG made by Darkroom or another tool"),
        add_model_folder=action("Add model &folder…", s.add_model_folder),
        add_model_file=action("Add model fi&le (.safetensors)…", s.add_model_file),
        save_as=action("&Save image as…", s.save_as, (QKeySequence.StandardKey.Save,), create_tab=True),
        copy=action("&Copy image", s.copy, ("Ctrl+Shift+C",), create_tab=True),
        show_gallery_folder=action("Show gallery &folder", s.show_gallery_folder),
        choose_gallery_folder=action("C&hoose gallery folder…", s.choose_gallery_folder),
        quit=action("&Quit", s.quit, ("Ctrl+Q",)),
        create_tab=action("&Create", s.create_tab, ("Ctrl+1",)),
        gallery_tab=action("&Gallery", s.gallery_tab, ("Ctrl+2",)),
        about=action("&About Darkroom", s.about),
        shortcuts=action("&Keyboard shortcuts", s.shortcuts, ("F1",)),
        fast_path=QAction("GPU &fast path (compiled, from the next launch)", owner),
        open_log=action("Open &log file", lambda: help_menu.open_log_file(owner),
                        tip="Open the file where Darkroom writes what it did, for a bug report"),
        create_tab_keys=create_tab_keys,
    )
    actions.fast_path.setCheckable(True)
    actions.fast_path.setChecked(fast_path_on)
    actions.fast_path.setStatusTip(
        "On a CUDA GPU, compile the U-Net in the background and replay it as a CUDA graph. Takes effect the next "
        "time Darkroom starts; turn it off if generation on your GPU misbehaves."
    )
    actions.fast_path.triggered.connect(s.fast_path)
    group = QActionGroup(owner)
    group.setExclusive(True)
    for mode in PREVIEW_MODES:
        a = QAction(PREVIEW_LABELS[mode], group)
        a.setCheckable(True)
        a.setToolTip(PREVIEW_TIPS[mode])
        a.setStatusTip(PREVIEW_TIPS[mode])
        a.triggered.connect(lambda _checked=False, m=mode: s.preview_mode(m))
        actions.preview[mode] = a
    return actions


def fill_menu_bar(bar: QMenuBar, a: WindowActions, memory_menu: QMenu) -> None:
    def menu(title: str, *entries: QAction | QMenu | None) -> QMenu:
        m = bar.addMenu(title)
        for entry in entries:
            if entry is None:
                m.addSeparator()
            elif isinstance(entry, QMenu):
                m.addMenu(entry)
            else:
                m.addAction(entry)
        return m

    live = QMenu("Live view", bar)
    live.setToolTipsVisible(True)
    for action in a.preview.values():
        live.addAction(action)
    menu("&File", a.open_parameters, None, a.add_model_folder, a.add_model_file, None, a.save_as, a.copy,
         a.show_gallery_folder, a.choose_gallery_folder, None, a.quit)
    menu("&Generate", a.generate, a.cancel, a.cancel_all, None, a.random_seed, a.reuse_seed)
    menu("&View", live, None, a.create_tab, a.gallery_tab, None, memory_menu, a.fast_path)
    menu("&Help", a.shortcuts, a.open_log, None, a.about)


def show_shortcuts(parent: QWidget, a: WindowActions) -> None:
    rows = [
        ("Generate (adds to the queue while busy)", a.generate),
        ("Cancel the running picture", a.cancel),
        ("Cancel everything queued", a.cancel_all),
        ("Random seed", a.random_seed),
        ("Reuse the last seed", a.reuse_seed),
        ("Save the picture as…", a.save_as),
        ("Copy the picture", a.copy),
        ("Open parameters from a PNG", a.open_parameters),
        ("Create tab / Gallery tab", None),
        ("Quit", a.quit),
    ]
    native = QKeySequence.SequenceFormat.NativeText
    html = ["<table cellspacing='6'>"]
    for text, action in rows:
        if action is None:
            keys = f"{a.create_tab.shortcut().toString(native)} / {a.gallery_tab.shortcut().toString(native)}"
        else:  # the Create tab's own keys, also while another tab has taken them away
            keys = " or ".join(k.toString(native) for k in a.create_tab_keys.get(action, action.shortcuts()))
        html.append(f"<tr><td><b>{keys}</b></td><td>{text}</td></tr>")
    html.append("</table><p>Drop a PNG on the window to reuse its parameters.</p>")
    QMessageBox.information(parent, "Keyboard shortcuts", "".join(html))


def show_about(parent: QWidget) -> None:
    """About Darkroom: the versions of Darkroom, torch, diffusers and Python, and the device in use."""
    help_menu.show_about(parent)
