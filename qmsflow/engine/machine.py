"""One shared ``transitions`` machine per definition version, and the light model cases fire against.

The machine is built once when the definition is registered (``model=None``: no model is ever added).
To fire an event on a case the engine makes a ``CaseModel`` (state plus the data the conditions read)
and calls the machine's ``Event.trigger`` with it directly, so per-case cost is one small object, never
a ``Machine`` and never ``add_model`` (transitions issues #146, #379, #434).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from transitions import Machine
from transitions.core import EventData

from .conditions import Condition
from .definitions import Definition


@dataclass(slots=True)
class CaseModel:
    """What the machine sees of a case: its state, and the data conditions read."""

    state: str
    data: Mapping[str, Any] = field(default_factory=dict)


def _condition_callback(condition: Condition) -> Callable[[EventData], bool]:
    def holds(event_data: EventData) -> bool:
        model: CaseModel = event_data.model  # type: ignore[assignment]
        return condition.evaluate(model.data)

    holds.__name__ = f"when[{condition.source}]"
    return holds


class CompiledMachine:
    """A definition together with its one shared state machine."""

    def __init__(self, definition: Definition) -> None:
        self.definition = definition
        spec = definition.spec
        self.machine = Machine(
            model=None,
            states=list(spec.states),
            initial=spec.initial,
            auto_transitions=False,
            send_event=True,
            ignore_invalid_triggers=False,
            model_override=False,
        )
        for t in definition.transitions:
            conditions: list[str | Callable[..., bool | None]] = [_condition_callback(t.when)] if t.when else []
            # dest=None is transitions' internal transition: the state stays, no exit/enter.
            self.machine.add_transition(t.event, t.source, t.dest, conditions=conditions)

    def fire(self, state: str, event: str, data: Mapping[str, Any]) -> str | None:
        """Fire ``event`` from ``state`` with ``data``; return the new state, or None if no branch held.

        Raises KeyError for an unknown event and MachineError when it cannot fire from ``state``; the
        engine checks both beforehand and raises its typed errors instead.
        """
        model = CaseModel(state=state, data=data)
        fired = self.machine.events[event].trigger(model)
        return model.state if fired else None


__all__ = ["CaseModel", "CompiledMachine"]
