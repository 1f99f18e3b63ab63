"""Uplift: randomization checks, multi-arm learners, evaluation, model artefacts, scoring."""
