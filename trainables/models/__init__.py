"""Model families: one name → one Keras 3 builder of a window-to-forecast model.

* :mod:`trainables.models.families`: the registry (:data:`MODELS`: names, declared
  hyperparameters and their ranges) and the builders (:func:`build_model`,
  ``sequence_model``); importing it does not import Keras, so spec validation can read the
  registry cheaply.
* :mod:`trainables.models.attention`: the custom layers of the sequence families (causal
  vanilla and Synthesizer attention, positional encodings, last-time-step read-out);
  importing it imports Keras and registers the layers for loading saved models.
"""

from __future__ import annotations

from trainables.models.families import MODELS, build_model

__all__ = ["MODELS", "build_model"]
