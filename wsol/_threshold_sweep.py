"""Every threshold's boxes in one pass: the fast path of :mod:`wsol.localize`.

The reference thresholds a CAM at up to 1000 thresholds and runs ``cv2.findContours`` at each.
Here the same boxes come from two union-find sweeps over the 256 levels of the uint8 map:

* Foreground components (8-connected, as ``findContours`` traces them) only merge as the threshold
  falls. A descending sweep adds the pixels of each level and keeps, per component, its bounding
  box; the box of a component's outer contour is that bounding box.
* Holes (4-connected background components not connected to the image frame; ``RETR_TREE``
  returns a contour for each) only merge as the threshold rises. An ascending sweep keeps their
  bounding boxes; a hole contour runs through the foreground pixels around the hole, so its box
  is the hole's box grown by one pixel.
* Single-contour mode keeps the contour of largest ``cv2.contourArea``. The winner is always an
  outermost component (a nested one or a hole encloses strictly less area, or ties with its own
  outer contour and has its box). The area of an outer contour, a polygon through pixel centres,
  is a sum over the 2 x 2 pixel blocks of the component with its holes filled: 1 per full block,
  1/2 per block with three pixels. Hole filling is a threshold on the "exterior level" of each
  pixel (the level at which it joins the frame's background, from the ascending sweep), so a
  third sweep over that level keeps, per filled component, its area, box and first raster pixel.
  Ties go to the component whose first pixel comes last in raster order, which is the order
  ``findContours`` lists outer contours in.

Only the levels that some threshold maps to are evaluated, and images run in parallel.
The results are identical to the reference path; the tests compare them on random maps.
"""

from __future__ import annotations

import os

import numpy as np
from numba import config, njit, prange

# Numba's OpenMP threading layer sets the process's OpenMP thread count to its own, which
# PyTorch shares: after the first evaluation, training would run with other threads (and other
# float summation orders) than before it, so a resumed or distributed run would drift from an
# uninterrupted one. The workqueue layer leaves OpenMP alone. NUMBA_THREADING_LAYER still wins.
if "NUMBA_THREADING_LAYER" not in os.environ:
    config.THREADING_LAYER = "workqueue"


@njit(cache=True, inline="always")
def _find(parent, x):
    while parent[x] != x:  # path halving
        parent[x] = parent[parent[x]]
        x = parent[x]
    return x


@njit(cache=True, inline="always")
def _union(parent, size, x0, y0, x1, y1, ra, rb):
    """Join the components of roots ``ra`` and ``rb`` (union by size, which keeps the trees
    shallow) and merge their boxes; returns (kept root, absorbed root)."""
    if size[ra] < size[rb]:
        ra, rb = rb, ra
    parent[rb] = ra
    size[ra] += size[rb]
    x0[ra] = min(x0[ra], x0[rb])
    y0[ra] = min(y0[ra], y0[rb])
    x1[ra] = max(x1[ra], x1[rb])
    y1[ra] = max(y1[ra], y1[rb])
    return ra, rb


@njit(cache=True, inline="always")
def _best_iou(x0, y0, x1, y1, gt, best):
    """max(best, IoU of one box against the GT boxes), with the reference's arithmetic."""
    for g in range(gt.shape[0]):
        iw = min(x1, gt[g, 2]) - max(x0, gt[g, 0]) + 1
        ih = min(y1, gt[g, 3]) - max(y0, gt[g, 1]) + 1
        inter = max(0, iw) * max(0, ih)
        area_a = (x1 - x0 + 1) * (y1 - y0 + 1)
        area_b = (gt[g, 2] - gt[g, 0] + 1) * (gt[g, 3] - gt[g, 1] + 1)
        union = area_a + area_b - inter
        iou = 0.0 if union <= 0 else inter / union
        if iou > best:
            best = iou
    return best


