"""The napari plugin (manifest ``embedseg/napari.yaml``, extra ``napari``; docs/napari.md).

- ``reader.py``: a results folder (``results/{run}``) as layers — each data set's test images,
  ground truth and every method's labels per seed, stacked one image per slice, with the
  per-image scores in each labels layer's metadata — and a bioimage.io package of
  `embedseg export` (its test input and the instances of its raw test output).
- ``segment.py``: what the widget runs, without napari or Qt: load a package or checkpoint and
  label an image or a stack of images with :func:`embedseg.inference.segment`.
- ``widget.py``: the dock widget (magicgui): model, device, TTA, clustering, progress.
- ``sample.py``: synthetic nuclei (:mod:`embedseg.data.synthetic`), made offline.

Only this folder imports napari, magicgui or Qt, and nothing in the library imports it: it is
the top floor beside the command line (tests/test_architecture.py).
"""
