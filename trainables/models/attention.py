"""Causal attention layers for the transformer families: vanilla and Synthesizer scores.

One layer, :class:`SynthAttention`, covers every attention family. It always projects the
values, mixes them with ``softmax(causal(logits))`` and projects the heads back; only the
source of the ``(batch, heads, N, N)`` logits changes with ``kind``:

* ``vanilla``: scaled dot product of query and key projections (GPT-2).
* ``dense``: a two-layer ReLU MLP maps each token to its own row of N logits
  (Tay et al. 2021, "Synthesizer: Rethinking Self-Attention in Transformer Models", §3.1).
* ``random``: a learned, input-independent N×N logits matrix per head.
* ``factorized_dense``: each token yields vectors of length ``a = factor`` and ``b = ⌈N/a⌉``;
  their tiled product gives the N logits (fewer parameters than ``dense``).
* ``factorized_random``: a learned rank-``factor`` product ``R1 @ R2ᵀ`` per head.
* ``dense_vanilla`` / ``random_vanilla``: per head ``α·synthetic + (1-α)·dot-product`` with
  ``α = sigmoid(θ)`` learned (or frozen) from the initial weight ``mix``.

Every kind masks future positions to ``-inf`` before the softmax, so the output at step t
depends on the inputs at steps ≤ t only. The module also holds the two other custom layers
the sequence families need (:class:`PositionalEncoding`, :class:`LastTimeStep`). All are
registered for ``keras.models.load_model`` under the ``tunefactory`` package.
"""

from __future__ import annotations

import math
from typing import Any

import keras
import numpy as np
from keras import layers, ops

# Score components per kind; a kind with two components is a mixture (synthetic first).
KIND_COMPONENTS: dict[str, tuple[str, ...]] = {
    "vanilla": ("dot",),
    "dense": ("dense",),
    "random": ("random",),
    "factorized_dense": ("factorized_dense",),
    "factorized_random": ("factorized_random",),
    "dense_vanilla": ("dense", "dot"),
    "random_vanilla": ("random", "dot"),
}
ATTENTION_KINDS: tuple[str, ...] = tuple(KIND_COMPONENTS)


def _logit(p: float) -> float:
    # Clipped so that mix=0 or mix=1 (a pure component) still has a finite θ.
    p = min(max(p, 1e-3), 1.0 - 1e-3)
    return math.log(p / (1.0 - p))