@njit(cache=True)
def _counting_order(values, keep):
    """Indices i with keep[i], sorted by values[i] (uint8, stable), and each value's start."""
    counts = np.zeros(257, dtype=np.int64)
    for i in range(values.size):
        if keep[i]:
            counts[values[i] + 1] += 1
    for v in range(256):
        counts[v + 1] += counts[v]
    starts = counts.copy()
    order = np.empty(counts[256], dtype=np.int32)
    for i in range(values.size):
        if keep[i]:
            v = values[i]
            order[counts[v]] = i
            counts[v] += 1
    return order, starts


@njit(cache=True)
def _exterior_levels(img):
    """Each pixel's exterior level: the lowest t at which it joins the frame's background.

    The background at t is ``img <= t``, 4-connected; the image is framed by background (as
    ``findContours`` pads it). This is a minimax path to the frame, computed by a priority flood
    with a bucket queue from a one-pixel frame. ``img > t`` with holes filled is
    ``exterior > t``. Returns (H * W,) uint8.
    """
    h, w = img.shape
    w2 = w + 2
    n2 = (h + 2) * w2
    ext = np.zeros(n2, dtype=np.uint8)
    seen = np.zeros(n2, dtype=np.bool_)
    bucket = np.full(256, -1, dtype=np.int32)
    nxt = np.empty(n2, dtype=np.int32)
    value = np.zeros(n2, dtype=np.uint8)
    offsets = np.array([-1, 1, -w2, w2], dtype=np.int64)
    for y in range(h):
        for x in range(w):
            value[(y + 1) * w2 + x + 1] = img[y, x]
    for pp in range(n2):  # the frame, at level 0
        y, x = pp // w2, pp % w2
        if y == 0 or x == 0 or y == h + 1 or x == w + 1:
            seen[pp] = True
            nxt[pp] = bucket[0]
            bucket[0] = pp
    for level in range(256):
        while bucket[level] != -1:
            pp = bucket[level]
            bucket[level] = nxt[pp]
            for d in range(4):
                q = pp + offsets[d]
                if q < 0 or q >= n2 or seen[q]:
                    continue
                seen[q] = True
                e = max(value[q], level)
                ext[q] = e
                nxt[q] = bucket[e]
                bucket[e] = q
    out = np.empty(h * w, dtype=np.uint8)
    for y in range(h):
        for x in range(w):
            out[y * w + x] = ext[(y + 1) * w2 + x + 1]
    return out


@njit(cache=True)
def _hole_ious(img, ext, need, gt, out):
    """Best IoU of the hole contours' boxes at each needed t, into ``out[t]``.

    At t the holes are the 4-connected components of ``img <= t < exterior``. Only pixels with
    ``exterior > img`` are ever in a hole (few, for smooth CAMs); a hole component leaves as a
    whole when t reaches its (shared) exterior level.
    """
    h, w = img.shape
    n = h * w
    flat = img.ravel()
    order, starts = _counting_order(flat, ext > flat)  # ext: (H * W,) exterior levels
    if order.size == 0:
        return
    parent = np.empty(n, dtype=np.int32)
    size = np.empty(n, dtype=np.int32)
    x0 = np.empty(n, dtype=np.int32)
    y0 = np.empty(n, dtype=np.int32)
    x1 = np.empty(n, dtype=np.int32)
    y1 = np.empty(n, dtype=np.int32)
    added = np.zeros(n, dtype=np.bool_)
    roots = np.empty(order.size, dtype=np.int32)
    nroots = 0
    for t in range(256):
        for k in range(starts[t], starts[t + 1]):
            p = order[k]
            py, px = p // w, p % w
            parent[p] = p
            size[p] = 1
            x0[p] = px
            x1[p] = px
            y0[p] = py
            y1[p] = py
            added[p] = True
            roots[nroots] = p
            nroots += 1
            rp = p
            for d in range(4):
                qy, qx = py, px
                if d == 0:
                    qx -= 1
                elif d == 1:
                    qx += 1
                elif d == 2:
                    qy -= 1
                else:
                    qy += 1
                if qx < 0 or qy < 0 or qx >= w or qy >= h:
                    continue
                q = qy * w + qx
                if not added[q] or ext[q] <= t:
                    continue
                rb = _find(parent, q)
                if rb != rp:
                    rp, rb = _union(parent, size, x0, y0, x1, y1, rp, rb)
        if not need[t]:
            continue
        best = 0.0
        kept = 0
        for i in range(nroots):
            r = roots[i]
            if parent[r] != r or ext[r] <= t:
                continue
            roots[kept] = r
            kept += 1
            # a hole contour runs through the pixels around the hole: its box grows by one
            best = _best_iou(
                x0[r] - 1, y0[r] - 1, min(x1[r] + 2, w - 1), min(y1[r] + 2, h - 1), gt, best
            )
        nroots = kept
        out[t] = best


