"""A workflow's diagram as inline SVG, laid out here in Python (no Graphviz binary to install).

States are boxes in layers from the initial state (breadth first along the transitions), top to
bottom, in definition order within a layer; events are arrows labelled with the event's label,
a branch draws one arrow per destination, and an event that records data without moving the case
is listed inside its state's box. Events allowed from every state (``from: "*"``, a reorganisation
or withdrawal) are drawn once, as dashed arrows into their end state from a note "from any step".

The current state has a thick border and the words "current step"; states the case passed through
are shaded, so colour is never the only signal. Every text is escaped. The SVG has its own width:
the page puts it in a scroll container, so a phone scrolls the diagram, not the page.

The "workflow authoring" work will replace this with a BPMN viewer; until then this is the one
drawing of a definition (docs/architecture.md).
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Collection
from dataclasses import dataclass, field

from markupsafe import Markup, escape

from ..engine.definitions import Definition

BOX_WIDTH = 200
LINE_HEIGHT = 16
PADDING = 10
LAYER_GAP = 64
COLUMN_GAP = 48
MARGIN = 24
WRAP = 26  # characters per line inside a box

_FILL, _PASSED_FILL, _CURRENT_FILL = "#ffffff", "#dbe7f3", "#fff4c2"
_STROKE, _CURRENT_STROKE, _EDGE = "#505a5f", "#0b0c0c", "#505a5f"


@dataclass
class _Box:
    state: str
    lines: list[str]
    notes: list[str]  # internal events, each "↻ label"
    layer: int = 0
    x: float = 0.0
    y: float = 0.0
    height: float = 0.0

    @property
    def cx(self) -> float:
        return self.x + BOX_WIDTH / 2

    @property
    def cy(self) -> float:
        return self.y + self.height / 2


@dataclass
class _Edge:
    source: str
    dest: str
    label: str
    anywhere: bool = False  # from every state: drawn from the note, dashed
    lane: float | None = None  # x of the vertical lane a back or skipping arrow runs in, right of the boxes
    show_label: bool = True  # a branching event is labelled once, on its first arrow


@dataclass
class _Layout:
    boxes: dict[str, _Box] = field(default_factory=dict)
    edges: list[_Edge] = field(default_factory=list)
    width: float = 0.0
    height: float = 0.0


def _wrap(text: str, width: int = WRAP) -> list[str]:
    return textwrap.wrap(text, width=width, break_long_words=True) or [""]


def _layers(definition: Definition) -> dict[str, int]:
    """Breadth-first depth of each state from the initial one along ordinary transitions."""
    spec = definition.spec
    everywhere = {name for name, e in spec.events.items() if e.from_ == "*"}
    depth = {spec.initial: 0}
    queue = [spec.initial]
    while queue:
        state = queue.pop(0)
        for t in definition.transitions:
            if t.source == state and t.dest and t.dest not in depth and t.event not in everywhere:
                depth[t.dest] = depth[state] + 1
                queue.append(t.dest)
    last = max(depth.values(), default=0)
    for state in spec.states:  # reached only from every state, or unreachable: one layer below the rest
        depth.setdefault(state, last + 1)
    return depth


def layout(definition: Definition, language: str) -> _Layout:
    """Place every state and arrow of ``definition`` (pure: no drawing)."""
    spec = definition.spec
    everywhere = {name for name, e in spec.events.items() if e.from_ == "*"}
    out = _Layout()
    for name, state in spec.states.items():
        out.boxes[name] = _Box(name, _wrap(state.label.get(language)), [])
    seen: set[tuple[str, str, str]] = set()
    for t in definition.transitions:
        label = spec.events[t.event].label.get(language)
        if t.event in everywhere:
            if t.dest and ("*", t.dest, t.event) not in seen:
                seen.add(("*", t.dest, t.event))
                out.edges.append(_Edge("*", t.dest, label, anywhere=True))
        elif t.dest is None or t.dest == t.source:
            note = f"↻ {label}"
            if note not in out.boxes[t.source].notes:
                out.boxes[t.source].notes.append(note)
        elif (t.source, t.dest, t.event) not in seen:
            first = not any(key[0] == t.source and key[2] == t.event for key in seen)
            seen.add((t.source, t.dest, t.event))
            out.edges.append(_Edge(t.source, t.dest, label, show_label=first))
    depth = _layers(definition)
    # Arrows that go back up or skip a layer run in lanes right of every box; their ends sit at the
    # right of their layers so the arrow leaves and enters without crossing another box.
    around = [e for e in out.edges if not e.anywhere and depth[e.dest] != depth[e.source] + 1]
    at_right = {name for e in around for name in (e.source, e.dest)}
    rows: dict[int, list[_Box]] = {}
    for name, box in out.boxes.items():
        box.layer = depth[name]
        note_lines = sum(len(_wrap(n, WRAP + 4)) for n in box.notes)
        box.height = PADDING * 2 + LINE_HEIGHT * (len(box.lines) + note_lines) + (6 if box.notes else 0)
        rows.setdefault(box.layer, []).append(box)
    for row in rows.values():
        row.sort(key=lambda b: b.state in at_right)  # stable: definition order otherwise
    widest = max(len(r) for r in rows.values())
    y = float(MARGIN)
    for layer in sorted(rows):
        row = rows[layer]
        span = len(row) * BOX_WIDTH + (len(row) - 1) * COLUMN_GAP
        x = MARGIN + (widest * BOX_WIDTH + (widest - 1) * COLUMN_GAP - span) / 2
        tallest = max(b.height for b in row)
        for box in row:
            box.x, box.y = x, y + (tallest - box.height) / 2
            x += BOX_WIDTH + COLUMN_GAP
        y += tallest + LAYER_GAP
    right: float = MARGIN + widest * BOX_WIDTH + (widest - 1) * COLUMN_GAP
    for k, edge in enumerate(around):
        low, high = sorted((depth[edge.source], depth[edge.dest]))
        beside = max(b.x + BOX_WIDTH for b in out.boxes.values() if low <= b.layer <= high)
        edge.lane = beside + 28 + 18 * k
        right = max(right, edge.lane + 170)  # room for the lane's label
    out.width = right + MARGIN
    out.height = y - LAYER_GAP + MARGIN + (LINE_HEIGHT * 2 if any(e.anywhere for e in out.edges) else 0)
    return out


def _clip(box: _Box, toward_x: float, toward_y: float) -> tuple[float, float]:
    """The point where the line from the box's centre toward a point leaves the box."""
    dx, dy = toward_x - box.cx, toward_y - box.cy
    if dx == 0 and dy == 0:
        return box.cx, box.cy
    t = min((BOX_WIDTH / 2) / abs(dx) if dx else math.inf, (box.height / 2) / abs(dy) if dy else math.inf)
    return box.cx + dx * t, box.cy + dy * t


