"""Command-line verbs of ``metarl``: one module per verb with ``add_arguments`` and ``run``."""
