"""Model registry: one family name → one builder of a Keras 3 model.

Every model maps a window ``(batch, lookback, n_features)`` to one standardised target
value per sample. A family declares its hyperparameters (name → type and default) so the
spec schema can reject unknown or ill-typed keys before any compute starts, and so
conditional parameters (e.g. attention heads) exist only for the families that have them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from trainables.errors import TunefactoryError


class _LazyModule:
    """Import a module on first attribute access.

    Spec validation needs the family registry (names and declared parameters) but not
    Keras; importing TensorFlow costs 3-8 s and prints a start-up banner, so ``validate``,
    ``space`` and error messages stay fast and clean until a model is actually built.
    """

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        import importlib

        return getattr(importlib.import_module(self._name), attr)


#: Positional encodings of the transformer families (trainables.models.attention.PositionalEncoding.KINDS).
POS_ENCODINGS: tuple[str, ...] = ("learned", "sinusoidal")

keras: Any = _LazyModule("keras")
layers: Any = _LazyModule("keras.layers")


@dataclass(frozen=True)
class Param:
    """A family hyperparameter: its Python type, default and allowed range (inclusive)."""

    type: type
    default: Any
    low: float | None = None
    high: float | None = None
    doc: str = ""


Builder = Callable[[Any, Mapping[str, Any]], Any]  # (input KerasTensor, params) -> KerasTensor


@dataclass(frozen=True)
class ModelFamily:
    """A registered family: ``body`` maps the input tensor to a feature tensor."""

    name: str
    body: Builder
    params: dict[str, Param]
    doc: str


MODELS: dict[str, ModelFamily] = {}


def register(name: str, *, doc: str, **params: Param) -> Callable[[Builder], Builder]:
    """Decorator adding a family body to :data:`MODELS`."""

    def deco(fn: Builder) -> Builder:
        MODELS[name] = ModelFamily(name, fn, dict(params), doc)
        return fn

    return deco


_LAYERS = Param(int, 1, 1, 16, "stacked layers")
_UNITS = Param(int, 32, 1, 4096, "units per layer")
_DROPOUT = Param(float, 0.0, 0.0, 0.95, "dropout after each layer")


@register("mlp", doc="flattened window → dense ReLU stack", layers=_LAYERS, units=_UNITS, dropout=_DROPOUT)
def _mlp(x: keras.KerasTensor, p: Mapping[str, Any]) -> keras.KerasTensor:
    h = layers.Flatten()(x)
    for _ in range(int(p["layers"])):
        h = layers.Dense(int(p["units"]), activation="relu")(h)
        if p["dropout"] > 0:
            h = layers.Dropout(float(p["dropout"]))(h)
    return h


def _recurrent(cell_name: str) -> Builder:
    def body(x: Any, p: Mapping[str, Any]) -> Any:
        cell = getattr(layers, cell_name)  # keras.layers.LSTM / GRU, resolved at build time
        n = int(p["layers"])
        h = x
        for i in range(n):
            # Every layer but the last hands its whole sequence to the next one.
            h = cell(int(p["units"]), return_sequences=i < n - 1)(h)
            if p["dropout"] > 0:
                h = layers.Dropout(float(p["dropout"]))(h)
        return h

    return body


register("lstm", doc="stacked LSTM", layers=_LAYERS, units=_UNITS, dropout=_DROPOUT)(_recurrent("LSTM"))
register("gru", doc="stacked GRU", layers=_LAYERS, units=_UNITS, dropout=_DROPOUT)(_recurrent("GRU"))


# ------------------------------------------------------------------------ causal sequence families
# These bodies compute a causal per-time-step sequence and hand only its last step to the head.
# The last step goes through a layer named LAST_STEP so sequence_model() can expose the whole
# sequence (for causality checks and diagnostics) without a second builder.
LAST_STEP = "last_step"


def _tcn(x: keras.KerasTensor, p: Mapping[str, Any]) -> keras.KerasTensor:
    """Bai et al. (2018) TCN: residual blocks of two dilated causal convolutions.

    Block ``i`` dilates by ``2**i``, so the receptive field is
    ``1 + 2·(kernel_size-1)·(2**layers - 1)`` steps.
    """
    from trainables.models.attention import LastTimeStep

    filters, kernel, rate = int(p["filters"]), int(p["kernel_size"]), float(p["dropout"])
    h = x
    for i in range(int(p["layers"])):
        r = h
        for _ in range(2):
            # padding="causal" left-pads, so step t only sees steps <= t.
            h = layers.Conv1D(filters, kernel, padding="causal", dilation_rate=2**i, activation="relu")(h)
            if rate > 0:
                h = layers.Dropout(rate)(h)
        if r.shape[-1] != filters:
            # A 1×1 convolution matches the channel count so the residual can be added.
            r = layers.Conv1D(filters, 1)(r)
        h = layers.ReLU()(layers.Add()([r, h]))
    return LastTimeStep(name=LAST_STEP)(h)


register(
    "tcn", doc="dilated causal Conv1D residual stack (TCN), last time step",
    layers=Param(int, 3, 1, 12, "residual blocks; block i dilates by 2**i"),
    filters=Param(int, 32, 1, 1024, "channels of every convolution"),
    kernel_size=Param(int, 3, 2, 16, "convolution width"),
    dropout=Param(float, 0.0, 0.0, 0.95, "dropout after each convolution"),
)(_tcn)


def _check(family: str, ok: bool, name: str, value: Any, rule: str) -> None:
    """Raise a one-line :class:`TunefactoryError` naming the param, its value and the rule."""
    if not ok:
        raise TunefactoryError(f"model {family!r}: {name}={value!r} is invalid: {rule}")


def transformer_body(kind: str, family: str) -> Builder:
    """Body of a decoder-only (GPT-2 style) transformer whose attention scores are ``kind``.

    Features are embedded by a dense layer, positions added, then ``layers`` pre-LayerNorm
    blocks ``h += Attn(LN(h)); h += FFN(LN(h))`` run with causal attention, and a final
    LayerNorm precedes the last-time-step read-out. Every transformer family (vanilla and
    Synthesizer) is this body with a different ``kind``.

    Args:
        kind: a :data:`trainables.models.attention.ATTENTION_KINDS` entry.
        family: registry name, used in error messages.

    Returns:
        A builder ``(input, params) → (batch, d_model)``.
    """

    def body(x: keras.KerasTensor, p: Mapping[str, Any]) -> keras.KerasTensor:
        from trainables.models.attention import LastTimeStep, PositionalEncoding, SynthAttention

        d, heads, rate = int(p["d_model"]), int(p["heads"]), float(p["dropout"])
        n = x.shape[1]
        _check(family, heads >= 1 and d % heads == 0, "heads", heads,
               f"must divide d_model={d} (d_model % heads == 0)")
        _check(family, p["pos_encoding"] in PositionalEncoding.KINDS, "pos_encoding", p["pos_encoding"],
               f"must be one of {', '.join(PositionalEncoding.KINDS)}")
        if "factor" in p:
            _check(family, 1 <= int(p["factor"]) <= n, "factor", p["factor"],
                   f"must be between 1 and the lookback ({n})")
        attn_args = {k: p[k] for k in ("factor", "mix", "learn_mix") if k in p}

        h = layers.Dense(d, name="embed")(x)
        h = PositionalEncoding(str(p["pos_encoding"]), name="position")(h)
        if rate > 0:
            h = layers.Dropout(rate)(h)
        for i in range(int(p["layers"])):
            a = layers.LayerNormalization(epsilon=1e-5, name=f"block{i}_ln_attn")(h)
            a = SynthAttention(kind, heads, dropout=rate, name=f"block{i}_attn", **attn_args)(a)
            if rate > 0:
                a = layers.Dropout(rate)(a)
            h = layers.Add()([h, a])
            f = layers.LayerNormalization(epsilon=1e-5, name=f"block{i}_ln_ff")(h)
            f = layers.Dense(int(p["ff_mult"]) * d, activation="gelu", name=f"block{i}_ff_in")(f)
            f = layers.Dense(d, name=f"block{i}_ff_out")(f)
            if rate > 0:
                f = layers.Dropout(rate)(f)
            h = layers.Add()([h, f])
        h = layers.LayerNormalization(epsilon=1e-5, name="ln_final")(h)
        return LastTimeStep(name=LAST_STEP)(h)

    return body


_TRANSFORMER_PARAMS: dict[str, Param] = {
    "layers": Param(int, 2, 1, 16, "transformer blocks"),
    "heads": Param(int, 4, 1, 64, "attention heads; must divide d_model"),
    "d_model": Param(int, 64, 4, 1024, "width of the residual stream"),
    "ff_mult": Param(int, 4, 1, 8, "feed-forward width as a multiple of d_model"),
    "dropout": Param(float, 0.1, 0.0, 0.95, "dropout on embeddings, attention weights and residual branches"),
    "pos_encoding": Param(str, "learned", doc="positional encoding: 'learned' or 'sinusoidal'"),
}
_FACTOR = Param(int, 4, 1, 4096, "factorized_dense: length a of the first factor (a·⌈N/a⌉ ≥ N); "
                "factorized_random: rank of R1·R2ᵀ; at most the lookback")
_MIX = Param(float, 0.5, 0.0, 1.0, "initial weight of the synthetic logits (dot product gets 1 - mix)")
_LEARN_MIX = Param(bool, True, doc="train the per-head mixing weight (False: fixed at mix)")

# family → (attention kind, extra params, doc). One loop registers them all.
_ATTENTION_FAMILIES: dict[str, tuple[str, dict[str, Param], str]] = {
    "transformer": ("vanilla", {}, "decoder-only transformer (GPT-2, pre-LN), causal dot-product attention"),
    "synth_dense": ("dense", {}, "Synthesizer: per-token ReLU MLP → N causal attention logits"),
    "synth_random": ("random", {}, "Synthesizer: learned N×N causal attention logits per head"),
    "synth_factorized_dense": ("factorized_dense", {"factor": _FACTOR},
                               "Synthesizer: per-token factorised logits A[j mod a]·B[j div a]"),
    "synth_factorized_random": ("factorized_random", {"factor": _FACTOR},
                                "Synthesizer: learned low-rank R1·R2ᵀ causal logits per head"),
    "synth_dense_vanilla": ("dense_vanilla", {"mix": _MIX, "learn_mix": _LEARN_MIX},
                            "Synthesizer: mixture of dense synthetic and dot-product logits"),
    "synth_random_vanilla": ("random_vanilla", {"mix": _MIX, "learn_mix": _LEARN_MIX},
                             "Synthesizer: mixture of random synthetic and dot-product logits"),
}
for _name, (_kind, _extra, _doc) in _ATTENTION_FAMILIES.items():
    register(_name, doc=_doc, **_TRANSFORMER_PARAMS, **_extra)(transformer_body(_kind, _name))


def resolve_params(family: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """Family defaults overlaid with ``params`` (keys outside the family are ignored)."""
    fam = MODELS[family]
    return {k: params.get(k, spec.default) for k, spec in fam.params.items()}


def build_model(family: str, params: Mapping[str, Any], *, lookback: int, n_features: int,
                n_outputs: int = 1) -> keras.Model:
    """Build an uncompiled model of ``family``.

    Args:
        family: key of :data:`MODELS`.
        params: the family's hyperparameters (defaults fill the rest).
        lookback: window length (time steps).
        n_features: columns per time step.
        n_outputs: values predicted per window.

    Returns:
        A functional ``keras.Model`` from ``(lookback, n_features)`` to ``(n_outputs,)``.
    """
    p = resolve_params(family, params)
    inp = keras.Input(shape=(lookback, n_features), name="window")
    h = MODELS[family].body(inp, p)
    out = layers.Dense(n_outputs, name="head")(h)
    return keras.Model(inp, out, name=family)


def sequence_model(model: keras.Model) -> keras.Model:
    """The per-time-step sequence output of a causal family's model, sharing its weights.

    Args:
        model: a model from :func:`build_model` of a family that reads out its last time step
            (tcn, transformer, synth_*).

    Returns:
        A ``keras.Model`` from the same input to ``(batch, lookback, channels)``; step ``t``
        of the output depends on input steps ``<= t`` only.

    Raises:
        TunefactoryError: the model has no causal sequence output (e.g. mlp, lstm, gru).
    """
    try:
        last = model.get_layer(LAST_STEP)
    except ValueError:
        raise TunefactoryError(
            f"model {model.name!r} has no per-time-step output: sequence_model needs a layer named "
            f"{LAST_STEP!r} (families tcn, transformer, synth_*)") from None
    return keras.Model(model.input, last.input, name=f"{model.name}_sequence")
