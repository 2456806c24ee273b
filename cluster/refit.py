"""The production refit of exported winners: the one place a winner is retrained for deployment.

Protocol: the search **selects** a config on the validation span, the test span **scores**
it (the registry's ``selection/`` model, whose ``predictions.csv`` and scores are the
honest ones), then the same config and seed are **refit** on every sample whose target is
known, through the last complete candle, for the epoch count early stopping chose
(``best_epoch``), with the scaler refit on that span (``production/``); the **forecast**
uses the production model. The refit runs in-process (no Ray): the data come from the one
pipeline (:func:`trainables.pipeline.prepare_refit`) and training from
:func:`trainables.trial.fit.fit_fixed_epochs`. ``reports.registry.winners`` never trains:
it calls the function made here while it writes a hidden version folder.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Any

from trainables.errors import RunError
from trainables.pipeline import DataRecipe, prepare_refit


def production_refit(*, data: Path | None = None, through: dt.datetime | None = None,
                     threads: int | None = None) -> Any:
    """A ``reports.registry.winners.Refit``: trains a winner's production model into a folder.

    Args:
        data: a candle folder to read instead of the one the run read (newer candles).
        through: leave out candles not complete at this UTC time (default: now).
        threads: TensorFlow threads (default: the machine's CPUs).
    """
    from trainables.trial import keras_runtime
    from trainables.trial.fit import fit_fixed_epochs

    def refit(recipe: DataRecipe, config: dict[str, Any], epochs: int, out: Path) -> dict[str, Any]:
        keras_runtime.configure_tensorflow(threads or os.cpu_count() or 1)
        prepared = prepare_refit(recipe, path=data, through=through)
        try:
            info = fit_fixed_epochs({**config, "group": recipe.group, "asset": recipe.asset,
                                     "timeframe": recipe.timeframe}, prepared, epochs=epochs, save_dir=out)
        except keras_runtime.TrialDiverged as e:
            raise RunError(f"{recipe.group}: the production refit diverged ({e}); the current winner is kept") from None
        info["data"] = str(data if data is not None else recipe.path or "embedded")
        return info

    return refit
