"""Model registry: shapes, hand-derived parameter counts, causality, save/load and training."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest

from trainables.errors import TunefactoryError
from trainables.models.attention import ATTENTION_KINDS, SynthAttention
from trainables.models.families import MODELS, build_model, resolve_params, sequence_model

LOOKBACK, FEATURES, BATCH = 8, 3, 4

# Tiny configs so the whole file runs in seconds; dropout > 0 where a family has it, so the
# inference-mode checks (causality, reload) also prove dropout is off at inference.
_TRANSFORMER = {"layers": 2, "heads": 2, "d_model": 8, "ff_mult": 2, "dropout": 0.1}
SMALL: dict[str, dict[str, Any]] = {
    "mlp": {"layers": 2, "units": 4, "dropout": 0.1},
    "lstm": {"layers": 2, "units": 4, "dropout": 0.1},
    "gru": {"layers": 2, "units": 4, "dropout": 0.1},
    "tcn": {"layers": 2, "filters": 4, "kernel_size": 2, "dropout": 0.1},
    "transformer": _TRANSFORMER,
    "synth_dense": _TRANSFORMER,
    "synth_random": _TRANSFORMER,
    # factor 3 does not divide the lookback 8: exercises the cut of the a·b tiling.
    "synth_factorized_dense": {**_TRANSFORMER, "factor": 3},
    "synth_factorized_random": {**_TRANSFORMER, "factor": 2},
    "synth_dense_vanilla": {**_TRANSFORMER, "mix": 0.3},
    "synth_random_vanilla": {**_TRANSFORMER, "mix": 0.7, "learn_mix": False},
}
CAUSAL = ["tcn", "transformer", *(f for f in MODELS if f.startswith("synth_"))]
SYNTH = {"synth_dense", "synth_random", "synth_factorized_dense", "synth_factorized_random",
         "synth_dense_vanilla", "synth_random_vanilla"}


def _window(seed: int = 0, n: int = BATCH) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, LOOKBACK, FEATURES)).astype("float32")


def _build(family: str, **overrides: Any) -> keras.Model:
    keras.utils.set_random_seed(0)
    return build_model(family, {**SMALL[family], **overrides}, lookback=LOOKBACK, n_features=FEATURES)


def test_registry_lists_every_family_with_sane_declared_params() -> None:
    assert set(MODELS) == set(SMALL)
    assert set(SMALL) - {"mlp", "lstm", "gru", "tcn"} - {"transformer"} == SYNTH
    for fam in MODELS.values():
        assert fam.doc
        for name, spec in fam.params.items():
            assert isinstance(spec.default, spec.type), (fam.name, name)
            assert spec.doc, (fam.name, name)
            if spec.low is not None:
                assert spec.low <= spec.default <= spec.high, (fam.name, name)
    # The search-space presets rely on these names.
    assert {"layers", "units", "dropout"} <= set(MODELS["mlp"].params)
    assert set(MODELS["tcn"].params) == {"layers", "filters", "kernel_size", "dropout"}
    base = {"layers", "heads", "d_model", "ff_mult", "dropout", "pos_encoding"}
    assert set(MODELS["transformer"].params) == base
    assert set(MODELS["synth_random"].params) == base
    assert set(MODELS["synth_factorized_random"].params) == base | {"factor"}
    assert set(MODELS["synth_dense_vanilla"].params) == base | {"mix", "learn_mix"}


def test_every_attention_kind_has_a_family() -> None:
    assert len(ATTENTION_KINDS) == len(SYNTH) + 1


@pytest.mark.parametrize("family", list(SMALL))
def test_output_is_one_value_per_window(family: str) -> None:
    model = _build(family)
    assert model.output_shape == (None, 1)
    assert np.asarray(model(_window(), training=False)).shape == (BATCH, 1)


# ----------------------------------------------------------------------------- parameter counts
def _dense(n_in: int, n_out: int) -> int:
    return n_in * n_out + n_out


def _transformer_count(p: dict[str, Any], attention: int) -> int:
    """Embedding + learned positions + blocks (2 LayerNorms, attention, FFN) + final LN + head."""
    d, m = p["d_model"], p["ff_mult"]
    block = 2 * (2 * d) + attention + _dense(d, m * d) + _dense(m * d, d)
    return _dense(FEATURES, d) + LOOKBACK * d + p["layers"] * block + 2 * d + _dense(d, 1)


def _expected_count(family: str) -> int:
    p, n, f = SMALL[family], LOOKBACK, FEATURES
    if family == "mlp":
        u = p["units"]
        return _dense(n * f, u) + _dense(u, u) + _dense(u, 1)
    if family == "lstm":
        u = p["units"]
        # Four gates, each with input and recurrent kernels and one bias.
        return 4 * (f * u + u * u + u) + 4 * (u * u + u * u + u) + _dense(u, 1)
    if family == "gru":
        u = p["units"]
        # Three gates; reset_after=True (Keras default) keeps separate input and recurrent biases.
        return 3 * (f * u + u * u + 2 * u) + 3 * (u * u + u * u + 2 * u) + _dense(u, 1)
    if family == "tcn":
        c, k = p["filters"], p["kernel_size"]
        first = _dense(k * f, c) + _dense(k * c, c) + _dense(f, c)  # 1×1 residual: f ≠ c
        return first + _dense(k * c, c) + _dense(k * c, c) + _dense(c, 1)
    d, h = p["d_model"], p["heads"]
    values_and_output = 2 * _dense(d, d)
    if family == "transformer":
        return _transformer_count(p, values_and_output + 2 * _dense(d, d))
    if family == "synth_random":
        # One learned N×N logits matrix per head; no query/key projections.
        return _transformer_count(p, values_and_output + h * n * n)
    if family == "synth_dense":
        return _transformer_count(p, values_and_output + _dense(d, d) + _dense(d, h * n))
    raise AssertionError(family)


COUNTED = ["mlp", "lstm", "gru", "tcn", "transformer", "synth_random", "synth_dense"]


@pytest.mark.parametrize("family", COUNTED)
def test_parameter_count_matches_hand_derivation(family: str) -> None:
    assert _build(family).count_params() == _expected_count(family)


def test_fixed_mix_is_not_trainable_and_learned_mix_is() -> None:
    fixed = _build("synth_random_vanilla", learn_mix=False)
    learned = _build("synth_random_vanilla", learn_mix=True)
    n_mix = SMALL["synth_random_vanilla"]["layers"] * SMALL["synth_random_vanilla"]["heads"]
    trainable = [sum(int(np.prod(w.shape)) for w in m.trainable_weights) for m in (fixed, learned)]
    assert trainable[1] - trainable[0] == n_mix
    assert fixed.count_params() == learned.count_params()


# ------------------------------------------------------------------- attention against numpy maths
def _softmax(z: np.ndarray) -> np.ndarray:
    z = np.exp(z - z.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


@pytest.mark.parametrize("kind", ["vanilla", "random", "random_vanilla", "factorized_dense",
                                  "factorized_random"])
def test_attention_matches_a_numpy_reference(kind: str) -> None:
    """Check the scores against the paper's formulas, written independently with numpy."""
    heads, d, n, factor, mix = 2, 4, LOOKBACK, 3, 0.25
    layer = SynthAttention(kind, heads, factor=factor, mix=mix)
    x = np.random.default_rng(4).normal(size=(BATCH, n, d)).astype("float32")
    got = np.asarray(layer(x))
    w = {v.name: np.asarray(v.numpy(), dtype="float64") for v in layer.weights}

    def proj(name: str) -> np.ndarray:  # (batch, heads, n, head_dim)
        return np.einsum("bnd,dhk->bhnk", x, w[f"{name}_kernel"]) + w[f"{name}_bias"][:, None]

    synthetic = None
    if "random" in kind and "factorized" not in kind:
        synthetic = w["random_logits"][None]
    elif kind == "factorized_random":
        synthetic = (w["random_factor_1"] @ np.swapaxes(w["random_factor_2"], -1, -2))[None]
    elif kind == "factorized_dense":
        fa, fb = proj("factor_a"), proj("factor_b")
        cols = np.arange(n)
        synthetic = fa[..., cols % factor] * fb[..., cols // factor]
    dot = None
    if "vanilla" in kind:
        dot = proj("query") @ np.swapaxes(proj("key"), -1, -2) / np.sqrt(d // heads)
    if synthetic is not None and dot is not None:
        alpha = 1 / (1 + np.exp(-w["mix_logit"]))[None, :, None, None]
        np.testing.assert_allclose(alpha, mix, rtol=1e-6)
        logits = alpha * synthetic + (1 - alpha) * dot
    else:
        logits = synthetic if synthetic is not None else dot
    logits = np.where(np.tril(np.ones((n, n), bool)), logits, -np.inf)
    context = _softmax(logits) @ proj("value")
    expected = np.einsum("bhnk,hkd->bnd", context, w["output_kernel"]) + w["output_bias"]
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------------------------------- causality
@pytest.mark.parametrize(("family", "overrides"), [
    *((f, {}) for f in CAUSAL),
    ("transformer", {"pos_encoding": "sinusoidal"}),
    ("synth_factorized_dense", {"factor": 8}),
])
def test_step_t_never_sees_later_steps(family: str, overrides: dict[str, Any]) -> None:
    model = _build(family, **overrides)
    seq = sequence_model(model)
    k = 5
    x = _window()
    x_later = x.copy()
    x_later[:, k, :] += 3.0
    before, after = (np.asarray(seq(w, training=False)) for w in (x, x_later))
    assert before.shape[:2] == (BATCH, LOOKBACK)
    np.testing.assert_allclose(before[:, :k], after[:, :k], rtol=1e-5, atol=1e-6)
    # The perturbation does reach step k, so the check above is not vacuous.
    assert not np.allclose(before[:, k], after[:, k])
    # The model's prediction is the head applied to the last step of that sequence.
    head = model.get_layer("head")
    np.testing.assert_allclose(np.asarray(head(before[:, -1])), np.asarray(model(x, training=False)),
                               rtol=1e-5, atol=1e-6)


def test_sequence_model_rejects_a_family_without_sequence_output() -> None:
    with pytest.raises(TunefactoryError, match=r"'mlp' has no per-time-step output"):
        sequence_model(_build("mlp"))


# ------------------------------------------------------------------------------ user-facing errors
@pytest.mark.parametrize(("family", "overrides", "match"), [
    ("transformer", {"heads": 3}, r"'transformer': heads=3 is invalid: must divide d_model=8"),
    ("synth_dense_vanilla", {"heads": 5}, r"heads=5 is invalid: must divide d_model=8"),
    ("synth_factorized_random", {"factor": 9},
     r"factor=9 is invalid: must be between 1 and the lookback \(8\)"),
    ("transformer", {"pos_encoding": "rotary"}, r"pos_encoding='rotary' is invalid: must be one of learned"),
])
def test_bad_params_raise_one_line_error_at_build(family: str, overrides: dict[str, Any], match: str) -> None:
    with pytest.raises(TunefactoryError, match=match) as info:
        _build(family, **overrides)
    assert "\n" not in str(info.value)


def test_resolve_params_fills_defaults_and_ignores_foreign_keys() -> None:
    p = resolve_params("synth_factorized_dense", {"heads": 2, "units": 99})
    assert p["heads"] == 2 and p["factor"] == MODELS["synth_factorized_dense"].params["factor"].default
    assert "units" not in p


# ---------------------------------------------------------------------------- save/load, training
@pytest.mark.parametrize("family", list(SMALL))
def test_save_and_load_reproduce_predictions(family: str, tmp_path: Path) -> None:
    model = _build(family)
    x = _window(1)
    expected = np.asarray(model(x, training=False))
    path = tmp_path / f"{family}.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_allclose(np.asarray(loaded(x, training=False)), expected, rtol=1e-6, atol=1e-6)
    assert loaded.count_params() == model.count_params()


@pytest.mark.parametrize("family", list(SMALL))
def test_one_epoch_of_fit_gives_a_finite_loss(family: str) -> None:
    # One block/layer: graph tracing dominates the cost and grows with depth.
    model = _build(family, layers=1)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
    x = _window(2, n=32)
    y = np.random.default_rng(3).normal(size=(32, 1)).astype("float32")
    history = model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


def test_registry_is_importable_without_keras_and_agrees_with_the_layers() -> None:
    """validate/space read the registry without importing TensorFlow (seconds + a banner)."""
    import subprocess
    import sys

    code = ("import sys, search_spaces.loader, trainables.models.families; "
            "sys.exit(1 if 'keras' in sys.modules or 'tensorflow' in sys.modules else 0)")
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
    from trainables.models.attention import PositionalEncoding
    from trainables.models.families import POS_ENCODINGS

    assert tuple(PositionalEncoding.KINDS) == POS_ENCODINGS
