"""3-D splits and the ignore region are the official EmbedSeg 0.2.5 ones (issue 30, item 4).

The official functions run in .venv-official on the same file names as ours: the notebooks'
``split_train_test`` / ``split_train_val`` (``01-data.ipynb`` of each CBG set; their default seed
1000) on empty files, ``split_train_crops`` for the sets validated on crops, and the lines of
``test.py`` that zero the predictions in ``mask_region`` before ``matching_dataset``. Ours:
`embedseg prepare` on a made release zip of the same names (its recorded split seed and test
list), :func:`embedseg.crops.hold_out_val_crops` with that seed, `embedseg evaluate` with the
data set's ignore region. Skipped when .venv-official is absent.
"""

from __future__ import annotations

import json
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest
import tifffile

from benchmarks import compare_official
from embedseg import evaluate
from embedseg.cli import build_parser
from embedseg.crops import CROP_FOLDERS, hold_out_val_crops
from embedseg.data import names, prepare
from embedseg.dataset_settings import DatasetSettings

pytestmark = pytest.mark.skipif(
    not compare_official.OFFICIAL_PYTHON.exists(),
    reason=f"{compare_official.OFFICIAL_PYTHON} absent: build it with `make venv-official`",
)

# The official side: read a JSON job, run the official functions, print JSON.
OFFICIAL = r"""
import json, os, sys
from contextlib import redirect_stdout
import numpy as np
import tifffile
job = json.load(open(sys.argv[1]))
root = job["root"]
if job["kind"] == "split":
    from EmbedSeg.utils.preprocess_data import split_train_test, split_train_val
    project = "p"
    for sub in ("images", "masks"):
        os.makedirs(os.path.join(root, project, "download", "train", sub))
        for name in job["train"]:
            open(os.path.join(root, project, "download", "train", sub, name + ".tif"), "w").close()
        if job["test"]:
            os.makedirs(os.path.join(root, project, "download", "test", sub), exist_ok=True)
            for name in job["test"]:
                open(os.path.join(root, project, "download", "test", sub, name + ".tif"), "w").close()
    with redirect_stdout(sys.stderr):
        if job["split_test"] is not None:
            split_train_test(root, project, "train", **job["split_test"])
        split_train_val(root, project, "train", **job["split_val"])
    listed = {s: sorted(n[:-4] for n in os.listdir(os.path.join(root, project, s, "images"))) for s in ("train", "val", "test")}
elif job["kind"] == "crops":
    from EmbedSeg.utils.preprocess_data import split_train_crops
    folder = os.path.join(root, "crops", "p", "train")
    for sub in ("images", "masks", "center-medoid"):
        os.makedirs(os.path.join(folder, sub))
        for name in job["crops"]:
            open(os.path.join(folder, sub, name), "w").close()
    with redirect_stdout(sys.stderr):
        split_train_crops("p", "medoid", os.path.join(root, "crops"), subset=0.15)
    listed = sorted(os.listdir(os.path.join(root, "crops", "p", "val", "images")))
else:
    from EmbedSeg.utils.metrics import matching_dataset
    instances = tifffile.imread(job["gt"])
    instance_map = tifffile.imread(job["pred"])
    mask_region = job["mask_region"]
    instance_map[
        int(mask_region[0][0]) : int(mask_region[1][0]),
        int(mask_region[0][1]) : int(mask_region[1][1]),
        int(mask_region[0][2]) : int(mask_region[1][2]),
    ] = 0  # Z Y X, as test.py
    listed = [
        matching_dataset(y_true=[instances], y_pred=[instance_map], thresh=t, show_progress=False).accuracy
        for t in job["taus"]
    ]
print(json.dumps(listed))
"""

# Per data set: (names in the zip's train/, in its test/, the notebook's split_train_test and
# split_train_val arguments) as the 01-data notebooks of EmbedSeg 0.2.5 call them.
NOTEBOOKS = {
    names.MOUSE_ORGANOID_CELLS: (30, 0, {"subset": 0.10}, {"subset": 0.15}),
    names.PLATYNEREIS_NUCLEI: (9, 0, {"subset": 2, "by_fraction": False}, {"subset": 2, "by_fraction": False}),
    names.MOUSE_SKULL_NUCLEI: (2, 1, None, {"subset": 0.0}),
    names.PLATYNEREIS_ISH_NUCLEI: (2, 1, None, {"subset": 0.0}),
}


