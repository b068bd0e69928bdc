"""The notebooks and grids that ship with gapscope (package data; found with importlib.resources)."""
