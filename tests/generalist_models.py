"""Write a generalist library's real model class with random weights in the format the library
loads from disk, for tests/test_baseline_generalists.py (no download, nothing pretrained).

Run with the generalists' interpreter: ``python tests/generalist_models.py LIBRARY OUT_FILE``.

- cellpose: Cellpose 4's `CPSAM` network (SAM ViT-L encoder, the only architecture `cpsam`
  loads), its state dict saved by its own `save_model`.
- micro-sam: SAM ViT-B (`vit_b_lm`'s architecture) and micro-sam's UNETR decoder, saved as
  micro-sam's export format {"model_state", "decoder_state"}.
- instanseg: a small `InstanSeg_UNet` with InstanSeg's pixel classifier, wrapped and scripted as
  InstanSeg's own export does (`InstanSeg_Torchscript`, `torch.jit.save`): the instanseg.pt of
  a published model's folder.
"""

from __future__ import annotations

import sys

import torch


def cellpose(out: str) -> None:
    from cellpose.vit import CPSAM

    CPSAM().save_model(out)


def micro_sam(out: str) -> None:
    from micro_sam.instance_segmentation import get_unetr
    from segment_anything import sam_model_registry

    sam = sam_model_registry["vit_b"]()
    unetr = get_unetr(sam.image_encoder, device="cpu")
    decoder = {k: v for k, v in unetr.state_dict().items() if not k.startswith("encoder")}
    torch.save({"model_state": sam.state_dict(), "decoder_state": decoder}, out)


def instanseg(out: str) -> None:
    from instanseg.utils.loss.instanseg_loss import InstanSeg, InstanSeg_Torchscript
    from instanseg.utils.model_loader import build_model_from_dict

    settings = dict(
        model_str="InstanSeg_UNet",
        dim_in=1,
        layers=[8, 16],
        norm="BATCH",
        multihead=False,
        cells_and_nuclei=False,
        dim_seeds=1,
        dim_coords=2,
        n_sigma=2,
        dropprob=0.0,
    )
    model = build_model_from_dict(settings, random_seed=0)
    model = InstanSeg(n_sigma=2, dim_coords=2, cells_and_nuclei=False, device="cpu").initialize_pixel_classifier(model)
    # Thresholds baked into the export (its `params`) low enough that random weights find objects.
    params = {"seed_threshold": 0.0, "fg_threshold": 0.0, "mask_threshold": 0.0, "min_size": 1}
    wrapped = InstanSeg_Torchscript(
        model, cells_and_nuclei=False, pixel_size=0.5, n_sigma=2, backbone_dim_in=1, params=params
    )
    torch.jit.save(torch.jit.script(wrapped), out)


if __name__ == "__main__":
    library, out = sys.argv[1:]
    torch.manual_seed(0)
    {"cellpose": cellpose, "micro-sam": micro_sam, "instanseg": instanseg}[library](out)