def official(job: dict, folder: Path) -> object:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "job.json").write_text(json.dumps({**job, "root": str(folder / "official")}))
    result = subprocess.run(
        [str(compare_official.OFFICIAL_PYTHON), "-c", OFFICIAL, str(folder / "job.json")],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(result.stdout.splitlines()[-1])


def release_zip(folder: Path, dataset: str, train: list[str], test: list[str]) -> Path:
    """A made release zip: a small labelled volume per name (shuffled file names, sorted by the split)."""
    archive = folder / f"{dataset}.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for part, part_names in (("train", train), ("test", test)):
            for i, name in enumerate(part_names):
                labels = np.zeros((8, 16, 16), np.uint16)
                labels[1:4, 2 + i % 5 : 8 + i % 5, 3:9], labels[4:7, 9:14, 8:13] = 1, 2
                for sub, array in (("images", (100 + 1000 * labels).astype(np.uint16)), ("masks", labels)):
                    path = folder / f"{sub}.tif"
                    tifffile.imwrite(path, array.astype(np.uint8) if "ISH" in dataset and sub == "images" else array)
                    zf.write(path, f"{dataset}/{part}/{sub}/{name}.tif")
    return archive


@pytest.mark.parametrize("dataset", list(NOTEBOOKS))
def test_3d_split_is_the_official_notebooks(tmp_path: Path, dataset: str) -> None:
    n_train, n_test, split_test, split_val = NOTEBOOKS[dataset]
    rng = np.random.default_rng(len(dataset))
    train = [f"vol_{k:03d}" for k in rng.permutation(100)[:n_train]]
    test = [f"test_{k}" for k in range(n_test)]
    job = {"kind": "split", "train": train, "test": test, "split_test": split_test, "split_val": split_val}
    expected = official(job, tmp_path)
    archive = release_zip(tmp_path, dataset, train, test)
    args = build_parser("prepare").parse_args(
        ["prepare", dataset, "--out", str(tmp_path / "ours"), "--source", str(archive)]
    )
    prepare.run(args)
    settings = DatasetSettings.load(tmp_path / "ours")
    assert settings.extra["split_seed"] == 1000
    ours = {
        s: sorted(p.stem for p in (tmp_path / "ours" / s / "images").glob("*.tif")) for s in ("train", "val", "test")
    }
    assert ours == expected
    if settings.val_split == "crop":  # Skull, ISH: 15 % of the training crops, official split_train_crops
        crops = [f"{name}_{j:03d}.tif" for name in train for j in range(20)]
        held = official({"kind": "crops", "crops": crops}, tmp_path / "crops-job")
        folder = tmp_path / "crops"
        for sub in CROP_FOLDERS:
            (folder / "train" / sub).mkdir(parents=True)
            for name in crops:
                tifffile.imwrite(folder / "train" / sub / name, np.zeros((2, 2), np.uint8))
        assert sorted(hold_out_val_crops(folder, settings.val_fraction, settings.extra["val_split_seed"])) == held


def test_3d_evaluation_with_the_ignore_region_is_the_official(tmp_path: Path) -> None:
    """Organoid's block on a made 80 × 160 × 420 case: nuclei outside, inside and across it."""
    shape, region = (80, 160, 420), [[51, 0, 231], [72, 152, 408]]
    rng = np.random.default_rng(3)
    gt = np.zeros(shape, np.uint16)
    for k, (z, y, x) in enumerate([(10, 20, 20), (30, 100, 100), (60, 60, 100), (40, 150, 300), (75, 10, 300)], 1):
        gt[z - 4 : z + 4, y - 8 : y + 8, x - 8 : x + 8] = k
    pred = gt.copy()
    pred[30:34, 92:108, 96:100] = 0  # one nucleus cut: a lower IoU
    for z, y, x in rng.integers((51, 0, 231), (64, 140, 396), size=(6, 3)):  # false positives in the block
        pred[z : z + 6, y : y + 10, x : x + 10] = pred.max() + 1
    pred[48:56, 60:70, 225:240] = pred.max() + 1  # one across its border at x 231, z 51
    masks = tmp_path / "data" / "test" / "masks"
    masks.mkdir(parents=True)
    tifffile.imwrite(masks / "v.tif", gt)
    (tmp_path / "pred").mkdir()
    tifffile.imwrite(tmp_path / "pred" / "v.tif", pred)
    (tmp_path / "data" / "dataset.json").write_text(json.dumps({"ndim": 3, "ignore_region": region}))
    taus = [round(t, 2) for t in np.arange(0.1, 0.95, 0.1)]
    job = {"kind": "match", "gt": str(masks / "v.tif"), "pred": str(tmp_path / "pred" / "v.tif"), "mask_region": region}
    expected = official({**job, "taus": taus}, tmp_path)
    scores, _ = evaluate.score_folders(masks, tmp_path / "pred")
    ours = scores.set_index("tau").loc[taus, "ap"].to_numpy()
    np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-12)
    unmasked, _ = evaluate.score_folders(masks, tmp_path / "pred", ignore_region=None)
    assert (unmasked.set_index("tau").loc[taus, "ap"].to_numpy() < ours).all()
