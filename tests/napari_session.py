"""A headless napari session for tests/test_napari.py, run by the napari venv's interpreter
(`make venv-napari`) with Qt's offscreen platform: it opens a results folder and a package with
the plugin's reader, opens the sample data, runs the segmentation widget on the results' image
stack with the package, and writes what it saw to OUT/session.json (and the labels to
OUT/labels.npy) for the test to check.

The viewer is napari's ViewerModel (layers, readers, sample data, plugins) without its canvas:
Qt's offscreen platform has no OpenGL, which napari's vispy canvas needs to draw any layer
(napari.Viewer(show=False) would need a display server such as Xvfb). The widget is napari's,
found through the plugin's manifest, with its Qt controls and worker thread.

    python tests/napari_session.py RESULTS PACKAGE OUT
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
from napari.components import ViewerModel
from napari.plugins import _initialize_plugins
from napari.qt import get_qapp
from npe2 import PluginManager

PLUGIN = "embedseg-pipeline"


def describe(layers) -> list[dict]:
    return [
        {
            "name": layer.name,
            "type": type(layer).__name__,
            "shape": list(layer.data.shape),
            "scores": layer.metadata.get("scores"),
            "images": layer.metadata.get("images"),
            "model": layer.metadata.get("embedseg_model"),
        }
        for layer in layers
    ]


def wait_for(widget, seconds: float = 300) -> None:
    """Process Qt events until the widget's run has finished (its button is enabled again)."""
    app = get_qapp()
    deadline = time.monotonic() + seconds
    while not widget.run_button.enabled and time.monotonic() < deadline:
        app.processEvents()
        time.sleep(0.02)
    for _ in range(20):  # the returned/finished signals' slots run in this thread
        app.processEvents()


def main(results: str, package: str, out: str) -> None:
    get_qapp()
    _initialize_plugins()  # what napari.Viewer does first: discover the installed plugins
    viewer = ViewerModel()
    session: dict = {"results": describe(viewer.open(results, plugin=PLUGIN))}
    session["package"] = describe(viewer.open(package, plugin=PLUGIN))
    session["sample"] = describe(viewer.open_sample(PLUGIN, "synthetic-nuclei"))
    (segment,) = (w for w in PluginManager.instance().iter_widgets() if w.command.startswith(f"{PLUGIN}."))
    widget = segment.get_callable()(napari_viewer=viewer)
    # the package opened above is the default model, and its clustering sets the controls
    session["default_model"] = str(widget.model.value)
    session["controls"] = {
        "clustering": widget.clustering.value,
        "min_object_size": widget.min_object_size.value,
        "seed_thresh": widget.seed_thresh.value,
        "fg_thresh": widget.fg_thresh.value,
        "tta": widget.tta.value,
    }
    session["devices"] = list(widget.device.choices)
    widget.device.value = "cpu"
    stack = next(layer for layer in viewer.layers if layer.name.endswith(": image"))
    widget.image.value = stack
    before = len(viewer.layers)
    started = time.monotonic()
    worker = widget.run()
    wait_for(widget)
    session["seconds"] = time.monotonic() - started
    session["status"] = widget.status.value
    session["progress"] = [widget.progress.value, widget.progress.max]
    added = list(viewer.layers)[before:]
    session["added"] = describe(added)
    session["worker"] = worker is not None
    if added:
        np.save(Path(out) / "labels.npy", added[0].data)
        session["added_metadata"] = added[0].metadata
    widget.model.value = Path(out) / "no-model"  # a mistake: the widget says so in one line
    widget.run()
    wait_for(widget)
    session["error"] = widget.status.value
    (Path(out) / "session.json").write_text(json.dumps(session, indent=1, default=str))


if __name__ == "__main__":
    main(*sys.argv[1:4])
