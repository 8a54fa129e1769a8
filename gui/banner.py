"""The one place where the window tells people about problems and notices.

A dismissable banner across the top of the window: a message in plain words, a "Details" button that unfolds
the technical details (copyable) when there are any, an optional action button (e.g. "Save as…") and a close
button. A newer message replaces the older one; the banner also keeps a short history for the log.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QApplication,
    QFrame,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QStyle,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

LEVELS = ("error", "warning", "info")


@dataclass(frozen=True)
class Message:
    level: str  # "error" | "warning" | "info"
    text: str
    details: str = ""
    action_text: str = ""


class MessageBanner(QFrame):
    dismissed = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("MessageBanner")
        self.setFrameShape(QFrame.Shape.NoFrame)
        self._message: Message | None = None
        self._action: Callable[[], None] | None = None
        self.history: list[Message] = []

        self._icon = QLabel()
        self._icon.setFixedSize(20, 20)
        self._text = QLabel()
        self._text.setObjectName("BannerText")
        self._text.setWordWrap(True)
        self._text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self._action_button = QPushButton()
        self._action_button.setObjectName("BannerAction")
        self._action_button.clicked.connect(self._run_action)
        self._details_button = QToolButton()
        self._details_button.setText("Details")
        self._details_button.setCheckable(True)
        self._details_button.toggled.connect(self._toggle_details)
        self._close_button = QToolButton()
        self._close_button.setObjectName("BannerClose")
        self._close_button.setText("✕")
        self._close_button.setToolTip("Dismiss")
        self._close_button.setAutoRaise(True)
        self._close_button.clicked.connect(self.dismiss)

        self._details = QPlainTextEdit()
        self._details.setReadOnly(True)
        self._details.setMaximumHeight(160)
        self._details.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        self._copy_button = QPushButton("Copy details")
        self._copy_button.clicked.connect(lambda: QApplication.clipboard().setText(self._details.toPlainText()))
        details_row = QHBoxLayout()
        details_row.addWidget(self._details, 1)
        details_row.addWidget(self._copy_button, 0, Qt.AlignmentFlag.AlignTop)
        self._details_box = QWidget()
        self._details_box.setLayout(details_row)
        details_row.setContentsMargins(28, 0, 0, 0)
        self._details_box.hide()

        top = QHBoxLayout()
        top.setContentsMargins(0, 0, 0, 0)
        top.addWidget(self._icon, 0, Qt.AlignmentFlag.AlignTop)
        top.addWidget(self._text, 1)
        top.addWidget(self._action_button, 0, Qt.AlignmentFlag.AlignTop)
        top.addWidget(self._details_button, 0, Qt.AlignmentFlag.AlignTop)
        top.addWidget(self._close_button, 0, Qt.AlignmentFlag.AlignTop)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(12, 8, 8, 8)
        outer.setSpacing(6)
        outer.addLayout(top)
        outer.addWidget(self._details_box)
        self.hide()

    # -- API --------------------------------------------------------------------------------------------------
    def show_message(
        self,
        level: str,
        text: str,
        details: str = "",
        action_text: str = "",
        action: Callable[[], None] | None = None,
    ) -> None:
        if level not in LEVELS:
            raise ValueError(f"unknown level {level!r}")
        msg = Message(level, text, details.strip(), action_text if action else "")
        self._message = msg
        self._action = action
        self.history.append(msg)
        del self.history[:-50]
        self.setProperty("level", level)
        self.style().unpolish(self)
        self.style().polish(self)
        icon = {
            "error": QStyle.StandardPixmap.SP_MessageBoxCritical,
            "warning": QStyle.StandardPixmap.SP_MessageBoxWarning,
            "info": QStyle.StandardPixmap.SP_MessageBoxInformation,
        }[level]
        self._icon.setPixmap(self.style().standardIcon(icon).pixmap(20, 20))
        self._text.setText(text)
        self._details.setPlainText(msg.details)
        self._details_button.setVisible(bool(msg.details))
        self._details_button.setChecked(False)
        self._details_box.hide()
        self._action_button.setVisible(bool(msg.action_text))
        self._action_button.setText(msg.action_text)
        self.show()

    def post(self, message: Message, action: Callable[[], None] | None = None) -> None:
        self.show_message(message.level, message.text, message.details, message.action_text, action)

    def error(self, text: str, details: str = "", **kw) -> None:
        self.show_message("error", text, details, **kw)

    def warning(self, text: str, details: str = "", **kw) -> None:
        self.show_message("warning", text, details, **kw)

    def info(self, text: str, details: str = "", **kw) -> None:
        self.show_message("info", text, details, **kw)

    def dismiss(self) -> None:
        self._message = None
        self._action = None
        self.hide()
        self.dismissed.emit()

    def message(self) -> Message | None:
        """The message on show, or None when the banner is hidden."""
        return self._message

    def text(self) -> str:
        return self._text.text() if self._message else ""

    def details_visible(self) -> bool:
        return self._details_box.isVisibleTo(self)

    def set_details_visible(self, on: bool) -> None:
        self._details_button.setChecked(on)

    # -- internals --------------------------------------------------------------------------------------------
    def _toggle_details(self, on: bool) -> None:
        self._details_box.setVisible(on)
        self._details_button.setText("Hide details" if on else "Details")

    def _run_action(self) -> None:
        action = self._action
        if action is not None:
            action()