@njit(cache=True)
def _foreground_ious(levels, need, gt, single, out):
    """Descending sweep over the 8-connected components of ``levels > t``; fills ``out[t]``.

    ``single``: keep only the component of largest contour area (``levels`` are then exterior
    levels, so components come with their holes filled); otherwise the best over all.
    Pixels are indexed in a frame one pixel wider on each side, so neighbours need no bounds
    checks; raster order is unchanged by the frame.
    """
    h, w = levels.shape
    w2 = w + 2
    n2 = (h + 2) * w2
    flat = levels.ravel()
    order, starts = _counting_order(flat, flat > 0)
    parent = np.empty(n2, dtype=np.int32)
    size = np.empty(n2, dtype=np.int32)
    x0 = np.empty(n2, dtype=np.int32)
    y0 = np.empty(n2, dtype=np.int32)
    x1 = np.empty(n2, dtype=np.int32)
    y1 = np.empty(n2, dtype=np.int32)
    area2 = np.empty(n2, dtype=np.int32)  # twice the contour area
    first = np.empty(n2, dtype=np.int32)  # index of the first pixel in raster order
    added = np.zeros(n2, dtype=np.bool_)
    roots = np.empty(order.size, dtype=np.int32)
    offsets = np.array([-w2 - 1, -w2, -w2 + 1, -1, 1, w2 - 1, w2, w2 + 1], dtype=np.int64)
    nroots = 0
    for v in range(255, 0, -1):
        for k in range(starts[v], starts[v + 1]):
            p = order[k]
            py, px = p // w, p % w
            pp = (py + 1) * w2 + px + 1
            if single:
                # the four 2 x 2 blocks around p: one going from 2 to 3 pixels or from 3 to 4
                # gains a triangle of area 1/2 (1 in units of area2)
                nw, n_, ne = added[pp - w2 - 1], added[pp - w2], added[pp - w2 + 1]
                w_, e_ = added[pp - 1], added[pp + 1]
                sw, s_, se = added[pp + w2 - 1], added[pp + w2], added[pp + w2 + 1]
                delta = (
                    (nw + n_ + w_ >= 2)
                    + (n_ + ne + e_ >= 2)
                    + (w_ + sw + s_ >= 2)
                    + (e_ + s_ + se >= 2)
                )
            # the roots of p's added neighbours, merged into the largest
            rp = -1
            for j in range(8):
                q = pp + offsets[j]
                if not added[q] or parent[q] == rp:
                    continue
                rb = _find(parent, q)
                if rp == -1:
                    rp = rb
                    continue
                if rb == rp:
                    continue
                rp, rb = _union(parent, size, x0, y0, x1, y1, rp, rb)
                area2[rp] += area2[rb]
                first[rp] = min(first[rp], first[rb])
            added[pp] = True
            if rp == -1:  # a new component
                parent[pp] = pp
                size[pp] = 1
                x0[pp] = px
                x1[pp] = px
                y0[pp] = py
                y1[pp] = py
                area2[pp] = 0
                first[pp] = pp
                roots[nroots] = pp
                nroots += 1
            else:
                parent[pp] = rp
                size[rp] += 1
                x0[rp] = min(x0[rp], px)
                y0[rp] = min(y0[rp], py)
                x1[rp] = max(x1[rp], px)
                y1[rp] = max(y1[rp], py)
                first[rp] = min(first[rp], pp)
                if single:
                    area2[rp] += delta
        t = v - 1
        if not need[t]:
            continue
        best = 0.0
        kept = 0
        win = -1
        for i in range(nroots):
            r = roots[i]
            if parent[r] != r:
                continue
            roots[kept] = r
            kept += 1
            if single:
                # ties: the first pixel latest in raster order wins (findContours' order)
                if (
                    win < 0
                    or area2[r] > area2[win]
                    or (area2[r] == area2[win] and first[r] > first[win])
                ):
                    win = r
            else:
                best = _best_iou(
                    x0[r], y0[r], min(x1[r] + 1, w - 1), min(y1[r] + 1, h - 1), gt, best
                )
        nroots = kept
        if single and win >= 0:
            best = _best_iou(
                x0[win], y0[win], min(x1[win] + 1, w - 1), min(y1[win] + 1, h - 1), gt, 0.0
            )
        out[t] = best


