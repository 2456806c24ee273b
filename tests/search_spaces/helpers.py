"""Constants and helpers shared by the spec tests."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PRESET_DIR = ROOT / "search_spaces"
PRESETS = sorted(p.name for p in PRESET_DIR.glob("*.yaml"))

# Small sizes every family accepts (heads 2 divides d_model 8; factor 2 <= lookback 4).
_SMALL = {"units": 4, "filters": 4, "d_model": 8, "layers": 1, "heads": 2, "ff_mult": 1, "factor": 2,
          "kernel_size": 2}

def shrink_overrides(spec: Path) -> list[str]:
    """``--set`` overrides that shrink a preset to 2 trials x 1 epoch on recent BTC daily candles."""
    from search_spaces.loader import _resolve_bases
    from trainables.models.families import MODELS

    raw = _resolve_bases(spec)
    sets = ["data.assets=[BTC-USDT]", "data.timeframes=[1d]", "data.start=2023-01-01", "window.lookback=4",
            "search.num_samples=2", "search.max_concurrent=1", "training.max_epochs=1",
            "training.batch_size=64", "scheduler.kind=none", "resources.cpus=1", "resources.gpus=0"]
    for fam in raw["model"]["families"]:
        for k, v in _SMALL.items():
            if k in MODELS[fam].params:
                sets.append(f"model.families.{fam}.{k}={v}")
    return sets


def space_rows(out: str) -> dict[str, str]:
    """``tunefactory space`` output as {row label: value}."""
    import re

    rows = {}
    for line in out.splitlines()[1:]:
        m = re.match(r"  (\S.*?)\s{2,}(.*)$", line)
        assert m, line
        rows[m.group(1)] = m.group(2)
    return rows
