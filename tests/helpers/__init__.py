"""Pieces the test modules share: toy task families, small configs and agents, comparisons.

Imported as ``helpers`` because pytest puts tests/ on ``sys.path`` (tests/ has no
``__init__.py``: its modules are imported by their base names); a subprocess that needs them
puts tests/ on ``PYTHONPATH``. A test module imports shared pieces from here, never from another
test module.
"""
