"""What each pretrained model was trained on, and whether that contains a test set here.

A zero-shot score on a test set the model was trained on is not zero-shot. This registry
states, per method with pretrained weights, the training data that overlap the data sets of
this pipeline, each statement with its source; :func:`status` turns it into the marker of Table 1
and the comparison page. What no source states is ``unknown``, never ``clean``. Standard-library
data: updating it needs no code.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..data import names

CONTAINS = "contains"  # the model's training data contain the test set or its source data set
UNKNOWN = "unknown"  # no source says either way
MARKER = "‡"  # after a method's name in Table 1 where its training data contain the test set


@dataclass(frozen=True)
class Statement:
    """One sourced statement: the model's training data include `datasets` (names of
    :mod:`embedseg.data.names`), as `what` says, according to `source`."""

    datasets: tuple[str, ...]
    what: str
    source: str


_EMBEDSEG_SETS = (
    names.MOUSE_ORGANOID_CELLS,
    names.PLATYNEREIS_NUCLEI,
    names.MOUSE_SKULL_NUCLEI,
    names.PLATYNEREIS_ISH_NUCLEI,
)
_MICRO_SAM_LM = (
    Statement(
        (names.DSB, *_EMBEDSEG_SETS),
        "µSAM's LM generalist lists the StarDist subset of DSB 2018 and the EmbedSeg data sets among its 14 training sets",
        "micro-sam repository, doc/datasets/lm_v4.md",
    ),
)
_CELLPOSE_NUCLEI = Statement(
    (names.DSB,),
    "Cellpose's nuclei training set includes images of the 2018 Data Science Bowl",
    "Stringer et al. 2021, Nature Methods 18:100 (Methods, nuclear data set)",
)
_CELLPOSE_SAM = (
    _CELLPOSE_NUCLEI,
    Statement(
        (),
        "Cellpose-SAM was trained on the Cellpose training sets (cyto and nuclei) among others; whether the "
        "EmbedSeg data sets are in `cpsam` is not stated (for cpsam_v2 and the dino models the maintainers say they are)",
        "Pachitariu, Rariden, Stringer 2025, bioRxiv 10.1101/2025.04.28.651001; MouseLand/cellpose issue 1389",
    ),
)
# Method name -> sourced statements about its pretrained model's training data.
TRAINING_DATA: dict[str, tuple[Statement, ...]] = {
    "cellpose-public": (_CELLPOSE_NUCLEI,),
    "cellpose-sam": _CELLPOSE_SAM,
    "cellpose-sam-trained": _CELLPOSE_SAM,  # fine-tuned here, pretrained on the same
    "micro-sam-ais": _MICRO_SAM_LM,
    "micro-sam-apg": _MICRO_SAM_LM,
    "instanseg": (
        Statement(
            (),
            "the published models' training sets are listed by the authors; not checked against these data sets",
            "Goldsborough et al. 2024, arXiv 2408.15954",
        ),
    ),
}


def pretrained(method: str) -> bool:
    """Whether `method` starts from published weights (and so may have seen a test set)."""
    return method in TRAINING_DATA


def status(method: str, dataset: str) -> tuple[str, str]:
    """(status, sources): ``contains`` with the statements saying so, ``unknown`` for a pretrained
    model no source places `dataset` in, ("", "") for a method trained here from scratch."""
    if not pretrained(method):
        return "", ""
    found = [s for s in TRAINING_DATA[method] if dataset in s.datasets]
    if found:
        return CONTAINS, "; ".join(f"{s.what} ({s.source})" for s in found)
    return UNKNOWN, "; ".join(s.source for s in TRAINING_DATA[method])


def text(method: str, dataset: str) -> str:
    """The words of the tables' training-data column."""
    kind, _ = status(method, dataset)
    return {CONTAINS: f"{MARKER} trained on it", UNKNOWN: "unknown", "": "trained here"}[kind]


NOTE = (
    f"{MARKER} = the pretrained model's training data contain this test set or the data set it was cut from "
    "(the score is not zero-shot); unknown = no source says whether they do (not the same as clean). "
    "Sources: embedseg/report/contamination.py, docs/baselines.md."
)
