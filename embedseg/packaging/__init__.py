"""A trained network as a bioimage.io model package (spec 0.5) with its evidence; `embedseg export`
(embedseg/export.py) is the step that drives it.

One job per file, listed from the bottom up; a file imports only the files above it in this
list, never one below:

- ``runs.py``: the trained runs offered for export; reads each checkpoint once and keeps the
  best run's (highest validation IoU) for everything after.
- ``facts.py``: :class:`~embedseg.packaging.facts.ModelFacts`, the frozen record of everything a
  package states about its model (data set, training, selection, scores, clustering, TTA,
  citations, code version), gathered once from the chosen checkpoint, the registry and the
  score files.
- ``describe.py``: the bioimage.io description (``rdf.yaml``: tensors, axes, preprocessing,
  weights, ``config.embedseg``) of ModelFacts and the package's files.
- ``card.py``: the model card (README.md), rendered from ModelFacts alone.
- ``build.py``: the files (weights, TorchScript, test tensors, cover, card), the zip and its
  validation by bioimageio.core.

They import the floors below (core, io, data, models, inference) and report.results beside
them. embedseg/export.py, the face of the `export` step, is what imports this folder; nothing
here imports it back. bioimageio.spec/core are imported inside the functions that need them, so
that the extra ``export`` stays optional: ``embedseg --help`` and loading a package for
``predict`` work without it.
"""
