"""``python -m monitor``: the same as the ``feed-monitor`` command."""

from monitor.cli import main

raise SystemExit(main())
