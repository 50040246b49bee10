"""Ground-truth semantic boundaries and trimap bands, computed with max-pooling so they run on the GPU.

Boundary rule (SlimSeg): a non-void pixel is a boundary pixel if some pixel in its k x k neighbourhood has a
different, non-void label. Void pixels are never boundary, and void next to a class is not a border (void
marks "unknown", not a real edge). The trimap band of d pixels is every non-void pixel within Chebyshev
distance d of a boundary pixel (3x3 rule); boundary mIoU is measured inside it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _class_presence(labels: torch.Tensor, num_classes: int, kernel: int) -> torch.Tensor:
    """[N,H,W] labels -> [N,C,H,W] bool: class c occurs in the k x k window around each pixel."""
    onehot = torch.stack([(labels == c) for c in range(num_classes)], dim=1).float()
    return F.max_pool2d(onehot, kernel_size=kernel, stride=1, padding=kernel // 2) > 0


def boundary_map(labels: torch.Tensor, num_classes: int, ignore_index: int, kernel: int = 3) -> torch.Tensor:
    """Binary boundary map [N,H,W] float {0,1} of integer labels [N,H,W] (or [H,W]) with an odd kernel."""
    if kernel < 1 or kernel % 2 == 0:
        raise ValueError(f"boundary kernel must be odd and >= 1, got {kernel}")
    squeeze = labels.dim() == 2
    lab = labels.unsqueeze(0) if squeeze else labels
    lab = lab.long()
    present = _class_presence(lab, num_classes, kernel)  # [N,C,H,W]
    valid = (lab != ignore_index) & (lab >= 0) & (lab < num_classes)
    own = present.gather(1, lab.clamp(0, num_classes - 1).unsqueeze(1)).squeeze(1)
    n_present = present.sum(1)
    # Another class is present iff more classes are present than the pixel's own one.
    edge = (n_present - own.long()) > 0
    out = (edge & valid).float()
    return out[0] if squeeze else out


def trimap_band(labels: torch.Tensor, num_classes: int, ignore_index: int, distance: int) -> torch.Tensor:
    """Bool mask [N,H,W] of non-void pixels within `distance` px (Chebyshev) of a ground-truth boundary."""
    if distance < 0:
        raise ValueError(f"trimap distance must be >= 0, got {distance}")
    squeeze = labels.dim() == 2
    lab = labels.unsqueeze(0) if squeeze else labels
    edges = boundary_map(lab, num_classes, ignore_index, kernel=3)
    if distance > 0:
        edges = F.max_pool2d(edges.unsqueeze(1), 2 * distance + 1, stride=1, padding=distance).squeeze(1)
    band = (edges > 0) & (lab != ignore_index)
    return band[0] if squeeze else band