@njit(cache=True)
def _level_ious(img, need, gt, multi):
    """Best IoU at each needed uint8 threshold t (binary map ``img > t``) for one image."""
    out = np.zeros(256, dtype=np.float64)
    peak = 0
    for v in img.ravel():
        if v > peak:
            peak = v
    if peak == 0:  # empty map at every threshold: the reference's [0, 0, 0, 0] box
        out[0] = _best_iou(0, 0, 0, 0, gt, 0.0)
        return out
    ext = _exterior_levels(img)
    if multi:
        holes = np.zeros(256, dtype=np.float64)
        _hole_ious(img, ext, need, gt, holes)
        _foreground_ious(img, need, gt, False, out)
        for t in range(256):
            out[t] = max(out[t], holes[t])
    else:
        _foreground_ious(ext.reshape(img.shape), need, gt, True, out)
    return out


@njit(cache=True, parallel=True, nogil=True)  # nogil: a CAM extraction can run meanwhile
def _batch_level_ious(images, need, gt, gt_start, multi):
    out = np.zeros((images.shape[0], 256), dtype=np.float64)
    for i in prange(images.shape[0]):
        out[i] = _level_ious(images[i], need[i], gt[gt_start[i] : gt_start[i + 1]], multi)
    return out


def threshold_ious(
    images: np.ndarray,
    gt_boxes: list[np.ndarray],
    thresholds: np.ndarray,
    multi_contour: bool = False,
) -> np.ndarray:
    """Best IoU at each threshold for a batch: (N, T) float64.

    Args:
        images: (N, H, W) uint8 maps, ``(scoremap * 255).astype(uint8)``.
        gt_boxes: per image, (G, 4) int GT boxes at the map's size.
        thresholds: (T,) the CAM threshold grid in [0, 1).
        multi_contour: all contours (MaxBoxAccV2) or the largest one.
    """
    images = np.ascontiguousarray(images, dtype=np.uint8)
    n = images.shape[0]
    peaks = images.reshape(n, -1).max(axis=1)
    # int(t * max) exactly as the reference computes it (float64 product, truncation)
    levels = (thresholds[None, :] * peaks[:, None].astype(np.float64)).astype(np.int64)
    need = np.zeros((n, 256), dtype=np.bool_)
    np.put_along_axis(need, levels, True, axis=1)
    gt = (
        np.concatenate([np.asarray(g, dtype=np.int64).reshape(-1, 4) for g in gt_boxes])
        if n
        else np.zeros((0, 4), np.int64)
    )
    gt_start = np.concatenate(
        [[0], np.cumsum([len(np.asarray(g).reshape(-1, 4)) for g in gt_boxes])]
    ).astype(np.int64)
    per_level = _batch_level_ious(images, need, gt, gt_start, multi_contour)
    return np.take_along_axis(per_level, levels, axis=1)
