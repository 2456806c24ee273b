"""The wheel: built from the checkout, installed without the source tree, it finds its embedded data.

The wheel is installed with ``--no-deps --target`` beside this venv's dependencies (a fresh
venv would download ~2.7 GB of TensorFlow and Ray); the run happens in an empty folder with
the install first on ``sys.path``, so nothing can come from the checkout.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_carries_data_and_presets_and_validates_the_laptop_spec(tmp_path: Path) -> None:
    dist, target, cwd, src = tmp_path / "dist", tmp_path / "site", tmp_path / "elsewhere", tmp_path / "src"
    cwd.mkdir()
    # Built from a copy: setuptools writes build/ and *.egg-info into the tree it builds.
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(".git", ".venv", "build", "runs", "winners", "*.egg-info",
                                                             "__pycache__", ".*_cache", "tests", "benchmarks"))
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(dist), str(src)], capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr[-2000:]
    (wheel,) = dist.glob("tunefactory-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "trainables/data/embedded/ohlcv/BTC-USDT_1d.csv" in names
    assert "trainables/data/embedded/funding/BTC-USDT_perp_funding_rate_8h.csv" in names
    assert {"search_spaces/laptop.yaml", "reports/templates/index.html.j2"} <= names
    assert not any(n.startswith(("tests/", "benchmarks/")) for n in names)

    inst = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target),
                           str(wheel)], capture_output=True, text=True, timeout=600)
    assert inst.returncode == 0, inst.stderr[-2000:]
    env = {**os.environ, "PYTHONPATH": str(target)}
    code = ("import sys, cluster, trainables.data.candles as c; from cluster.cli import main; "
            f"assert cluster.__file__.startswith({str(target)!r}), cluster.__file__; "
            "print(c.EMBEDDED_DIR); sys.exit(main(['validate', sys.argv[1]]))")
    out = subprocess.run([sys.executable, "-c", code, str(target / "search_spaces" / "laptop.yaml")], cwd=cwd,
                         env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert out.stdout.splitlines()[0].startswith(str(target / "trainables" / "data" / "embedded" / "ohlcv"))
    assert "BTC-USDT" in out.stdout
