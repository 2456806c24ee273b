"""One trial: a typed config, trained on one prepared group, scored and saved.

* :mod:`trainables.trial.config`: :class:`~trainables.trial.config.TrialConfig`, what one
  trial trains, with every default in one place.
* :mod:`trainables.trial.fit`: the orchestration (``run_trial``, ``fit_trial``): windows,
  scaler, training, scores, artifacts; Ray-free (``cluster.tune_trial`` runs it under Tune).
* :mod:`trainables.trial.keras_runtime`: the only Keras/TensorFlow seam (process set-up,
  per-trial session, compile, the epoch callback, inference, save/load); imports Keras lazily.

Nothing is imported here, so ``import trainables.trial.config`` stays cheap.
"""