def _n(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def render_diagram(
    definition: Definition,
    language: str,
    *,
    current: str | None = None,
    passed: Collection[str] = (),
    title: str,
    current_text: str,
    passed_text: str,
    anywhere_text: str,
    id_prefix: str = "wf",
) -> Markup:
    """Return the SVG of ``definition`` with ``current`` marked and ``passed`` shaded; every text escaped.

    The words ("current step", "passed", "from any step") come from the caller, translated.
    """
    lay = layout(definition, language)
    marker = f"{id_prefix}-arrow"
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="workflow-diagram" role="img" '
        f'width="{_n(lay.width)}" height="{_n(lay.height)}" viewBox="0 0 {_n(lay.width)} {_n(lay.height)}" '
        f'aria-labelledby="{escape(id_prefix)}-title">',
        f'<title id="{escape(id_prefix)}-title">{escape(title)}</title>',
        f'<defs><marker id="{escape(marker)}" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
        f'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="{_EDGE}"/></marker></defs>',
    ]
    note_y = lay.height - MARGIN - LINE_HEIGHT / 2
    note_x = float(MARGIN)
    if any(e.anywhere for e in lay.edges):
        parts.append(
            f'<text x="{_n(note_x)}" y="{_n(note_y)}" font-size="12" fill="{_STROKE}" font-style="italic">'
            f"{escape(anywhere_text)}</text>"
        )
    for edge in lay.edges:
        dest = lay.boxes[edge.dest]
        if edge.anywhere:
            x1, y1 = note_x + 40, note_y - LINE_HEIGHT
            x2, y2 = _clip(dest, x1, y1)
            parts.append(
                f'<path d="M{_n(x1)},{_n(y1)} L{_n(x2)},{_n(y2)}" fill="none" stroke="{_EDGE}" stroke-dasharray="5 4" '
                f'marker-end="url(#{escape(marker)})"><title>{escape(edge.label)}</title></path>'
            )
            continue
        source = lay.boxes[edge.source]
        if dest.layer == source.layer + 1:
            x1, y1 = _clip(source, dest.cx, dest.cy)
            x2, y2 = _clip(dest, source.cx, source.cy)
            path = f"M{_n(x1)},{_n(y1)} L{_n(x2)},{_n(y2)}"
            lx, ly = (x1 + x2) / 2 + 6, (y1 + y2) / 2
        else:  # back or skipping arrow: out of the source's right side, along its lane, into the dest's
            lane = edge.lane if edge.lane is not None else max(source.x, dest.x) + BOX_WIDTH + 28
            x1, y1 = source.x + BOX_WIDTH, source.cy
            x2, y2 = dest.x + BOX_WIDTH, dest.cy
            r = 10.0
            up = -1 if y2 < y1 else 1
            path = (
                f"M{_n(x1)},{_n(y1)} L{_n(lane - r)},{_n(y1)} Q{_n(lane)},{_n(y1)} {_n(lane)},{_n(y1 + up * r)} "
                f"L{_n(lane)},{_n(y2 - up * r)} Q{_n(lane)},{_n(y2)} {_n(lane - r)},{_n(y2)} L{_n(x2)},{_n(y2)}"
            )
            lx, ly = lane + 6, (y1 + y2) / 2
        parts.append(
            f'<path d="{path}" fill="none" stroke="{_EDGE}" stroke-width="1.5" marker-end="url(#{escape(marker)})">'
            f"<title>{escape(edge.label)}</title></path>"
        )
        for i, line in enumerate(_wrap(edge.label, 24) if edge.show_label else []):
            parts.append(
                f'<text x="{_n(lx)}" y="{_n(ly + i * 13)}" font-size="11" fill="{_STROKE}" stroke="#ffffff" '
                f'stroke-width="3" paint-order="stroke">{escape(line)}</text>'
            )
    passed_set = set(passed)
    for box in lay.boxes.values():
        is_current = box.state == current
        fill = _CURRENT_FILL if is_current else _PASSED_FILL if box.state in passed_set else _FILL
        stroke, width = (_CURRENT_STROKE, 4) if is_current else (_STROKE, 1.5)
        status = current_text if is_current else passed_text if box.state in passed_set else ""
        parts.append(f'<g class="state" data-state="{escape(box.state)}">')
        parts.append(
            f'<rect x="{_n(box.x)}" y="{_n(box.y)}" width="{BOX_WIDTH}" height="{_n(box.height)}" rx="6" '
            f'fill="{fill}" stroke="{stroke}" stroke-width="{width}"/>'
        )
        y = box.y + PADDING + LINE_HEIGHT - 4
        for line in box.lines:
            weight = ' font-weight="bold"' if is_current else ""
            parts.append(f'<text x="{_n(box.x + PADDING)}" y="{_n(y)}" font-size="13"{weight}>{escape(line)}</text>')
            y += LINE_HEIGHT
        if box.notes:
            y += 6
        for note in box.notes:
            for line in _wrap(note, WRAP + 4):
                parts.append(f'<text x="{_n(box.x + PADDING)}" y="{_n(y)}" font-size="11" fill="{_STROKE}">{escape(line)}</text>')
                y += LINE_HEIGHT
        if status:
            parts.append(
                f'<text x="{_n(box.x + BOX_WIDTH - PADDING)}" y="{_n(box.y - 4)}" font-size="11" text-anchor="end" '
                f'font-weight="bold">{escape(status)}</text>'
            )
        parts.append("</g>")
    parts.append("</svg>")
    return Markup("".join(parts))


def passed_states(history: Collection[tuple[str | None, str | None]]) -> set[str]:
    """Return the states a case has been in, from its history's (from, to) pairs."""
    out: set[str] = set()
    for source, dest in history:
        out.update(s for s in (source, dest) if s)
    return out


__all__ = ["layout", "passed_states", "render_diagram"]
