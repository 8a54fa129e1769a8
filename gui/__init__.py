"""Darkroom's desktop window (PySide6).

Importing this package is cheap: it imports neither Qt nor torch, so ``darkroom generate …`` and the other
headless subcommands start without loading a GUI toolkit. The window lives in :mod:`gui.main_window`; the only
object that talks to the engine is :class:`gui.bridge.Bridge`.
"""
