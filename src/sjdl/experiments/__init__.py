"""Orchestration of whole experiments (demo, calibration, study) from library pieces."""
