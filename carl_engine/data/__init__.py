"""Data files shipped with the engine (read with importlib.resources): flavors.json."""
