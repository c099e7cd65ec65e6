"""Images of any size (issue 27): the receptive field and exact tiles of the real ERF-Net,
out-of-core prediction of OME-Zarr images with one label per object across block borders, the
OME-Zarr label groups (ome-zarr-py's reader), and predict → evaluate on an OME-Zarr image."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

pytest.importorskip("zarr")

from embedseg import blocks, cli, zarr_io  # noqa: E402
from embedseg.core.cluster import ClusterParams, cluster  # noqa: E402
from embedseg.dataset_settings import DatasetSettings  # noqa: E402
from embedseg.inference import network_overlap, predict_raw  # noqa: E402
from embedseg.models.erfnet import BranchedERFNet, receptive_radius  # noqa: E402

SETTINGS = DatasetSettings(name="toy", normalization_factor=255.0)


@pytest.fixture(autouse=True)
def one_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_receptive_radius_bounds_the_input_gradient():
    """The walked radius (629 px) is an upper bound of the measured dependence (± 615 px), close to it."""
    torch.manual_seed(0)
    model = BranchedERFNet().eval()
    radius = receptive_radius(model)
    width = 2048
    image = torch.randn(1, 1, 16, width, requires_grad=True)
    model(image)[0, :, 8, width // 2].sum().backward()
    reached = torch.nonzero(image.grad[0, 0].abs().sum(0)).flatten()
    measured = max(width // 2 - int(reached.min()), int(reached.max()) - width // 2)
    assert measured <= radius <= measured + 16
    assert network_overlap(model) == 632 and radius == 629


@pytest.mark.parametrize("tta", [False, True])
def test_tiles_equal_the_whole_image_at_the_default_overlap(tta):
    """A 64 × 3072 strip cut into tiles along x: the tiles keep 632 px from every cut border and
    reproduce the whole strip's raw outputs to float rounding; the old 64 px overlap did not."""
    torch.manual_seed(0)
    model = BranchedERFNet().eval()
    image = np.random.default_rng(0).random((64, 3072)).astype(np.float32)
    whole = predict_raw(model, image, tta=tta)
    tiled = predict_raw(model, image, tta=tta, tile_size=(64, 1280))  # enlarged to 2528 along x
    assert (whole - tiled).abs().max() < 1e-5
    if not tta:
        old = predict_raw(model, image, tta=False, tile_size=(64, 256), overlap=64)
        assert (whole - old).abs().max() > 1e-3


def disc_image(size: int, core: int, rng: np.random.Generator) -> np.ndarray:
    """uint8 discs (radius 10–14 px) on noise: a grid of them and a row across every core border."""
    canvas = rng.normal(30, 8, (size + 32, size + 32))  # 16 px margins: discs may be cut by the edge
    centres = [(y, x) for y in range(24, size, 64) for x in range(24, size, 64)]
    centres += [(b + int(rng.integers(-6, 7)), x) for b in range(core, size, core) for x in range(40, size, 64)]
    centres += [(y, b + int(rng.integers(-6, 7))) for b in range(core, size, core) for y in range(8, size, 64)]
    yy, xx = np.mgrid[-16:16, -16:16]
    for y, x in centres:
        canvas[y : y + 32, x : x + 32][yy**2 + xx**2 < rng.uniform(10, 14) ** 2] = 200
    return np.clip(canvas[16:-16, 16:-16], 0, 255).astype(np.uint8)


def seeding_erfnet(image: np.ndarray) -> BranchedERFNet:
    """The real ERF-Net with random weights, its seed head scaled so that about half the pixels
    are foreground and 3 % start seeds, small random offsets and bandwidths of ~16 px objects."""
    torch.manual_seed(0)
    model = BranchedERFNet().eval()
    logit = predict_raw(model, image[:512, :512] / 255.0, tta=False)[-1].numpy()
    lo, hi = np.percentile(logit, [50, 97])
    with torch.no_grad():
        seed_head, embedding_head = model.decoders[1].output_conv, model.decoders[0].output_conv
        seed_head.weight.mul_(2.5 / (hi - lo))
        seed_head.bias.sub_(float(lo)).mul_(2.5 / (hi - lo))
        embedding_head.weight[:, :2].normal_(0, 0.002)
        embedding_head.bias[2:4].fill_(0.8)
    return model


def one_to_one(a: np.ndarray, b: np.ndarray) -> tuple[int, int, int]:
    """(objects of a, objects of b, distinct (a, b) pairs on their union): all equal iff the two
    label images hold the same objects."""
    pairs = np.unique(np.stack([a.ravel().astype(np.int64), b.ravel().astype(np.int64)]), axis=1)
    pairs = pairs[:, (pairs[0] > 0) | (pairs[1] > 0)]
    return len(np.unique(pairs[0][pairs[0] > 0])), len(np.unique(pairs[1][pairs[1] > 0])), pairs.shape[1]


