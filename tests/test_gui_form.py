"""The generation form is made from the field registry and bound to the form model: labels, tooltips, ranges and
choices come from the registry, edits reach the model, the model's values reach the widgets, errors are marked by
field name, and a new registry row appears without code in the form."""

from __future__ import annotations

import pytest
from PySide6.QtWidgets import QDoubleSpinBox, QLabel, QSpinBox

from engine import fields, samplers
from gui.form import GenerationForm
from gui.models_controller import ModelChoice
from gui.viewmodel import FormModel


@pytest.fixture
def form(qtbot):
    model = FormModel()
    widget = GenerationForm(model)
    qtbot.addWidget(widget)
    widget.show()
    return widget, model


def _labels(widget) -> set[str]:
    return {label.text() for label in widget.findChildren(QLabel)}


def test_every_registry_field_has_an_editor_described_by_the_registry(form):
    widget, _ = form
    labels = _labels(widget)
    for field in fields.FIELDS:
        editor = widget.widget(field.name)
        assert editor.toolTip() == field.tooltip and editor.accessibleName() == field.label
        if field.name not in ("width", "height"):  # those two share the "Size" row
            assert field.label in labels, field.name
        if field.kind == "int":
            assert isinstance(editor, QSpinBox)
            assert (editor.minimum(), editor.maximum()) == field.range
        elif field.kind == "float":
            assert isinstance(editor, QDoubleSpinBox)
            assert (editor.minimum(), editor.maximum()) == field.range
        elif field.kind == "sampler":
            assert [editor.itemText(i) for i in range(editor.count())] == list(samplers.SAMPLER_NAMES)
    assert widget.widget("width").singleStep() == fields.FIELD["width"].multiple


def test_edits_reach_the_model_and_model_values_reach_the_widgets(form, qtbot):
    widget, model = form
    qtbot.keyClicks(widget.widget("prompt"), "a lighthouse")
    widget.widget("steps").setValue(33)
    widget.widget("sampler").setCurrentText("Euler a")
    qtbot.keyClicks(widget.widget("seed"), "9")
    assert model.value("prompt") == "a lighthouse" and model.value("steps") == 33
    assert model.value("sampler") == "Euler a" and model.value("seed") == "random9"

    model.set_values({"prompt": "an owl", "cfg": 4.5, "width": 768, "height": 512, "seed": 17})
    assert widget.widget("prompt").toPlainText() == "an owl" and widget.widget("cfg").value() == 4.5
    assert widget.widget("seed").text() == "17"
    assert widget.size_preset.currentText().startswith("768 × 512")
    widget.size_preset.setCurrentIndex(widget.size_preset.findData("512x768"))
    widget.size_preset.activated.emit(widget.size_preset.currentIndex())
    assert (model.value("width"), model.value("height")) == (512, 768)
    model.set_values({"width": 72})
    assert widget.size_preset.currentText() == "Custom"


def test_errors_are_marked_by_field_name_and_cleared_by_an_edit(form):
    widget, model = form
    model.set_values({"seed": "twelve"})
    with pytest.raises(ValueError):
        model.build()
    assert widget.error_fields() == ["seed"]
    assert "twelve" in widget.widget("seed").toolTip()
    widget.widget("seed").setText("12")
    assert widget.error_fields() == []
    assert widget.widget("seed").toolTip() == fields.FIELD["seed"].tooltip


def test_seed_buttons(form):
    widget, model = form
    assert not widget.reuse_seed.isEnabled()
    model.set_last_seed(77)
    assert widget.reuse_seed.isEnabled() and "77" in widget.reuse_seed.toolTip()
    widget.reuse_seed.click()
    assert model.value("seed") == "77"
    widget.random_seed.click()
    assert model.value("seed") == "random"


def test_model_menu_offers_models_a_missing_one_and_add(form, tmp_path):
    widget, model = form
    choices = [ModelChoice("tiny", "tiny", "tip", tmp_path), ModelChoice("big", "big", "tip", tmp_path)]
    widget.set_model_choices(choices)
    model.set_value("model", "big")
    assert widget.models.currentText() == "big"
    model.set_value("model", "/elsewhere/other.safetensors")
    assert widget.models.currentText() == "other.safetensors (not installed)"
    asked, chosen = [], []
    widget.add_model_requested.connect(lambda: asked.append(True))
    widget.model_chosen.connect(chosen.append)
    add = widget.models.findData("\x00add-model")
    widget.models.activated.emit(add)
    assert asked == [True] and model.value("model") == "/elsewhere/other.safetensors"
    widget.models.setCurrentIndex(widget.models.findData("tiny"))
    widget.models.activated.emit(widget.models.currentIndex())
    assert chosen == ["tiny"] and model.value("model") == "tiny"


def test_a_new_registry_field_appears_in_the_form_without_code(qtbot, monkeypatch):
    extra = fields.Field("clip_skip", "CLIP skip", "Text-encoder layers to skip.", "int", 1, (1, 12))
    monkeypatch.setattr(fields, "FIELDS", (*fields.FIELDS, extra))
    monkeypatch.setattr(fields, "FIELD", {**fields.FIELD, "clip_skip": extra})
    model = FormModel()
    widget = GenerationForm(model)
    qtbot.addWidget(widget)
    editor = widget.widget("clip_skip")
    assert isinstance(editor, QSpinBox) and (editor.minimum(), editor.maximum()) == (1, 12)
    assert "CLIP skip" in _labels(widget) and editor.toolTip() == extra.tooltip
    editor.setValue(2)
    assert model.values()["clip_skip"] == 2
    assert model.set_values({"clip_skip": 99}) == ["clip_skip"]


def test_the_wheel_scrolls_the_form_instead_of_changing_a_value_under_the_pointer(qtbot):
    from PySide6.QtCore import QPoint, QPointF, Qt
    from PySide6.QtGui import QWheelEvent
    from PySide6.QtWidgets import QApplication, QLabel as Section

    from gui.form import FormPanel
    from gui.testing import spin

    model = FormModel()
    panel = FormPanel(model)
    qtbot.addWidget(panel)
    panel.add_section(Section("a section below the form"))
    panel.resize(380, 300)
    panel.show()
    qtbot.waitExposed(panel)
    cfg = panel.form.widget("cfg")
    before, scroll = model.value("cfg"), panel._scroll.verticalScrollBar()

    def wheel_on(widget) -> None:
        centre = QPointF(widget.rect().center())
        event = QWheelEvent(centre, QPointF(widget.mapToGlobal(QPoint(0, 0))) + centre, QPoint(0, 0), QPoint(0, -120),
                            Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier, Qt.ScrollPhase.NoScrollPhase,
                            False)
        QApplication.sendEvent(widget, event)

    panel._scroll.ensureWidgetVisible(cfg)
    start = scroll.value()
    wheel_on(cfg)
    assert model.value("cfg") == before and scroll.value() > start  # the form scrolled, the value stayed
    panel.activateWindow()
    cfg.setFocus()
    spin(50)
    assert cfg.hasFocus()
    wheel_on(cfg)
    assert model.value("cfg") != before  # clicked into, the box takes the wheel
