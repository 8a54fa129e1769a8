"""Darkroom's look: Fusion with a dark palette (pictures read best on a dark surround), a red accent, the icon."""

from __future__ import annotations

from PySide6.QtCore import QSize
from PySide6.QtGui import QColor, QIcon, QPalette
from PySide6.QtWidgets import QApplication

from engine import paths

ICON_DIR = paths.RESOURCES / "icons"

ACCENT = "#d9534a"  # safelight red
ACCENT_HOVER = "#e4665d"

_COLORS = {
    QPalette.ColorRole.Window: "#1e1f22",
    QPalette.ColorRole.WindowText: "#e3e3e6",
    QPalette.ColorRole.Base: "#26272b",
    QPalette.ColorRole.AlternateBase: "#2c2d31",
    QPalette.ColorRole.ToolTipBase: "#2f3035",
    QPalette.ColorRole.ToolTipText: "#e9e9ec",
    QPalette.ColorRole.PlaceholderText: "#8a8b92",
    QPalette.ColorRole.Text: "#e3e3e6",
    QPalette.ColorRole.Button: "#2d2e33",
    QPalette.ColorRole.ButtonText: "#e3e3e6",
    QPalette.ColorRole.BrightText: "#ffffff",
    QPalette.ColorRole.Light: "#45464c",
    QPalette.ColorRole.Midlight: "#3a3b40",
    QPalette.ColorRole.Mid: "#4a4b52",
    QPalette.ColorRole.Dark: "#141518",
    QPalette.ColorRole.Shadow: "#0b0b0d",
    QPalette.ColorRole.Highlight: "#b8453d",
    QPalette.ColorRole.HighlightedText: "#ffffff",
    QPalette.ColorRole.Link: "#ef8a80",
}

STYLESHEET = f"""
QToolTip {{ color: #e9e9ec; background: #2f3035; border: 1px solid #4a4b52; padding: 4px; }}
QLabel#FieldHeading {{ color: #a9aab2; font-weight: 600; }}
QLabel#PanelHeading {{ color: #a9aab2; font-weight: 600; padding: 2px 0; }}
QLabel#PreviewExplain {{ color: #9d9ea6; }}
QPlainTextEdit, QLineEdit {{
    border: 1px solid #3d3e44; border-radius: 5px; padding: 3px 5px; background: #26272b;
}}
QPlainTextEdit:focus, QLineEdit:focus {{ border: 1px solid {ACCENT}; }}
QPlainTextEdit[invalid="true"], QLineEdit[invalid="true"] {{ border: 1px solid #ff6b5e; background: #3a2326; }}
QPushButton {{ border: 1px solid #3d3e44; border-radius: 5px; padding: 5px 12px; background: #2d2e33; }}
QPushButton:hover {{ background: #36373d; }}
QPushButton:pressed {{ background: #25262a; }}
QPushButton:disabled {{ color: #6b6c73; background: #242528; }}
QPushButton#GenerateButton {{
    background: {ACCENT}; color: white; border: none; font-weight: 600; padding: 9px 14px; font-size: 11pt;
}}
QPushButton#GenerateButton:hover {{ background: {ACCENT_HOVER}; }}
QPushButton#GenerateButton:disabled {{ background: #4a3331; color: #a99; }}
QPushButton#CancelButton {{ padding: 9px 14px; }}
QProgressBar {{
    border: 1px solid #3d3e44; border-radius: 5px; background: #26272b; text-align: center; min-height: 20px;
}}
QProgressBar::chunk {{ background: #a8443c; border-radius: 4px; }}
QListWidget#SessionStrip, QListWidget#QueueList {{ background: #232427; border: 1px solid #333439; border-radius: 6px; }}
QListWidget#SessionStrip::item:selected {{ background: #5a2d2a; border-radius: 4px; }}
QFrame#MessageBanner {{ border-radius: 6px; margin: 6px 8px 0 8px; }}
QFrame#MessageBanner[level="error"] {{ background: #4a2326; border: 1px solid #8b3a3a; }}
QFrame#MessageBanner[level="warning"] {{ background: #463a1f; border: 1px solid #8a6d2a; }}
QFrame#MessageBanner[level="info"] {{ background: #1f3346; border: 1px solid #2f5577; }}
QPushButton#BannerAction {{ padding: 3px 10px; }}
QTabWidget::pane {{ border: none; }}
QTabBar::tab {{ padding: 6px 16px; background: transparent; color: #a9aab2; border: none;
               border-bottom: 2px solid transparent; }}
QTabBar::tab:selected {{ color: #ffffff; border-bottom: 2px solid {ACCENT}; }}
QTabBar::tab:hover {{ color: #e3e3e6; }}
QToolButton#ModeButton {{ border: 1px solid #3d3e44; padding: 3px 10px; background: #26272b; }}
QToolButton#ModeButton:checked {{ background: #5a2d2a; border-color: {ACCENT}; color: white; }}
QStatusBar {{ color: #a9aab2; }}
QStatusBar::item {{ border: none; }}
QSplitter::handle {{ background: #1a1b1e; }}
QScrollArea {{ border: none; }}
"""


def apply(app: QApplication) -> None:
    app.setStyle("Fusion")
    palette = QPalette()
    for role, color in _COLORS.items():
        palette.setColor(role, QColor(color))
    disabled = QColor("#6b6c73")
    for role in (QPalette.ColorRole.Text, QPalette.ColorRole.ButtonText, QPalette.ColorRole.WindowText):
        palette.setColor(QPalette.ColorGroup.Disabled, role, disabled)
    app.setPalette(palette)
    app.setStyleSheet(STYLESHEET)


def app_icon() -> QIcon:
    icon = QIcon()
    for size in (16, 32, 48, 64, 128, 256, 512):
        png = ICON_DIR / f"darkroom-{size}.png"
        if png.is_file():
            icon.addFile(str(png), QSize(size, size))
    if icon.isNull() and (ICON_DIR / "darkroom.svg").is_file():
        icon.addFile(str(ICON_DIR / "darkroom.svg"))
    return icon
