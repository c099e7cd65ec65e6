"""Figures from a hand-made run folder: files written, colours consistent across panels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from embedseg.cli import main
from embedseg.core.labels import flatten_labels
from embedseg.data.synthetic import make_cells, make_worms
from embedseg.io import read_image, write_labels, write_tiff
from embedseg.layout import VAL_OBJECT_IOU, VAL_PIXEL_MIOU
from embedseg.report.figures import (
    ap_curves,
    colour_labels,
    instance_lut,
    match_to_gt,
    method_colours,
    qualitative_panel,
    training_curves,
)
from embedseg.report.results import TAUS, collect, training_logs

DS = "synthetic-cells"
OWN = "otsu-watershed"  # a method of one's own (config `methods:`), unknown to the registry here


def write_scores(path: Path, names: list[str], ap_at_050: float) -> None:
    rows = [
        dict(image=n, tau=t, tp=1, fp=0, fn=0, ap=ap_at_050 - (t - 0.5) + 0.05 * i)
        for i, n in enumerate(names)
        for t in TAUS
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(path, index=False)


def write_log(path: Path, epochs: int, start: float, metric: str = VAL_OBJECT_IOU) -> None:
    """A log.csv as the methods write it: EmbedSeg logs the object IoU, the U-Net the pixel mIoU."""
    epoch = np.arange(epochs)
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(
        {
            "epoch": epoch,
            "lr": 5e-4,
            "train_loss": start / (1 + epoch),
            "val_loss": start / (1 + 0.8 * epoch),
            metric: 1 - 0.6 / (1 + epoch),
            "seconds": 1.0,
        }
    ).to_csv(path, index=False)


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("results") / "demo"
    names = []
    for index in range(2):
        image, labels = make_cells(np.random.default_rng([7, index]), 96)
        name = f"cells_{index:03d}.tif"
        names.append(name)
        write_tiff(run / "data" / DS / "test" / "images" / name, image)
        write_labels(run / "data" / DS / "test" / "masks" / name, labels)
        # EmbedSeg misses one cell; the U-Net merges the first two cells into one.
        missed = np.where(labels == 1, 0, labels)
        merged = np.where(labels == 2, 1, labels)
        for seed in (0, 1):
            write_labels(run / "predictions" / DS / "embedseg-medoid-tta" / f"seed{seed}" / name, missed)
        write_labels(run / "predictions" / DS / "3class-unet" / "seed0" / name, merged)
        write_labels(run / "predictions" / DS / "embedseg-centroid-notta" / "seed0" / name, labels)
        write_labels(run / "predictions" / DS / OWN / "seed0" / name, merged)
    for seed, ap in ((0, 0.8), (1, 0.7)):
        write_scores(run / "scores" / DS / "embedseg-medoid-tta" / f"seed{seed}.csv", names, ap)
        write_log(run / "models" / DS / "embedseg-medoid" / f"seed{seed}" / "log.csv", 5, 3.0 + seed)
    write_scores(run / "scores" / DS / "3class-unet" / "seed0.csv", names, 0.5)
    write_scores(run / "scores" / DS / "embedseg-centroid-notta" / "seed0.csv", names, 0.65)
    write_scores(run / "scores" / DS / OWN / "seed0.csv", names, 0.4)
    write_log(run / "models" / DS / "3class-unet" / "seed0" / "log.csv", 4, 1.0, VAL_PIXEL_MIOU)
    marker = run / "predictions" / DS / "stardist" / "NOT_RUN.txt"
    marker.parent.mkdir(parents=True)
    marker.write_text("stardist is not installed")
    return run


def test_matched_predictions_take_their_ground_truth_colour() -> None:
    gt = np.zeros((6, 8), np.uint16)
    gt[:3, :4], gt[3:, :4], gt[:, 5:] = 7, 9, 3
    pred = np.zeros_like(gt)
    pred[:3, :3] = 40  # IoU 9/12 with GT 7
    pred[3:, :2] = 41  # IoU 6/12 = 0.5 with GT 9: not above 0.5, so unmatched
    pred[:, 6:] = 42  # IoU 12/18 with GT 3
    assert match_to_gt(gt, pred) == {40: 7, 42: 3}
    lut = instance_lut()
    gt_colours = {3: 0, 7: 1, 9: 2}
    gt_rgb = colour_labels(gt, gt_colours, 3, lut)
    pred_rgb = colour_labels(pred, {p: gt_colours[g] for p, g in match_to_gt(gt, pred).items()}, 3, lut)
    np.testing.assert_array_equal(pred_rgb[0, 0], gt_rgb[0, 0])  # 40 ↔ 7
    np.testing.assert_array_equal(pred_rgb[0, 7], gt_rgb[0, 7])  # 42 ↔ 3
    colours_in_gt = {tuple(gt_rgb[y, x]) for y, x in ((0, 0), (5, 0), (0, 7))}
    assert len(colours_in_gt) == 3 and tuple(pred_rgb[5, 0]) not in colours_in_gt  # unmatched: a fresh colour
    assert not pred_rgb[pred == 0].any() and not gt_rgb[gt == 0].any()  # background black


def test_one_hot_stack_flattens_to_one_label_per_object() -> None:
    _, stack = make_worms(np.random.default_rng(3), 64)
    flat = flatten_labels(stack)
    assert flat.shape == stack.shape[1:]
    assert set(np.unique(flat)) - {0} <= set(range(1, stack.shape[0] + 1))
    np.testing.assert_array_equal(flat > 0, stack.any(axis=0))


def test_cli_draws_every_figure(results: Path, tmp_path: Path) -> None:
    out = tmp_path / "figures"
    assert main(["figures", str(results), "--out", str(out)]) == 0
    for stem in (f"fig1_{DS}", "ap_curves", "training_curves"):
        for suffix in (".png", ".pdf"):
            assert (out / f"{stem}{suffix}").stat().st_size > 10_000, stem + suffix
    panel = read_image(out / f"fig1_{DS}.png")
    assert panel.shape[1] > 1000 and panel.shape[0] > 300  # 7 in wide at 200 dpi, two rows
    curves = read_image(out / "ap_curves.png")
    assert np.unique(curves.reshape(-1, curves.shape[-1]), axis=0).shape[0] > 50  # lines and bands, not blank


def test_own_method_has_its_panel_and_curve(results: Path) -> None:
    """A method of one's own gets a Fig. 1 column (after the built-in competitor, before
    EmbedSeg) and an AP curve, under its name."""
    import matplotlib.pyplot as plt

    collection = collect(results)
    panel, curves = qualitative_panel(results, collection, DS), ap_curves(collection)
    try:
        titles = [ax.get_title() for ax in panel.axes if ax.get_title()]
        assert titles == ["Input", "Ground truth", "3-Class U-Net", "Neven et al.", OWN, "EmbedSeg"]
        legend = [text.get_text() for text in curves.legends[0].get_texts()]
        assert f"{OWN} (n = 1)" in legend
    finally:
        plt.close(panel)
        plt.close(curves)


def test_object_iou_and_pixel_miou_have_their_own_axes(results: Path) -> None:
    """EmbedSeg's object IoU and the U-Net's pixel mIoU are different quantities: one panel each."""
    import matplotlib.pyplot as plt

    logs = training_logs(results)
    fig = training_curves(logs)
    try:
        loss, object_iou, pixel_miou = fig.axes
        assert "object IoU" in object_iou.get_title() and "pixel mIoU" in pixel_miou.get_title()
        assert len(object_iou.lines) == 2 and len(pixel_miou.lines) == 1  # two EmbedSeg seeds, one U-Net run
        assert len(loss.lines) == 2 * 3  # train and val loss of every run
    finally:
        plt.close(fig)


def test_missing_prediction_is_an_error_naming_the_file(results: Path, tmp_path: Path, capsys) -> None:
    folder = results / "predictions" / DS / "3class-unet" / "seed0"
    folder.rename(folder.with_name("moved"))
    try:
        assert (
            main(
                [
                    "figures",
                    str(results),
                    "--out",
                    str(tmp_path / "f"),
                    "--methods",
                    "embedseg-medoid-tta",
                    "3class-unet",
                ]
            )
            == 2
        )
    finally:
        folder.with_name("moved").rename(folder)
    assert "3class-unet/seed0/cells_00" in capsys.readouterr().err


def test_method_colours_agree_across_figures() -> None:
    curves = method_colours(["3class-unet", "embedseg-medoid-tta", "embedseg-centroid-notta", "my-method"])
    training = method_colours(["embedseg-centroid", "embedseg-medoid", "3class-unet"])
    assert training["embedseg-medoid"] == curves["embedseg-medoid-tta"]  # EmbedSeg's model
    assert training["embedseg-centroid"] == curves["embedseg-centroid-notta"]  # Neven et al.'s model
    assert training["3class-unet"] == curves["3class-unet"]
    assert len(set(curves.values())) == len(curves)


def test_training_curves_fit_their_titles_and_mark_the_runs_still_rising() -> None:
    """Two data sets (rows, named on the left); column titles once, inside their column; the
    still-rising EmbedSeg run ends in a marker, the flat U-Net run does not."""
    import matplotlib.pyplot as plt

    epochs = np.arange(10)
    rising = dict(model="embedseg-medoid", seed=1, val_iou=0.3 + 0.05 * epochs, val_pixel_miou=np.nan)
    flat = dict(model="3class-unet", seed=1, val_iou=np.nan, val_pixel_miou=np.full(10, 0.7))
    logs = pd.concat(
        [
            pd.DataFrame({"epoch": epochs, "train_loss": 1.0, "val_loss": 1.0, "seconds": 1.0, "dataset": ds, **run})
            for ds in ("synthetic-nuclei-long-name", "synthetic-worms")
            for run in (rising, flat)
        ]
    )
    fig = training_curves(logs)
    try:
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        axes = np.array(fig.axes).reshape(2, 3)
        titles = [ax.title for ax in axes[0]]
        assert all(t.get_text() for t in titles) and not any(ax.get_title() for ax in axes[1])
        boxes = [t.get_window_extent(renderer) for t in titles]
        for left, right in zip(boxes, boxes[1:]):
            assert left.x1 < right.x0  # the titles no longer run into each other
        for box, ax in zip(boxes, axes[0]):
            column = ax.get_tightbbox(renderer)
            assert column.x0 - 1 <= box.x0 and box.x1 <= column.x1 + 1
        assert [ax.get_ylabel().split("\n")[0] for ax in axes[:, 0]] == [
            "synthetic-nuclei-long-name",
            "synthetic-worms",
        ]
        _, object_iou, pixel_miou = axes[0]
        assert len(object_iou.collections) == 1 and not pixel_miou.collections  # rising marked, flat not
        legend = [text.get_text() for text in fig.legends[0].get_texts()]
        assert any(label.startswith("not converged") for label in legend)
    finally:
        plt.close(fig)
