"""``python -m meta_rl`` is ``metarl``."""

from meta_rl.cli import main

raise SystemExit(main())
