"""Which of the project's pinned requirements a cluster lacks: ``submit``'s probe job runs this there.

``tunefactory submit`` first sends a few-second job whose entrypoint is
``python -m cluster.remote.requirements '<JSON list>'``: it runs in the cluster's own
Python, before anything is installed, so it may use the standard library and
``packaging`` only (a dependency of Ray itself). It prints one line,
``tunefactory-requirements: {"missing": [...], "python": "3.11.7"}``: the requirements
whose marker applies there and that are not installed in a matching version. The sweep's
pip runtime environment then installs exactly those, or nothing at all.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence

#: Prefix of the one result line in the probe job's log.
RESULT_PREFIX = "tunefactory-requirements: "


def installed_version(name: str) -> str | None:
    """The version of the installed distribution ``name`` in this Python (None if absent)."""
    import importlib.metadata as md

    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return None


def missing(requirements: Sequence[str], *,
            installed: Callable[[str], str | None] = installed_version) -> list[str]:
    """The requirements this Python does not satisfy, in their order.

    A requirement whose environment marker does not apply here (``tensorflow`` on a
    non-x86 machine, say) is not missing. One with extras (``tensorflow[and-cuda]``)
    always counts as missing: whether the extras' packages are there is pip's to check.
    """
    from packaging.requirements import Requirement

    out = []
    for line in requirements:
        req = Requirement(line)
        if req.marker is not None and not req.marker.evaluate():
            continue
        have = installed(req.name)
        if req.extras or have is None or not req.specifier.contains(have, prereleases=True):
            out.append(line)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Print the result line for the JSON list of requirements in ``argv[0]``."""
    args = list(sys.argv[1:] if argv is None else argv)
    reqs = json.loads(args[0])
    print(RESULT_PREFIX + json.dumps({"missing": missing(reqs), "python": sys.version.split()[0]}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
