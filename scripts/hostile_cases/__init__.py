"""Cases of ``scripts/hostile_probe.py``; importing the modules registers them in order."""

from . import (  # noqa: F401
    cases_checkpoint,
    cases_config,
    cases_data,
    cases_edges,
    cases_inputs,
    cases_inputs_config,
    cases_outputs,
    cases_recent,
    cases_runtime,
    cases_runtime2,
    cases_storage,
)
from .world import CASES, OUTCOMES, Outcome, SetupError, World

__all__ = ["CASES", "OUTCOMES", "Outcome", "SetupError", "World"]
