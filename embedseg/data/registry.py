"""The data sets `embedseg prepare` knows: where they come from, how they are laid out and split,
and the settings (normalisation, crop size, one-hot masks) the paper used for them.

The three paper data sets are the zip assets of EmbedSeg's GitHub release v0.1.0 (docs/method.md §10);
their sha256 sums are not known here (the files could not be downloaded while this was
written), so they are ``None``: the first download is then trusted, its sha256 is printed and
recorded next to it, and later runs verify the cached file against that record (see
docs/data.md; paste the printed hash here to pin it). A hash given with ``--sha256`` is always
enforced.

The 3D data sets of the follow-up paper (Lalit et al., MedIA 2022) are assets of the same release;
their sha256 sums are the ones torch-em pins for the same URLs (not verified here, no network;
a mismatch fails the download and names the file). Voxel sizes, normalisation and the
train/val/test conventions follow the official example notebooks (``examples/3d/<name>/01-data``);
crop sizes are those of the paper's Table 3.

Per-data-set defaults of the follow-up paper's code (EmbedSeg v0.2.x, issue 30): the 3D sets
split with seed 1000 (v0.2.5 ``split_train_test``), train with the per-channel (``fixed``)
variance term, cluster with the ``current`` preset (min_mask_sum 0, min_unclustered_sum 0,
min_object_size = the data set's smallest object: v0.2.5 ``create_test_configs_dict`` as the 3D
``03-predict`` notebooks call it) and derive the crop size from the objects (``crop_size:
"auto"``, the ``01-data`` notebooks' rule, :func:`embedseg.crops.object_crop_size`). The 2D
paper sets keep the paper code's 1234 / ``paper`` / ``paper`` / fixed crop sizes. A user's
option (``--seed``, ``--crop-size``, ``--variance-loss``, ``--clustering``) overrides each.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from ..dataset_settings import DatasetSettings
from ..io import DataError
from . import names
from .splits import CURRENT_CODE_SPLIT_SEED, PAPER_SPLIT_SEED
from .synthetic import VOXEL_SIZE_3D

AUTO_CROP = "auto"  # crop size from the objects (official 3D notebooks), see embedseg.crops.object_crop_size
RELEASE_URL = "https://github.com/juglab/EmbedSeg/releases/download/v0.1.0/{name}.zip"


@dataclass(frozen=True)
class DatasetSpec:
    """One registry entry.

    `test_split` follows EmbedSeg's ``split_train_test``: a float is a fraction of the sorted
    file list (``by_fraction=True``), an int a number of images; it is only used when the source
    has no test split of its own (EmbedSeg zips have one, which is kept).
    """

    name: str
    layout: str  # layout of the registry download (formats.LAYOUTS), or "synthetic"
    # (For 3D sets `settings` holds "ndim": 3 and "voxel_size": (z, y, x) in µm.)
    url: str | None = None
    sha256: str | None = None  # None: print the hash of the first download instead of checking it
    test_split: float | int = 0.1
    dtype: str = "uint16"  # dtype of the stored images
    split_seed: int = PAPER_SPLIT_SEED  # `prepare --seed` when not given
    settings: dict[str, Any] = field(default_factory=dict)  # DatasetSettings fields
    citation: str = ""
    doi: str = ""  # of the data's publication, for citations in exported models
    licence: str = ""

    def dataset_settings(self, **overrides: Any) -> DatasetSettings:
        """DatasetSettings for this data set; `overrides` (e.g. normalization) replace the defaults."""
        values = {"name": self.name, **self.settings}
        values.update({k: v for k, v in overrides.items() if v is not None})
        if values.get("crop_size") == AUTO_CROP:
            # a placeholder until `prepare` has measured the objects (dataset.json never holds it)
            values["crop_size"] = 8
            values["extra"] = {**values.get("extra", {}), "crop_size_rule": AUTO_CROP}
        if values.get("normalization", "absolute") != "absolute":
            values["normalization_factor"] = None  # only meaningful for `absolute`
        return DatasetSettings.from_dict(values, source=f"data set {self.name!r}")

    def with_source(self, url: str | None, sha256: str | None) -> DatasetSpec:
        """Copy pointing at another URL; the registry hash only holds for the registry URL."""
        if url == self.url:
            return dataclasses.replace(self, sha256=sha256 or self.sha256)
        return dataclasses.replace(self, url=url, sha256=sha256)


_ABSOLUTE_16BIT = {"normalization": "absolute", "normalization_factor": 65535.0}
_ABSOLUTE_8BIT = {"normalization": "absolute", "normalization_factor": 255.0}
# The follow-up paper's 3D training and clustering (EmbedSeg v0.2.x; see the module docstring).
_V02_3D = {"variance_loss": "fixed", "clustering": "current"}


def synthetic_spec(name: str, settings: dict[str, Any]) -> DatasetSpec:
    """A demo set of embedseg.data.synthetic: a quarter held out for testing, 20 % validation
    (more than the paper's 15 % so that a dozen images still give a validation image or two)."""
    return DatasetSpec(
        name=name,
        layout="synthetic",
        test_split=0.25,
        dtype="uint16" if settings["normalization_factor"] == 65535.0 else "uint8",
        settings={"val_fraction": 0.2, **settings},
        citation="generated by embedseg.data.synthetic",
        licence="BSD-3-Clause (this project)",
    )


def cbg_3d_spec(
    name: str, voxel_size: tuple[float, float, float], crop_size: Any = "auto", **fields: Any
) -> DatasetSpec:
    """A 3D data set of the EmbedSeg release (Lalit et al., MedIA 2022), as the official
    notebooks prepare it: 8- or 16-bit volumes, p1–p99.8 normalisation over the volume, the
    v0.2.x split seed, loss and clustering, the crop size from the objects (``auto``)."""
    settings = {"ndim": 3, "voxel_size": voxel_size, "crop_size": crop_size, "normalization": "percentile"}
    settings.update(_V02_3D, normalization_factor=None)
    return DatasetSpec(
        name=name,
        layout="embedseg",
        url=RELEASE_URL.format(name=name),
        split_seed=CURRENT_CODE_SPLIT_SEED,
        settings={**settings, **fields.pop("settings", {})},
        citation=(
            "Lalit, Tomancak, Jug, EmbedSeg: Embedding-based Instance Segmentation for Biomedical "
            "Microscopy Data, Medical Image Analysis 81:102523 (2022)"
        ),
        doi="10.1016/j.media.2022.102523",
        licence="as stated by the EmbedSeg release v0.1.0 (github.com/juglab/EmbedSeg); not recorded here",
        **fields,
    )


REGISTRY: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        DatasetSpec(
            name=names.BBBC010,
            layout="embedseg",
            url=RELEASE_URL.format(name=names.BBBC010),
            test_split=0.5,  # 100 images -> 50 test (the release zip has train/ only)
            settings={**_ABSOLUTE_16BIT, "crop_size": 256, "one_hot": True, "val_split": "crop"},
            citation=(
                "C. elegans infection live/dead image set version 1 provided by Fred Ausubel, available from "
                "the Broad Bioimage Benchmark Collection: Ljosa, Sokolnicki, Carpenter, Nature Methods 9:637 "
                "(2012); worm annotations: Wählby et al., Nature Methods 9:714-716 (2012)"
            ),
            doi="10.1038/nmeth.2083",
            licence="BBBC terms of use (https://bbbc.broadinstitute.org/BBBC010)",
        ),
        DatasetSpec(
            name=names.USIIGACI,
            layout="embedseg",
            url=RELEASE_URL.format(name=names.USIIGACI),
            test_split=5,  # 50 sets -> 45 train/val + 5 test (Tsai et al.)
            settings={**_ABSOLUTE_16BIT, "crop_size": 512},
            citation=(
                "Tsai, Gajda, Sloan, Rares, Shen, Usiigaci: Instance-aware cell tracking in stain-free phase "
                "contrast microscopy enabled by machine learning, SoftwareX 9:230-237 (2019), "
                "doi:10.1016/j.softx.2019.02.007"
            ),
            doi="10.1016/j.softx.2019.02.007",
            licence="MIT (Okinawa Institute of Science and Technology, github.com/oist/Usiigaci)",
        ),
        DatasetSpec(
            name=names.DSB,
            layout="embedseg",
            url=RELEASE_URL.format(name=names.DSB),
            test_split=50,  # StarDist subset: 447 train/val + 50 test
            dtype="uint8",
            settings={**_ABSOLUTE_8BIT, "crop_size": 256},
            citation=(
                "Caicedo et al., Nucleus segmentation across imaging experiments: the 2018 Data Science Bowl, "
                "Nature Methods 16:1247-1253 (2019), BBBC038v1; subset: Schmidt et al., MICCAI 2018 (StarDist)"
            ),
            doi="10.1038/s41592-019-0612-7",
            licence="CC0 1.0",
        ),
        synthetic_spec(
            names.SYNTHETIC_WORMS, {**_ABSOLUTE_16BIT, "crop_size": 96, "one_hot": True, "val_split": "crop"}
        ),
        synthetic_spec(names.SYNTHETIC_CELLS, {**_ABSOLUTE_16BIT, "crop_size": 64}),
        synthetic_spec(names.SYNTHETIC_NUCLEI, {**_ABSOLUTE_8BIT, "crop_size": 64}),
        synthetic_spec(
            names.SYNTHETIC_NUCLEI_3D,
            {**_ABSOLUTE_8BIT, **_V02_3D, "ndim": 3, "voxel_size": VOXEL_SIZE_3D, "crop_size": (16, 64, 64)},
        ),
        # 108 volumes 70×378×401 (uint16); notebook: split_train_test 10 %, split_train_val 15 %.
        # Crop sizes of the paper's Table 3 (here: Organoid 32×200×200, Platynereis-Nuclei 32×136×136,
        # Skull 96×128×128, ISH 80×80×80) stay available through --crop-size.
        # Unannotated block, not scored (01-data notebook mask_start/end_{z,y,x}; v0.2.5 test.py
        # zeroes the predictions there): z 51:72, y 0:152, x 231:408, ends exclusive.
        cbg_3d_spec(
            names.MOUSE_ORGANOID_CELLS,
            (1.0, 0.1733, 0.1733),
            sha256="3695ac340473900ace8c37fd7f3ae0d37217de9f2b86c2341f36b1727825e48b",
            test_split=0.1,
            settings={"ignore_region": [[51, 0, 231], [72, 152, 408]]},
        ),
        # 9 volumes 113×660×700 (uint16); notebook: 2 test and 2 validation volumes (counts).
        cbg_3d_spec(
            names.PLATYNEREIS_NUCLEI,
            (2.031, 0.406, 0.406),
            sha256="448cb7b46f2fe7d472795e05c8d7dfb40f259d94595ad2cfd256bc2aa4ab3be7",
            test_split=2,
            settings={"val_fraction": 2},
        ),
        # 2 volumes (uint16): the zip's test/ holds the test sub-volume (:, :, 256:512) of the
        # second; validation: 15 % of the training crops.
        cbg_3d_spec(
            names.MOUSE_SKULL_NUCLEI,
            (0.2, 0.073, 0.073),
            sha256="3600ec261a48bf953820e0536cacd0bb8a5141be6e7435a4cb0fffeb0caf594e",
            settings={"val_split": "crop"},
        ),
        # 2 volumes 515×648×648 (uint8): the zip's test/ holds the sub-volume (300:405, :, :);
        # validation: 15 % of the training crops.
        cbg_3d_spec(
            names.PLATYNEREIS_ISH_NUCLEI,
            (0.4501, 0.4499, 0.4499),
            sha256="bc9284df6f6d691a8e81b47310d95617252cc98ebf7daeab55801b330ba921e0",
            dtype="uint8",
            settings={"val_split": "crop"},
        ),
        DatasetSpec(
            name=names.FOLDER,
            layout="folder",
            test_split=0.1,
            dtype="any",  # normalisation factor follows the images' dtype (see prepare)
            settings={"crop_size": 256},
            citation="your own data",
        ),
    )
}


def get_spec(name: str) -> DatasetSpec:
    """Registry entry for `name`; unknown names raise DataError listing the known ones."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise DataError(f"data set {name!r} unknown; choose one of {sorted(REGISTRY)}") from None
