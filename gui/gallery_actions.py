"""The gallery's commands as QActions, made from one table: text, shortcut, tip and the :class:`GalleryView`
method each runs. The button row under the toolbar, the grid's context menu and when each action is enabled are
derived here too, so a new command is one row plus its method on the view.

Everything here runs on the GUI thread.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import QPoint, Qt
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QHBoxLayout, QMenu, QToolButton

from .edit_model import SEND_TARGETS

if TYPE_CHECKING:
    from .gallery_view import GalleryView

#: The actions with a button in the row under the toolbar, in order.
BUTTONS = ("action_use_all", "action_use_seed", "action_favourite", "action_copy_image", "action_copy_parameters",
           "action_reveal", "action_export", "action_delete")
#: The grid's context menu, in order; None is a separator.
MENU = ("action_open", None, "action_use_all", "action_use_seed", None, "action_send_img2img", "action_send_inpaint",
        "action_send_outpaint", "action_send_hires", "action_forward", None, "action_favourite", "action_copy_image",
        "action_copy_parameters", "action_reveal", "action_export", None, "action_delete")
#: Enabled when there is a current image.
NEED_CURRENT = ("action_use_all", "action_use_seed", "action_reveal", "action_copy_image", "action_copy_parameters",
                "action_open", "action_send_img2img", "action_send_inpaint", "action_send_outpaint", "action_send_hires",
                "action_forward")
#: Enabled when images are selected (or there is a current one).
NEED_SELECTION = ("action_favourite", "action_delete", "action_export")


def _table(view: GalleryView) -> tuple:
    K = QKeySequence
    return (  # attribute, text, slot, shortcuts, tip
        ("action_open", "Open large", view._open_current, [], ""),
        ("action_use_all", "Use all parameters", view.use_all_parameters, [K("U")],
         "Fill the generation form with this image's parameters (U)"),
        ("action_use_seed", "Use seed", view.use_seed_of_current, [K("S")],
         "Put this image's seed into the generation form (S)"),
        *((f"action_send_{target}", text, lambda t=target: view.send_current(t), [],
           f"{text}: edit this image in the Create tab") for target, text in SEND_TARGETS.items()),
        ("action_forward", "Forward process…", view.forward_current, [],
         "Watch this image dissolve into noise under the current model's schedule"),
        ("action_favourite", "Favourite", view.toggle_favourite, [K("F")], "Mark or unmark as favourite (F)"),
        ("action_delete", "Move to trash", view.delete_selected, [K(K.StandardKey.Delete)],
         "Move the selected images to the trash (Delete)"),
        ("action_reveal", "Show in folder", view.reveal_current, [K("Ctrl+R")],
         "Show the file in the file manager (Ctrl+R)"),
        ("action_copy_image", "Copy image", view.copy_image, [K(K.StandardKey.Copy)],
         "Copy the image to the clipboard (Ctrl+C)"),
        ("action_copy_parameters", "Copy parameters", view.copy_parameters, [K("Ctrl+Shift+C")],
         "Copy the parameters as text (Ctrl+Shift+C)"),
        ("action_export", "Export selection…", view.export_selection, [K("Ctrl+E")],
         "Copy the selected images into a folder (Ctrl+E)"),
        ("action_search", "Search", view._focus_search, [K(K.StandardKey.Find)], ""),
        ("action_rescan", "Rescan folder", view.rescan, [K(K.StandardKey.Refresh)],
         "Look for images added or deleted outside Darkroom (F5)"),
    )


def make_actions(view: GalleryView) -> QHBoxLayout:
    """Add every action to ``view`` (as ``view.action_…``, shortcuts active while the view has focus) and return
    the row of buttons for the most used ones."""
    for attribute, text, slot, shortcuts, tip in _table(view):
        action = QAction(text, view)
        action.setShortcuts(shortcuts)
        action.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        action.setToolTip(tip)
        action.triggered.connect(lambda _checked=False, slot=slot: slot())
        view.addAction(action)
        setattr(view, attribute, action)
    bar = QHBoxLayout()
    for attribute in BUTTONS:
        button = QToolButton(view)
        button.setDefaultAction(getattr(view, attribute))
        button.setFocusPolicy(Qt.FocusPolicy.TabFocus)  # reachable with Tab; a click leaves focus on the grid
        bar.addWidget(button)
    bar.addStretch(1)
    return bar


def update_actions(view: GalleryView, has_current: bool, has_selection: bool) -> None:
    for attribute in NEED_CURRENT:
        getattr(view, attribute).setEnabled(has_current)
    for attribute in NEED_SELECTION:
        getattr(view, attribute).setEnabled(has_selection or has_current)


def show_context_menu(view: GalleryView, pos: QPoint) -> None:
    """The grid's context menu at ``pos`` (grid viewport coordinates), for the image there; the menu key (no image
    under ``pos``) shows it at the current image."""
    grid = view.grid
    index = grid.indexAt(pos)
    if not index.isValid():
        index = grid.currentIndex()
        if not index.isValid():
            return
        pos = grid.visualRect(index).center()
    menu = QMenu(view)
    for attribute in MENU:
        if attribute is None:
            menu.addSeparator()
        else:
            menu.addAction(getattr(view, attribute))
    menu.exec(grid.viewport().mapToGlobal(pos))
