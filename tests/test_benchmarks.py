"""benchmarks/asha_replay.py: its ASHA is Ray's, its patience is the trial's, bad input is one line.

The replay chooses the presets' early-stopping defaults, so a replay that decided differently
from Ray's scheduler would set them from fiction; these tests pin it to Ray 2.60's own
``_Bracket`` and to hand-computed sweeps.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("asha_replay", ROOT / "benchmarks" / "asha_replay.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["asha_replay"] = mod
    spec.loader.exec_module(mod)
    return mod


replay_mod = _load()


class _Trial:
    def __init__(self, i: int) -> None:
        self.trial_id = str(i)


@pytest.mark.parametrize(("grace", "rf", "max_t"), [(1, 2, 13), (2, 3, 13), (4, 3, 26), (6, 4, 13), (3, 2, 31)])
def test_rungs_decide_as_rays_bracket(grace: int, rf: int, max_t: int) -> None:
    from ray.tune.schedulers.async_hyperband import _Bracket
    from ray.tune.schedulers.trial_scheduler import TrialScheduler

    rng = np.random.default_rng(grace * 100 + rf)
    stops = 0
    for _ in range(40):
        ours, ray_b = replay_mod.Rungs(grace, rf, max_t), _Bracket(grace, max_t, rf, 0)
        trials = [_Trial(i) for i in range(12)]
        for _ in range(120):
            i, epoch, value = int(rng.integers(12)), int(rng.integers(1, max_t)), float(rng.random())
            # Ray maximises the reward: tunefactory's metric is minimised, so the reward is -value.
            expected = ray_b.on_result(trials[i], epoch, -value) == TrialScheduler.STOP  # type: ignore[arg-type]
            assert ours.stop(i, epoch, value) == expected
            stops += expected
    assert stops > 0  # the comparison covered stopping decisions, not only "continue"


def test_replay_without_asha_truncates_by_patience_as_the_trial_does() -> None:
    curves = [[5.0, 4.0, 4.5, 4.6, 4.7, 3.0], [2.0, 2.1, 2.2, 2.3]]
    s = replay_mod.Setting(0, 0, 2)
    points, spent = replay_mod.replay(curves, [0, 1], s, max_epochs=6, concurrency=1)
    # config 0: best at epoch 2, two epochs without improvement -> stops after epoch 4;
    # config 1: best at epoch 1 -> stops after epoch 3. The late 3.0 is never seen.
    assert spent == 4 + 3
    assert points == [(4, 4.0), (7, 2.0)]


def test_replay_with_asha_cuts_the_worse_config_at_the_first_rung() -> None:
    curves = [[1.0, 0.9, 0.8, 0.7], [2.0, 1.9, 1.8, 0.1]]
    points, spent = replay_mod.replay(curves, [0, 1], replay_mod.Setting(1, 2, 9), max_epochs=4, concurrency=1)
    # With one trial at a time config 0 runs alone and records every rung; config 1 is worse at
    # epoch 1 than the rung's median and is cut there, so its late 0.1 is lost.
    assert spent == 4 + 1
    assert points[-1] == (5, 0.7)


def test_cli_replays_a_real_run(small_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert replay_mod.main([str(small_run), "--orders", "5", "--grace", "1", "--rf", "2", "--patience", "1", "2"]) == 0
    out = capsys.readouterr().out
    assert "no ASHA, patience 2" in out and "1.00     1.00" in out  # the reference against itself


@pytest.mark.parametrize(("extra", "match"), [
    (["--patience", "3"], r"--patience 3: the curves ran with patience 2; only 1\.\.2 can be replayed"),
    (["--draws", "3"], r"--draws 3: group BTC-USDT/1d has 4 configs in all; two disjoint searches need 6"),
    (["--grace", "9"], r"--grace 9: the curves ran at most 2 epochs; only 1\.\.2 can be replayed"),
    (["--rf", "1"], r"--rf must be >= 2"),
])
def test_bad_input_is_one_line(small_run: Path, extra: list[str], match: str,
                               capsys: pytest.CaptureFixture[str]) -> None:
    assert replay_mod.main([str(small_run), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert re.search(match, err), err


def test_a_folder_that_is_not_a_run_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert replay_mod.main([str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == f"asha_replay: {tmp_path}: not a run folder (no groups.json)"
