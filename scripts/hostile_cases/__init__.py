"""Cases of ``scripts/hostile_probe.py``; importing the modules registers them in order."""

from . import cases_checkpoint, cases_config, cases_data, cases_outputs, cases_runtime  # noqa: F401
from .world import CASES, OUTCOMES, Outcome, SetupError, World

__all__ = ["CASES", "OUTCOMES", "Outcome", "SetupError", "World"]
