"""The bottom layer: data → indicators → windows → model → one trial, with no Ray in it.

- ``data``: candle files, exchange download, funding/metric tables, as-of alignment.
- ``features``: indicator registry, targets, the prepared arrays and windows of a group.
- ``pipeline``: the one feature pipeline (a ``DataRecipe`` in, a prepared group out).
- ``models``: model families and their Keras layers.
- ``trial``: the typed trial config, one trial's training, the Keras/TF seam.
- ``evaluation``: scores and the baselines every model is judged against.
- ``errors``, ``files``: the base error class, atomic file writes.
- ``records``, ``run_files``: the one layer that reads back the files we wrote (size cap,
  strict UTF-8, exact line/column, pydantic shapes, one-line errors) and the shapes of the
  run-folder files (``groups.json``, ``params.json``, ``result.json``, ``scaler.json``).
- ``predictions``: a trial's test-span forecasts (compact ``predictions.npy`` + the group's
  shared ``test_span/`` file) and the one reader that returns them as the full table, old
  ``predictions.csv`` checkpoints included.
"""
