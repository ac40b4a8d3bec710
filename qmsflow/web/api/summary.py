"""The province summary: the dashboard's figures, from the same engine service (qmsflow/engine/province.py)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from ...engine.errors import ValidationFailed
from ...engine.province import Figure, province_summary
from ..context import services
from .core import answer, bp, ctx, operation
from .problems import from_error
from .schemas import FigureOut, SummaryOut, SummaryQuery


def _figures(figures: list[Figure]) -> list[FigureOut]:
    return [FigureOut(**asdict(f)) for f in figures]


@bp.get("/summary")
@operation(query=SummaryQuery, ok={200: SummaryOut}, problems=(422,), tag="summary")
def summary(query: SummaryQuery) -> Any:
    """Where my province (or subtree, or unit) stands as of a day; a day after today is refused (422)."""
    svc, c = services(), ctx()
    try:
        with svc.db.read() as session:
            s = province_summary(session, svc.rt, c.actor, as_of=query.as_of)
    except ValidationFailed as exc:
        raise from_error(exc, c.language) from None  # a well-formed day that is refused: 422, not 400
    out = SummaryOut(
        as_of=s.as_of, units=FigureOut(**asdict(s.units)), by_stage=_figures(s.by_stage),
        ever_announced=FigureOut(**asdict(s.ever_announced)), late=FigureOut(**asdict(s.late)),
        escalation_levels=_figures(s.escalation_levels), open_ca=FigureOut(**asdict(s.open_ca)),
        by_kind={k: _figures(v) for k, v in s.by_kind.items()},
        by_parent={str(k): _figures(v) for k, v in s.by_parent.items()},
        parent_names={str(k): v for k, v in s.parent_names.items()},
        due_within=_figures(s.due_within), announced_by_month=_figures(s.announced_by_month),
    )
    return answer(out)


__all__: list[str] = []
