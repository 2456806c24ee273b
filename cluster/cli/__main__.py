"""``python -m cluster.cli``: the same as the ``tunefactory`` command."""

from cluster.cli import main

raise SystemExit(main())
