"""Score maps that look at no image: the reference points of Choe et al.'s main table.

``center``: the center-Gaussian baseline. Choe et al. (CVPR 2020; the "Center baseline" row of
clovaai/wsolevaluation's main table) score every image with the same isotropic Gaussian centred
in the image; the code does not ship it. Here: at the evaluation size (W, H), the map
``exp(-((x - cx)^2 + (y - cy)^2) / (2 sigma^2))`` with (cx, cy) the centre of the pixel grid
((W - 1) / 2, (H - 1) / 2) and ``sigma = 0.25 * min(W, H)``. Its boxes are centred squares (cut
by the image frame); since every metric sweeps the threshold, ``sigma`` only changes which
sizes the uint8 levels reach, not which boxes exist.
"""

from __future__ import annotations

import numpy as np


def center_gaussian(size: tuple[int, int] = (224, 224), sigma: float = 0.25) -> np.ndarray:
    """The center baseline's (H, W) float64 score map; ``sigma`` relative to the shorter side."""
    w, h = size
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    s = sigma * min(w, h)
    return np.exp(-((xs - (w - 1) / 2) ** 2 + (ys - (h - 1) / 2) ** 2) / (2 * s * s))


BASELINES = {"center": center_gaussian}
