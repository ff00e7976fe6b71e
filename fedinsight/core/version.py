"""The package version, in a module of its own so that any layer can read it without importing the package root
(whose lazy Python API would otherwise tie every layer to the simulation driver)."""

__version__ = "0.1.0"
