"""Score-CAM time and peak memory per image: pytorch-grad-cam's ScoreCAM on a whole evaluation
batch at once (how `wsol evaluate --cam-method scorecam` called it before; its masked copies of
the batch, images x channels x 3 x H x W, are built at once) against ours (`wsol.cam`, one image
at a time, 32 masked images per forward pass). Each side runs in a fresh process; prints seconds
per image, peak RSS and the ratios.

    python benchmarks/bench_scorecam.py [--model resnet18] [--size 224] [--images 8]

Score-CAM itself stays expensive: one forward pass of the whole network per feature channel
and image (ResNet-18: 512, ResNet-50: 2,048 per image).
"""

from __future__ import annotations

import argparse
import subprocess
import sys

CHILD = """
import resource, sys, time, torch
from wsol.models import create_model
from wsol.cam import _Wrapped, gradcam_family
from pytorch_grad_cam import ScoreCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
import pytorch_grad_cam.score_cam as score_cam
way, name, size, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
torch.manual_seed(0)
model = create_model(name, 10).eval()
x, classes = torch.randn(n, 3, size, size), torch.arange(n) % 10
start = time.perf_counter()
if way == "batched":
    class Quiet:
        @staticmethod
        def tqdm(it, *a, **k):
            return it
    score_cam.tqdm = Quiet
    wrapped = _Wrapped(model)
    with ScoreCAM(model=wrapped, target_layers=[wrapped.features]) as cam:
        cam.batch_size = max(1, min(64, n * 4))
        cam(input_tensor=x, targets=[ClassifierOutputTarget(int(c)) for c in classes])
else:
    gradcam_family(model, x, classes, "scorecam")
seconds = time.perf_counter() - start
print(seconds / n, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""


def measure(way: str, model: str, size: int, images: int) -> tuple[float, float]:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, way, model, str(size), str(images)],
        capture_output=True,
        text=True,
        check=True,
    )
    per_image, rss = out.stdout.split()
    return float(per_image), float(rss)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--images", type=int, default=8)
    args = parser.parse_args()
    before = measure("batched", args.model, args.size, args.images)
    after = measure("ours", args.model, args.size, args.images)
    print(f"{args.model} at {args.size} px, {args.images} images")
    print(f"batched (before): {before[0]:.2f} s/image, peak {before[1]:.0f} MiB")
    print(f"one at a time:    {after[0]:.2f} s/image, peak {after[1]:.0f} MiB")
    print(f"ratio: time {after[0] / before[0]:.2f}x, peak memory {after[1] / before[1]:.2f}x")


if __name__ == "__main__":
    main()
