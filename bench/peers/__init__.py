"""The peers qmsflow is measured against: SpiffWorkflow, the naive per-case Machine, and the raw floor.

Every peer writes the same rows as qmsflow (the case row with its HMAC chain head, one history row per
transition, the cancelled and the newly planned timers) into the same schema, so the run can check
that they end in the same final states. The pure domain helpers (the working-day calendar, the timer
plan, the history HMAC, field cleaning) are shared; what differs is how each peer runs the state
machine and talks to the database.
"""

from __future__ import annotations
