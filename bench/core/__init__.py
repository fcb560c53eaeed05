"""The bottom layer every other package may import: errors, io, the registry, hyperparameter
helpers, the settings and source value types. It imports nothing of the project's above it."""

__version__ = "0.1.0"