@keras.saving.register_keras_serializable(package="tunefactory")
class SynthAttention(layers.Layer):
    """Causal multi-head self-attention with a pluggable logits ("score") function.

    Input and output are ``(batch, N, d_model)``; ``N`` must be static for every kind but
    ``vanilla`` because the synthetic scores have one weight per key position.

    Args:
        kind: one of :data:`ATTENTION_KINDS`.
        heads: attention heads; must divide ``d_model``.
        factor: ``a`` for ``factorized_dense``, the rank for ``factorized_random``.
        mix: initial weight of the synthetic logits in a mixture kind.
        learn_mix: train the mixture weight (else it stays at ``mix``).
        dropout: dropout rate on the attention probabilities.
        **kwargs: passed to :class:`keras.layers.Layer`.
    """

    def __init__(self, kind: str = "vanilla", heads: int = 1, factor: int = 4, mix: float = 0.5,
                 learn_mix: bool = True, dropout: float = 0.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if kind not in KIND_COMPONENTS:
            raise ValueError(f"kind={kind!r} is not one of {ATTENTION_KINDS}")
        self.kind = kind
        self.heads = int(heads)
        self.factor = int(factor)
        self.mix = float(mix)
        self.learn_mix = bool(learn_mix)
        self.dropout = float(dropout)
        self.components = KIND_COMPONENTS[kind]
        self.attn_dropout = layers.Dropout(self.dropout)

    # ----------------------------------------------------------------------------- build
    def _proj(self, name: str, shape: tuple[int, ...], bias_shape: tuple[int, ...]) -> tuple[Any, Any]:
        w = self.add_weight(name=f"{name}_kernel", shape=shape, initializer="glorot_uniform")
        b = self.add_weight(name=f"{name}_bias", shape=bias_shape, initializer="zeros")
        return w, b

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        n_or_none, d = input_shape[1], int(input_shape[-1] or 0)
        h = self.heads
        if d % h:
            raise ValueError(f"heads={h} must divide d_model={d}")
        k = d // h
        self.seq_len, self.d_model, self.head_dim = n_or_none, d, k
        if n_or_none is None and self.kind != "vanilla":
            raise ValueError(f"kind={self.kind!r} needs a static sequence length")
        n = int(n_or_none or 0)  # only the synthetic kinds use n, and they required it above

        self.wv, self.bv = self._proj("value", (d, h, k), (h, k))
        self.wo, self.bo = self._proj("output", (h, k, d), (d,))
        if "dot" in self.components:
            self.wq, self.bq = self._proj("query", (d, h, k), (h, k))
            self.wk, self.bk = self._proj("key", (d, h, k), (h, k))
        if "dense" in self.components:
            # Paper's F(X_i) = W2 relu(W1 X_i + b1) + b2, W1: d×d, W2: d×N (one W2 per head).
            self.w1, self.b1 = self._proj("dense_hidden", (d, d), (d,))
            self.w2, self.b2 = self._proj("dense_logits", (d, h, n), (h, n))
        if "random" in self.components:
            self.r = self.add_weight(name="random_logits", shape=(h, n, n), initializer="glorot_uniform")
        if "factorized_dense" in self.components:
            a, b = self.factor, -(-n // self.factor)
            self.wa, self.ba = self._proj("factor_a", (d, h, a), (h, a))
            self.wb, self.bb = self._proj("factor_b", (d, h, b), (h, b))
        if "factorized_random" in self.components:
            self.r1 = self.add_weight(name="random_factor_1", shape=(h, n, self.factor),
                                      initializer="glorot_uniform")
            self.r2 = self.add_weight(name="random_factor_2", shape=(h, n, self.factor),
                                      initializer="glorot_uniform")
        if len(self.components) > 1:
            self.mix_logit = self.add_weight(name="mix_logit", shape=(h,),
                                             initializer=keras.initializers.Constant(_logit(self.mix)),
                                             trainable=self.learn_mix)
        super().build(input_shape)

    # ---------------------------------------------------------------------------- scores
    def _score(self, component: str, x: Any) -> Any:
        """Logits ``(batch or 1, heads, N, N)`` of one component; rows are queries."""
        if component == "dot":
            q = ops.einsum("bnd,dhk->bhnk", x, self.wq) + self.bq[:, None, :]
            key = ops.einsum("bnd,dhk->bhnk", x, self.wk) + self.bk[:, None, :]
            return ops.einsum("bhik,bhjk->bhij", q, key) / math.sqrt(self.head_dim)
        if component == "dense":
            hidden = ops.relu(ops.einsum("bnd,de->bne", x, self.w1) + self.b1)
            return ops.einsum("bie,ehj->bhij", hidden, self.w2) + self.b2[:, None, :]
        if component == "random":
            return self.r[None]
        if component == "factorized_dense":
            n, a = self.seq_len, self.factor
            fa = ops.einsum("bnd,dha->bhna", x, self.wa) + self.ba[:, None, :]
            fb = ops.einsum("bnd,dhc->bhnc", x, self.wb) + self.bb[:, None, :]
            # Logit j = A[j mod a] · B[j div a]: tiling A and repeating B elementwise gives all
            # a·b pairs once, cut to N.
            tiled_a = ops.tile(fa, (1, 1, 1, fb.shape[-1]))[..., :n]
            repeated_b = ops.repeat(fb, a, axis=-1)[..., :n]
            return tiled_a * repeated_b
        # factorized_random
        return ops.einsum("hik,hjk->hij", self.r1, self.r2)[None]

    def call(self, x: Any, training: bool | None = None) -> Any:
        scores = [self._score(c, x) for c in self.components]
        if len(scores) == 1:
            logits = scores[0]
        else:
            alpha = ops.sigmoid(self.mix_logit)[None, :, None, None]
            logits = alpha * scores[0] + (1.0 - alpha) * scores[1]
        batch, n = ops.shape(x)[0], ops.shape(x)[1]
        # Input-independent (random) logits have batch size 1; give each sample its own copy
        # so attention dropout draws an independent mask per sample.
        logits = ops.broadcast_to(logits, (batch, self.heads, n, n))
        causal = ops.tril(ops.ones((n, n), dtype="bool"))
        # -inf (not a large negative) so a future step gets exactly zero weight; the diagonal
        # is always kept, so no row is all -inf.
        logits = ops.where(causal[None, None], logits, ops.cast(float("-inf"), logits.dtype))
        probs = self.attn_dropout(ops.softmax(logits, axis=-1), training=training)
        v = ops.einsum("bnd,dhk->bhnk", x, self.wv) + self.bv[:, None, :]
        context = ops.einsum("bhij,bhjk->bhik", probs, v)
        return ops.einsum("bhnk,hkd->bnd", context, self.wo) + self.bo

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "kind": self.kind, "heads": self.heads, "factor": self.factor,
                "mix": self.mix, "learn_mix": self.learn_mix, "dropout": self.dropout}


@keras.saving.register_keras_serializable(package="tunefactory")
class PositionalEncoding(layers.Layer):
    """Adds a position signal to ``(batch, N, d)``: learned table or fixed sinusoids.

    Args:
        kind: ``"learned"`` (GPT-2: one trained vector per position, N static) or
            ``"sinusoidal"`` (Vaswani et al.; no weights).
        **kwargs: passed to :class:`keras.layers.Layer`.
    """

    KINDS = ("learned", "sinusoidal")

    def __init__(self, kind: str = "learned", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if kind not in self.KINDS:
            raise ValueError(f"kind={kind!r} is not one of {self.KINDS}")
        self.kind = kind

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        n, d = input_shape[1], int(input_shape[-1] or 0)
        if self.kind == "learned":
            # GPT-2 initialises its position table with N(0, 0.02).
            self.table = self.add_weight(name="position_table", shape=(n, d),
                                         initializer=keras.initializers.RandomNormal(stddev=0.02))
        else:
            self.table = None
        super().build(input_shape)

    @staticmethod
    def sinusoids(n: int, d: int) -> np.ndarray:
        """The ``(n, d)`` sine/cosine table of Vaswani et al. (2017)."""
        pos = np.arange(n, dtype="float64")[:, None]
        rates = np.exp(-math.log(10000.0) * (2 * (np.arange(d) // 2)) / d)[None, :]
        angles = pos * rates
        return np.where(np.arange(d)[None, :] % 2 == 0, np.sin(angles), np.cos(angles)).astype("float32")

    def call(self, x: Any) -> Any:
        if self.table is not None:
            return x + ops.cast(self.table, x.dtype)[None]
        return x + ops.cast(self.sinusoids(x.shape[1], x.shape[-1]), x.dtype)[None]

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "kind": self.kind}


@keras.saving.register_keras_serializable(package="tunefactory")
class LastTimeStep(layers.Layer):
    """``(batch, N, c) → (batch, c)``: the causal sequence output at the window's last step.

    A named layer rather than a ``Lambda`` so saved models load without ``safe_mode=False``,
    and so :func:`trainables.models.families.sequence_model` can find the per-step output (its input).
    """

    def call(self, x: Any) -> Any:
        return x[:, -1, :]

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        return (input_shape[0], input_shape[-1])
