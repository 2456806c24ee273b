"""The Keras/TF seam: the traced inference pass, optimizers as configured, lazy Keras, reused workers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


def test_forward_traces_once_and_matches_eager() -> None:
    from trainables.models.families import build_model
    from trainables.trial.keras_runtime import Forward, predict_eager

    model = build_model("gru", {"units": 4, "layers": 1}, lookback=5, n_features=3)
    fwd = Forward(model, batch=7)
    x = np.random.default_rng(0).normal(size=(20, 5, 3)).astype(np.float32)
    z = fwd(x)  # three batches: 7, 7, 6 (a partial one)
    fwd(x[:3])
    assert z.shape == (20,)
    np.testing.assert_allclose(z, predict_eager(model, x), rtol=1e-5, atol=1e-6)
    assert fwd._fn.experimental_get_tracing_count() == 1


def test_reporting_module_does_not_import_tensorflow() -> None:
    # The sweep driver imports the trial modules (through cluster.tune_trial); TensorFlow in
    # the driver cost ~3 s of CPU while the workers imported it too.
    import subprocess
    import sys

    code = ("import sys; import trainables.trial.keras_runtime as r, trainables.trial.fit; r.configure_tensorflow; "
            "print('tensorflow' in sys.modules, 'keras' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[3])
    assert out.stdout.split() == ["False", "False"]


def test_unknown_attribute_of_reporting_module_raises() -> None:
    import trainables.trial.keras_runtime as r

    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        r.Nope  # noqa: B018


def test_reused_process_does_not_keep_earlier_trials_graphs() -> None:
    # TF's default strategy registers a global custom gradient per trace, which kept every
    # earlier trial's graph alive in a reused worker (~6 MB each). After the fix, the
    # number of live traced train graphs stays at one however many trials ran.
    import gc

    from trainables.data.candles import load_candles
    from trainables.features.dataset import Split, prepare
    from trainables.features.indicators import make_member
    from trainables.trial.fit import fit_trial

    data = prepare(load_candles("BTC-USDT", "1d"), [make_member("log_return")], max_lookback=4,
                   split=Split(0.7, 0.15, 0.15))
    cfg = {"family": "gru", "model": {"units": 4, "layers": 1, "dropout": 0.0}, "columns": ["log_return_1"],
           "lookback": 4, "batch_size": 32, "learning_rate": 1e-3, "max_epochs": 1, "patience": 0, "seed": 0}

    def live_train_graphs() -> int:
        gc.collect()
        return sum(1 for o in gc.get_objects()
                   if type(o).__name__ == "FuncGraph" and getattr(o, "name", "") == "one_step_on_data")

    for _ in range(3):
        fit_trial(cfg, data, sink=lambda row: None)
    assert live_train_graphs() <= 1


@pytest.mark.parametrize("name", ["adam", "adamw", "sgd", "rmsprop"])
@pytest.mark.parametrize("weight_decay", [0.0, 1e-4])
def test_every_optimizer_applies_exactly_the_configured_weight_decay(name: str, weight_decay: float) -> None:
    # AdamW used to train with 0.004 when 0 was recorded, and SGD/RMSprop ignored it.
    from trainables.models.families import build_model
    from trainables.trial.config import TrialConfig
    from trainables.trial.keras_runtime import build_optimizer, compile_model

    opt = build_optimizer(name, learning_rate=3e-3, weight_decay=weight_decay)
    assert (opt.weight_decay or 0.0) == pytest.approx(weight_decay)
    assert float(np.asarray(opt.learning_rate)) == pytest.approx(3e-3)
    cfg = TrialConfig(group="BTC-USDT/1d", asset="BTC-USDT", timeframe="1d", seed=0, family="mlp", lookback=3,
                      columns=("a",), optimizer=name, weight_decay=weight_decay, learning_rate=3e-3)
    model = compile_model(build_model("mlp", {"units": 2}, lookback=3, n_features=1), cfg)
    assert type(model.optimizer).__name__.lower() == name
    assert (model.optimizer.weight_decay or 0.0) == pytest.approx(weight_decay)


def test_unknown_optimizer_or_loss_is_an_error_not_adam() -> None:
    from trainables.errors import RunError
    from trainables.trial.keras_runtime import build_loss, build_optimizer

    with pytest.raises(RunError, match="unknown optimizer 'adagrad'"):
        build_optimizer("adagrad", learning_rate=1e-3, weight_decay=0.0)
    with pytest.raises(RunError, match="unknown loss 'l1'"):
        build_loss("l1")
