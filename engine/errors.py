"""Errors the engine reports to people, each with a kind the UI can act on and a message in plain words."""

from __future__ import annotations

from enum import Enum


class ErrorKind(str, Enum):
    VALIDATION = "validation"
    MODEL_NOT_FOUND = "model_not_found"
    MODEL_CORRUPT = "model_corrupt"
    MODEL_UNSUPPORTED = "model_unsupported"
    OFFLINE = "offline"
    OUT_OF_MEMORY = "out_of_memory"
    DISK = "disk"
    CANCELLED = "cancelled"
    INTERNAL = "internal"


class DarkroomError(Exception):
    """An error with a message meant for people. ``details`` holds what a developer would want to see."""

    kind = ErrorKind.INTERNAL

    def __init__(self, message: str, details: str = "", kind: ErrorKind | None = None):
        super().__init__(message)
        self.message = message
        self.details = details
        if kind is not None:
            self.kind = kind


class ModelNotFoundError(DarkroomError):
    kind = ErrorKind.MODEL_NOT_FOUND


class ModelCorruptError(DarkroomError):
    kind = ErrorKind.MODEL_CORRUPT


class ModelUnsupportedError(DarkroomError):
    kind = ErrorKind.MODEL_UNSUPPORTED


class OfflineError(DarkroomError):
    kind = ErrorKind.OFFLINE


class DiskError(DarkroomError):
    kind = ErrorKind.DISK
