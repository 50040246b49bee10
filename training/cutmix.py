"""CutMix box masks for semi-supervised segmentation (French et al. 2020, as used by MGD's reference code).

Two unlabelled images are pasted together through a binary mask; the network's prediction on the mixed image
is asked to match the same mix of the predictions on the two originals. Images and pseudo-labels MUST be mixed
with the same mask, so the mask is drawn once (`box_masks`) and passed to both `mix_images` and
`mix_labels`. Defaults follow the reference code: 3 boxes, each covering a random share of the image drawn
from prop_range (by area, random aspect ratio, inside the image), mask inverted so boxes take image B.
"""

from __future__ import annotations

import math

import torch

from slimseg_ros.errors import SlimsegError


def box_masks(
    n: int,
    height: int,
    width: int,
    generator: torch.Generator | None = None,
    prop_range: tuple[float, float] = (0.25, 0.5),
    n_boxes: int = 3,
    random_aspect_ratio: bool = True,
    invert: bool = True,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Float {0,1} masks [n,1,H,W]; 1 = take the second image. Seedable through `generator`."""
    lo, hi = prop_range
    if not (0.0 <= lo <= hi <= 1.0):
        raise SlimsegError(f"cutmix prop_range {prop_range} is invalid", "use 0 <= low <= high <= 1")
    if n_boxes < 1 or n < 1 or height < 1 or width < 1:
        raise SlimsegError(f"cutmix needs positive sizes, got n={n} boxes={n_boxes} {height}x{width}")
    props = lo + (hi - lo) * torch.rand(n, n_boxes, generator=generator)
    if random_aspect_ratio:
        # y share = prop^u, x share = prop / y share: area is kept, aspect ratio random (both <= 1).
        y_props = torch.exp(torch.rand(n, n_boxes, generator=generator) * torch.log(props.clamp_min(1e-12)))
        x_props = props / y_props
    else:
        y_props = x_props = props.sqrt()
    fac = math.sqrt(1.0 / n_boxes)  # n boxes together cover about `prop` of the image
    sizes_y = torch.round(y_props * fac * height)
    sizes_x = torch.round(x_props * fac * width)
    pos_y = torch.round((height - sizes_y) * torch.rand(n, n_boxes, generator=generator))
    pos_x = torch.round((width - sizes_x) * torch.rand(n, n_boxes, generator=generator))
    masks = torch.zeros(n, 1, height, width) if invert else torch.ones(n, 1, height, width)
    for i in range(n):
        for b in range(n_boxes):
            y0, x0 = int(pos_y[i, b]), int(pos_x[i, b])
            y1, x1 = y0 + int(sizes_y[i, b]), x0 + int(sizes_x[i, b])
            masks[i, 0, y0:y1, x0:x1] = 1.0 - masks[i, 0, y0:y1, x0:x1]
    return masks.to(device) if device is not None else masks


def _check(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> None:
    if a.shape != b.shape:
        raise SlimsegError(f"cutmix inputs differ in shape: {tuple(a.shape)} vs {tuple(b.shape)}")
    if (
        mask.dim() != 4
        or mask.shape[1] != 1
        or mask.shape[0] != a.shape[0]
        or mask.shape[-2:] != a.shape[-2:]
    ):
        raise SlimsegError(
            f"cutmix mask {tuple(mask.shape)} does not fit inputs {tuple(a.shape)}",
            "masks are [N,1,H,W] with the inputs' N, H, W",
        )


def mix_images(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """a where mask is 0, b where it is 1; works for images [N,C,H,W] and logits alike."""
    _check(a, b, mask)
    m = mask.to(a.dtype)
    return a * (1 - m) + b * m


def mix_labels(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Integer label maps [N,H,W] mixed with the same mask as the images (no interpolation of ids)."""
    _check(a.unsqueeze(1), b.unsqueeze(1), mask)
    return torch.where(mask[:, 0] > 0.5, b, a)
