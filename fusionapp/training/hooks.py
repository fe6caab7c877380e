"""What a search hands each model it trains (fusionapp.search): the rows it read and checked once,
and the callbacks that prune the trial or stop it at its deadline."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class TrialHooks:
    rows: object  # TrainingRows, without the rows the search keeps for choosing among its trials
    modalities: tuple[str, ...]  # the inputs the data has (load_rows resolved the settings for them)
    callbacks: tuple = ()  # Keras callbacks, run beside the run's own in every phase
    model: object = None  # set once the trial is saved: its fitted FusionClassifier
