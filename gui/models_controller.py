"""The models the form offers: listing them, adding a folder or file, and the settings each is meant to run with.

:class:`ModelsController` reads the bundled models, the models folder and the paths a person added
(:attr:`Settings.user_models`), checks a new path before it is added (a diffusers folder or a .safetensors file;
pickle checkpoints are refused) and, when a model is chosen, sets the form to its native size and recommended
settings, keeping what the person changed. It talks to people through
:attr:`ModelsController.message` (the banner) and :attr:`ModelsController.status` (the status bar). GUI thread
only; model folders are small to list, so nothing here blocks for long.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QObject, Signal

from engine import fields, models
from engine.library import SOURCE_WORDS
from engine.settings import Settings

from .banner import Message
from .viewmodel import FormModel



@dataclass(frozen=True)
class ModelChoice:
    """One entry of the model menu."""

    value: str  # what a request's ``model`` holds: a name, or a path for models added by path
    label: str
    tooltip: str
    path: Path


class ModelsController(QObject):
    #: the model menu's entries changed (``list[ModelChoice]``)
    choices_changed = Signal(list)
    #: something to tell people in the banner (``Message``)
    message = Signal(object)
    #: a short line for the status bar
    status = Signal(str)

    def __init__(self, settings: Settings, form: FormModel, parent: QObject | None = None):
        super().__init__(parent)
        self._settings = settings
        self._form = form
        self._choices: list[ModelChoice] = []
        self._in_force: dict = {}
        form.value_changed.connect(self._model_named)

    def choices(self) -> list[ModelChoice]:
        return list(self._choices)

    def has_models(self) -> bool:
        return bool(self._choices)

    def _model_named(self, name: str, value) -> None:
        """A recipe names its model by name (its metadata never holds the user's folders): where that is a model
        added by path, the form takes the menu's entry for it, so the recipe runs on the same model."""
        if name != "model" or not value or any(c.value == value for c in self._choices):
            return
        match = next((c.value for c in self._choices if c.label.lower() == str(value).lower()), None)
        if match is not None:
            self._form.set_value("model", match)

    def refresh(self) -> None:
        """List the models again; the form keeps its model when it is still there, else takes the first."""
        try:
            entries = models.available_models(tuple(self._settings.user_models))
        except OSError as exc:
            entries = []
            self.message.emit(Message("warning", "The models folder could not be read.", str(exc)))
        self._choices = [
            ModelChoice(str(e.path) if e.source == "path" else e.name, e.name,
                        f"{e.name} — {SOURCE_WORDS.get(e.source, e.source)}\n{e.path}", e.path)
            for e in entries
        ]
        current = self._form.value("model")
        if self._choices and not current:
            self._form.set_value("model", self._choices[0].value)
        self.choices_changed.emit(self.choices())

    def user_models(self) -> list[str]:
        """The models added by path (the settings' list)."""
        return list(self._settings.user_models)

    def remove(self, name: str) -> str:
        """Take a model added by path or downloaded out of the library (engine.library.remove); DarkroomError for
        one that cannot be removed."""
        from engine import library

        removed = library.remove(name, self._settings.user_models)
        self.refresh()
        self.status.emit(f"Removed {removed} from the library.")
        return removed

    def add_path(self, path: str | Path) -> bool:
        """Add a diffusers folder or .safetensors file to the menu and select it. False (and a banner message)
        when the path is not a model Darkroom can open."""
        p = Path(path).expanduser()
        self._settings.last_dir = str(p.parent)
        problem = _path_problem(p)
        if problem:
            self.message.emit(Message("error", problem, str(p)))
            return False
        value = str(p.resolve())
        if value not in self._settings.user_models:
            self._settings.user_models.append(value)
        self.refresh()
        # A model inside the models folder is listed by name: select whichever entry is this path.
        chosen = next((c.value for c in self._choices if c.path.resolve() == p.resolve()), value)
        self._form.set_value("model", chosen)
        self.apply_model_defaults(chosen)
        self.message.emit(Message("info", f"Added the model “{p.stem if p.is_file() else p.name}”."))
        return True

    def model_defaults(self, model: str | None = None) -> dict:
        """What ``model`` (default: the form's) is meant to run with: its native size, and its recommended sampler,
        steps and CFG (the app's defaults where it recommends none)."""
        model = self._form.value("model") if model is None else model
        width, height = models.native_size(model)
        base = {name: fields.FIELD[name].default for name in models.RECOMMENDABLE}
        return {**base, **models.recommended(model), "width": width, "height": height}

    def settle(self, first_run: bool) -> None:
        """At start-up, once the form holds the person's restored values: on a first run the form takes the
        model's recommended settings; later, the form stays as it is and the model's defaults are only taken as
        the ones in force."""
        if first_run and self.has_models():
            self.apply_model_defaults(force=True)
        else:
            self._in_force = self.model_defaults()

    def apply_model_defaults(self, model: str | None = None, force: bool = False) -> list[str]:
        """Set the form to ``model``'s defaults (:meth:`model_defaults`). A field the person changed away from the
        previous model's defaults keeps their value unless ``force``. Returns the names of the fields set."""
        wanted = self.model_defaults(model)
        previous = self._in_force
        changed = {name: value for name, value in wanted.items()
                   if self._form.value(name) != value
                   and (force or self._form.value(name) == previous.get(name, fields.FIELD[name].default))}
        self._in_force = wanted
        if changed:
            self._form.set_values(changed)
            self.status.emit("Set for this model: " + _describe(changed) + ".")
        return list(changed)


def _describe(values: dict) -> str:
    parts = []
    if "width" in values or "height" in values:
        parts.append(f"{values.get('width', '')} × {values.get('height', '')}".strip(" ×"))
    parts += [str(values["sampler"])] if "sampler" in values else []
    parts += [f"{values['steps']} steps"] if "steps" in values else []
    parts += [f"CFG {values['cfg']:g}"] if "cfg" in values else []
    return ", ".join(parts)


def _path_problem(p: Path) -> str:
    """Why ``p`` cannot be added as a model ("" when it can)."""
    if p.is_dir():
        if not models.is_model_folder(p):
            return (f"The folder “{p.name}” is not a diffusers model: it has no model_index.json. Choose the folder "
                    "that contains model_index.json, or a single .safetensors file.")
        return ""
    if p.is_file():
        suffix = p.suffix.lower()
        if suffix in models.UNSAFE_SUFFIXES:
            return (f"{p.name} is a pickle-based checkpoint, which can run code when opened. Darkroom only opens "
                    ".safetensors files; convert it first.")
        if suffix not in models.CHECKPOINT_SUFFIXES:
            return f"{p.name} is not a model file. Choose a .safetensors file or a model folder."
        return ""
    return f"{p} does not exist."
