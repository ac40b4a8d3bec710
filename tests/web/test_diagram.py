"""The workflow diagram: every state and event drawn, the current one marked, texts escaped, boxes apart."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from qmsflow.engine import Registry
from qmsflow.engine.definitions import parse_definition
from qmsflow.web.diagram import BOX_WIDTH, layout, passed_states, render_diagram

SVG = "{http://www.w3.org/2000/svg}"
WORDS = {"title": "Sơ đồ quy trình", "current_text": "Bước hiện tại", "passed_text": "Đã qua", "anywhere_text": "Từ mọi bước"}


def _svg(markup: str) -> ET.Element:
    return ET.fromstring(str(markup))


def test_every_state_and_event_of_the_lifecycle_is_drawn_with_the_current_state_marked(registry: Registry) -> None:
    definition = registry.latest("qms_lifecycle")
    passed = passed_states([(None, "planned"), ("planned", "building"), ("building", "applying")])
    root = _svg(render_diagram(definition, "vi", current="applying", passed=passed, **WORDS))
    states = {g.get("data-state"): g for g in root.iter(f"{SVG}g")}
    assert set(states) == set(definition.spec.states)
    text = " ".join(t.text or "" for t in root.iter(f"{SVG}text"))
    for event in definition.spec.events.values():
        # every event's label appears, as an arrow's tooltip or a note inside its state's box
        tooltips = {t.text for t in root.iter(f"{SVG}title")}
        assert event.label.vi in tooltips or event.label.vi in text.replace("↻ ", ""), event.label.vi
    current = states["applying"].find(f"{SVG}rect")
    assert current is not None and current.get("stroke-width") == "4"
    assert "Bước hiện tại" in " ".join(t.text or "" for t in states["applying"].iter(f"{SVG}text"))
    fills = {name: g.find(f"{SVG}rect").get("fill") for name, g in states.items()}  # type: ignore[union-attr]
    assert fills["planned"] == fills["building"] != fills["maintaining"]
    assert "Đã qua" in " ".join(t.text or "" for t in states["planned"].iter(f"{SVG}text"))
    assert "Từ mọi bước" in text  # supersede and withdraw, drawn once


def test_boxes_do_not_overlap_and_stay_inside_the_drawing(registry: Registry) -> None:
    for definition in registry.definitions():
        for language in ("vi", "en"):
            lay = layout(definition, language)
            boxes = list(lay.boxes.values())
            for box in boxes:
                assert 0 <= box.x and box.x + BOX_WIDTH <= lay.width and 0 <= box.y and box.y + box.height <= lay.height
            for i, a in enumerate(boxes):
                for b in boxes[i + 1:]:
                    apart = a.x + BOX_WIDTH <= b.x or b.x + BOX_WIDTH <= a.x or a.y + a.height <= b.y or b.y + b.height <= a.y
                    assert apart, (definition.name, a.state, b.state)
            assert lay.boxes[definition.spec.initial].layer == 0


def test_english_labels_and_a_branching_event_draw_one_arrow_per_destination(registry: Registry) -> None:
    definition = registry.latest("corrective_action")
    lay = layout(definition, "en")
    reviews = [(e.source, e.dest) for e in lay.edges if e.label == "Review the corrective report"]
    assert sorted(reviews) == [("reported", "accepted"), ("reported", "reopened")]
    assert lay.boxes["open"].notes == ["↻ Overdue"]


HOSTILE = Path(__file__).parents[1] / "fixtures" / "minimal_definition.yaml"


def test_every_text_is_escaped() -> None:
    text = HOSTILE.read_text("utf-8").replace('"Soạn thảo"', '"<script>alert(1)</script> & co"')
    text = text.replace('{vi: "Hoàn thành"', '{vi: "</text><script>x</script>"')
    definition = parse_definition(text, "hostile.yaml")
    words = {**WORDS, "title": '"><script>t</script>'}
    markup = str(render_diagram(definition, "vi", current="draft", **words, id_prefix='a"b'))
    assert "<script>" not in markup
    root = _svg(markup)  # still well-formed XML
    texts = [t.text for t in root.iter(f"{SVG}text")]
    assert any(t and t.startswith("<script>alert(1)") for t in texts)