def crossing(labels: np.ndarray, core: int) -> list[int]:
    """Per core border (rows, then columns), the number of objects on both sides of it."""
    counts = []
    for b in range(core, labels.shape[0], core):
        for before, after in ((labels[b - 1], labels[b]), (labels[:, b - 1], labels[:, b])):
            counts.append(len((set(np.unique(before)) & set(np.unique(after))) - {0}))
    return counts


@pytest.mark.slow
def test_out_of_core_labels_equal_the_whole_image_with_the_real_erfnet(tmp_path):
    """2048² in 2 × 2 blocks of 1024² (windows of 1024 + 2 × (128 + 632) px): the same objects
    as clustering the whole image's raw outputs, with objects across every block border."""
    size, core = 2048, 1024
    image = disc_image(size, core, np.random.default_rng(0))
    model = seeding_erfnet(image)
    zarr_io.write_image(tmp_path / "a.ome.zarr", image, "yx", (512, 512))
    params = ClusterParams(min_mask_sum=0, min_unclustered_sum=0)
    whole = cluster(predict_raw(model, image / 255.0, tta=False), params)
    out = blocks.predict_blocks(
        model,
        zarr_io.open_image(tmp_path / "a.ome.zarr"),
        SETTINGS,
        tmp_path / "work",
        params,
        False,
        core=(core, core),
    )
    labels = zarr_io.read_labels_any(out)
    assert min(crossing(whole, core)) > 0
    n_whole, n_blocks, n_pairs = one_to_one(whole, labels)
    assert n_whole == n_blocks == n_pairs > 100


class BumpModel(torch.nn.Module):
    """A network without context (receptive field 0): zero offsets, bandwidths of a 20 px radius
    and a seed logit rising with the brightness — each bright bump becomes one object. 2-D or
    3-D (`ndim`); `fail_after`: raise on that call, as a killed run stops."""

    receptive_radius = 0

    def __init__(self, ndim: int = 2, fail_after: int | None = None) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor(30.0))
        self.ndim, self.fail_after, self.calls = ndim, fail_after, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.calls == self.fail_after:
            raise KeyboardInterrupt
        sigma = math.log(math.log(2) / (20 / 1023) ** 2) / 10
        zeros = torch.zeros_like(x)
        return torch.cat([zeros] * self.ndim + [zeros + sigma] * self.ndim + [self.scale * (x - 0.4)], dim=1)


def bump_image(size: int, core: int) -> np.ndarray:
    """uint8 Gaussian bumps (σ 6 px) every 96 px, shifted so that a row and a column of them sit
    on every core border."""
    image = np.zeros((size, size), np.uint8)
    yy, xx = np.mgrid[-18:19, -18:19]
    bump = (255 * np.exp(-(yy**2 + xx**2) / (2 * 6.0**2))).astype(np.uint8)
    centres = list(range(48, size - 18, 96)) + list(range(core, size - 18, core))
    for y in centres:
        for x in centres:
            region = image[y - 18 : y + 19, x - 18 : x + 19]
            np.maximum(region, bump, out=region)
    return image


