"""The data sets `embedseg prepare` knows: where they come from, how they are laid out and split,
and the settings (normalisation, crop size, one-hot masks) the paper used for them.

The three paper data sets are the zip assets of EmbedSeg's GitHub release v0.1.0 (spec §8);
their sha256 sums are not known here (the files cannot be downloaded from this machine), so
they are ``None``: the first download is then *not* verified, its sha256 is printed and should
be pasted into this registry (see docs/data.md). A hash given with ``--sha256`` is always
enforced.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from ..config import DatasetSettings
from ..io import DataError

RELEASE_URL = "https://github.com/juglab/EmbedSeg/releases/download/v0.1.0/{name}.zip"
PAPER_SPLIT_SEED = 1000  # np.random.seed(1000) in EmbedSeg's split_train_test / split_train_val

LAYOUTS = ("embedseg", "dsb-stage1", "usiigaci", "bbbc010", "folder", "synthetic")


@dataclass(frozen=True)
class DatasetSpec:
    """One registry entry.

    `test_split` follows EmbedSeg's ``split_train_test``: a float is a fraction of the sorted
    file list (``by_fraction=True``), an int a number of images; it is only used when the source
    has no test split of its own (EmbedSeg zips have one, which is kept).
    """

    name: str
    layout: str  # expected source layout, one of LAYOUTS
    url: str | None = None
    sha256: str | None = None  # None: print the hash of the first download instead of checking it
    test_split: float | int = 0.1
    dtype: str = "uint16"  # dtype of the stored images
    settings: dict[str, Any] = field(default_factory=dict)  # DatasetSettings fields
    citation: str = ""
    licence: str = ""

    def dataset_settings(self, **overrides: Any) -> DatasetSettings:
        """DatasetSettings for this data set; `overrides` (e.g. normalization) replace the defaults."""
        values = {"name": self.name, **self.settings}
        values.update({k: v for k, v in overrides.items() if v is not None})
        if values.get("normalization", "absolute") != "absolute":
            values["normalization_factor"] = None  # only meaningful for `absolute`
        return DatasetSettings.from_dict(values, source=f"data set {self.name!r}")

    def with_source(self, url: str | None, sha256: str | None) -> "DatasetSpec":
        """Copy pointing at another URL; the registry hash only holds for the registry URL."""
        if url == self.url:
            return dataclasses.replace(self, sha256=sha256 or self.sha256)
        return dataclasses.replace(self, url=url, sha256=sha256)


_ABSOLUTE_16BIT = {"normalization": "absolute", "normalization_factor": 65535.0}
_ABSOLUTE_8BIT = {"normalization": "absolute", "normalization_factor": 255.0}

REGISTRY: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        DatasetSpec(
            name="bbbc010-2012",
            layout="embedseg",
            url=RELEASE_URL.format(name="bbbc010-2012"),
            test_split=0.5,  # 100 images -> 50 test (the release zip has train/ only)
            settings={**_ABSOLUTE_16BIT, "crop_size": 256, "one_hot": True, "val_split": "crop"},
            citation=(
                "C. elegans infection live/dead image set version 1 provided by Fred Ausubel, available from "
                "the Broad Bioimage Benchmark Collection: Ljosa, Sokolnicki, Carpenter, Nature Methods 9:637 "
                "(2012); worm annotations: Wählby et al., Nature Methods 9:714-716 (2012)"
            ),
            licence="BBBC terms of use (https://bbbc.broadinstitute.org/BBBC010)",
        ),
        DatasetSpec(
            name="usiigaci-2017",
            layout="embedseg",
            url=RELEASE_URL.format(name="usiigaci-2017"),
            test_split=5,  # 50 sets -> 45 train/val + 5 test (Tsai et al.)
            settings={**_ABSOLUTE_16BIT, "crop_size": 512},
            citation=(
                "Tsai, Gajda, Sloan, Rares, Shen, Usiigaci: Instance-aware cell tracking in stain-free phase "
                "contrast microscopy enabled by machine learning, SoftwareX 9:230-237 (2019), "
                "doi:10.1016/j.softx.2019.02.007"
            ),
            licence="MIT (Okinawa Institute of Science and Technology, github.com/oist/Usiigaci)",
        ),
        DatasetSpec(
            name="dsb-2018",
            layout="embedseg",
            url=RELEASE_URL.format(name="dsb-2018"),
            test_split=50,  # StarDist subset: 447 train/val + 50 test
            dtype="uint8",
            settings={**_ABSOLUTE_8BIT, "crop_size": 256},
            citation=(
                "Caicedo et al., Nucleus segmentation across imaging experiments: the 2018 Data Science Bowl, "
                "Nature Methods 16:1247-1253 (2019), BBBC038v1; subset: Schmidt et al., MICCAI 2018 (StarDist)"
            ),
            licence="CC0 1.0",
        ),
        DatasetSpec(
            name="synthetic-worms",
            layout="synthetic",
            test_split=0.25,
            settings={**_ABSOLUTE_16BIT, "crop_size": 96, "one_hot": True, "val_split": "crop", "val_fraction": 0.2},
            citation="generated by embedseg.data.synthetic",
            licence="BSD-3-Clause (this project)",
        ),
        DatasetSpec(
            name="synthetic-cells",
            layout="synthetic",
            test_split=0.25,
            settings={**_ABSOLUTE_16BIT, "crop_size": 64, "val_fraction": 0.2},
            citation="generated by embedseg.data.synthetic",
            licence="BSD-3-Clause (this project)",
        ),
        DatasetSpec(
            name="synthetic-nuclei",
            layout="synthetic",
            test_split=0.25,
            dtype="uint8",
            settings={**_ABSOLUTE_8BIT, "crop_size": 64, "val_fraction": 0.2},
            citation="generated by embedseg.data.synthetic",
            licence="BSD-3-Clause (this project)",
        ),
        DatasetSpec(
            name="folder",
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
