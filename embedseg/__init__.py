"""EmbedSeg and Neven et al. instance segmentation, re-implemented in PyTorch.

The package imports nothing heavy at top level so that `embedseg --help` and the baseline
runners (which live in other conda environments) work without torch being imported.
"""

__version__ = "0.1.0"  # the one place: pyproject.toml reads it (dynamic version)