def test_8k_ome_zarr_out_of_core_one_label_per_object_across_borders(tmp_path):
    """8192² OME-Zarr (NGFF 0.5) in blocks of 2048²: NGFF label metadata, a pyramid, ome-zarr-py
    finds the label group, and every bump on a block border is one object, whole."""
    import zarr
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Label, Labels, Reader

    size, core = 8192, 2048
    image = bump_image(size, core)
    zarr_io.write_image(tmp_path / "big.ome.zarr", image, "yx", (1024, 1024), version="0.5", scale=(0.5, 0.5))
    out = blocks.predict_blocks(
        BumpModel(),
        zarr_io.open_image(tmp_path / "big.ome.zarr"),
        SETTINGS,
        tmp_path / "work",
        tta=False,
        core=(core, core),
    )
    root = zarr.open_group(out, mode="r")
    label = root["labels/embedseg"]
    ome = label.attrs["ome"]
    assert ome["version"] == "0.5" and ome["image-label"]["source"] == {"image": "../../"}
    assert root["labels"].attrs["ome"]["labels"] == ["embedseg"]
    datasets = ome["multiscales"][0]["datasets"]
    assert [d["coordinateTransformations"][0]["scale"] for d in datasets[:2]] == [[0.5, 0.5], [1.0, 1.0]]
    assert label["1"].shape == (size // 2, size // 2) and label["0"].chunks == (core, core)
    nodes = list(Reader(parse_url(str(out)))())
    assert any(isinstance(spec, Labels) for node in nodes for spec in node.specs)
    assert any(isinstance(spec, Label) for node in nodes for spec in node.specs)
    for b in range(core, size, core):  # the bumps centred on this border, read band by band
        band = np.asarray(label["0"][b - 19 : b + 19, :])
        for x in list(range(48, size - 18, 96)) + list(range(core, size - 18, core)):
            ids = np.unique(band[:, x - 18 : x + 19])
            assert len(ids[ids > 0]) == 1, (b, x, ids)


def test_predict_and_evaluate_an_ome_zarr_image(tmp_path):
    """`embedseg predict` on a folder with an OME-Zarr (NGFF 0.4) and a TIFF, both in 2 × 2 blocks,
    writes PRED_DIR/a.ome.zarr with the label group and b.tif; `embedseg evaluate` pairs them
    with a.tif and b.tif GT and reads them."""
    import tifffile

    from embedseg.models import save_checkpoint

    torch.manual_seed(0)
    model = BranchedERFNet()
    save_checkpoint(
        tmp_path / "best.pt",
        {
            "model_state_dict": model.state_dict(),
            "model_config": model.config,
            "settings": SETTINGS.to_dict(),
            "epoch": 0,
            "best_iou": 0.0,
        },
    )
    (tmp_path / "images").mkdir()
    (tmp_path / "gt").mkdir()
    image = disc_image(96, 48, np.random.default_rng(1))
    zarr_io.write_image(tmp_path / "images" / "a.ome.zarr", image, "yx", (64, 64))
    tifffile.imwrite(tmp_path / "images" / "b.tif", image)  # in blocks too: --memory-gb below its size
    for name in ("a", "b"):
        tifffile.imwrite(tmp_path / "gt" / f"{name}.tif", (image > 100).astype(np.uint16))
    args = [str(tmp_path / "best.pt"), "--images", str(tmp_path / "images"), "--out", str(tmp_path / "pred")]
    assert cli.main(["predict", *args, "--no-tta", "--device", "cpu", "--memory-gb", "0.0003"]) == 0
    labels = zarr_io.read_labels_any(tmp_path / "pred" / "a.ome.zarr")
    assert labels.shape == image.shape
    assert np.array_equal(tifffile.imread(tmp_path / "pred" / "b.tif"), labels)
    assert not (tmp_path / ".pred.blocks").exists()
    scores = tmp_path / "scores.csv"
    code = cli.main(["evaluate", str(tmp_path / "gt"), str(tmp_path / "pred"), "--out", str(scores)])
    assert code == 0 and scores.is_file()


def test_a_killed_run_continues_with_the_blocks_not_yet_written(tmp_path):
    size, core = 1024, 256
    zarr_io.write_image(tmp_path / "a.ome.zarr", bump_image(size, core), "yx", (256, 256))
    image = zarr_io.open_image(tmp_path / "a.ome.zarr")
    run = dict(tta=False, core=(core, core), workers=1)
    with pytest.raises(KeyboardInterrupt):
        blocks.predict_blocks(BumpModel(fail_after=6), image, SETTINGS, tmp_path / "work", **run)
    written = len(list((tmp_path / "work" / "done").iterdir()))  # the worker may finish one more
    assert 5 <= written <= 6
    resumed = BumpModel()
    out = blocks.predict_blocks(resumed, image, SETTINGS, tmp_path / "work", **run)
    assert resumed.calls == 16 - written
    fresh = blocks.predict_blocks(BumpModel(), image, SETTINGS, tmp_path / "fresh", **run)
    assert np.array_equal(zarr_io.read_labels_any(out), zarr_io.read_labels_any(fresh))


def test_3d_volume_in_blocks_equals_the_whole_volume(tmp_path):
    """A 48 × 192 × 192 volume of bumps in 2 × 2 × 2 blocks: the whole volume's objects."""
    zz, yy, xx = np.mgrid[:48, :192, :192]
    volume = np.zeros((48, 192, 192))
    for z, y, x in [(24, 96, 96), (12, 40, 150), (36, 150, 40), (24, 96, 30), (10, 20, 20)]:
        volume = np.maximum(volume, np.exp(-((zz - z) ** 2 + (yy - y) ** 2 + (xx - x) ** 2) / (2 * 5.0**2)))
    volume = (255 * volume).astype(np.uint8)
    settings = DatasetSettings(name="toy3d", normalization_factor=255.0, ndim=3, voxel_size=(1.0, 1.0, 1.0))
    zarr_io.write_image(tmp_path / "v.ome.zarr", volume, "zyx", (24, 96, 96))
    params = ClusterParams(min_mask_sum=0, min_unclustered_sum=0, min_object_size=10)
    out = blocks.predict_blocks(
        BumpModel(3),
        zarr_io.open_image(tmp_path / "v.ome.zarr"),
        settings,
        tmp_path / "work",
        params,
        False,
        core=(24, 96, 96),
    )
    whole = cluster(predict_raw(BumpModel(3), volume[None] / 255.0, tta=False), params)
    n_whole, n_blocks, n_pairs = one_to_one(whole, zarr_io.read_labels_any(out))
    assert n_whole == n_blocks == n_pairs == 5
