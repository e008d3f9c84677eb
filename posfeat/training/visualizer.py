"""The training visualiser: fixed validation pairs, rendered every ``vis_every`` steps."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn as nn

from posfeat.models import normalize_image
from posfeat.trainset.batch_order import derive_seed
from posfeat.trainset.pairs import PairDataset


class Visualizer:
    """Fixed validation pairs, rendered every ``vis_every`` steps.

    Per pair: the two score maps (``coolwarm``, normalised by their max; stage 2 only: in stage 1 the
    detector is untrained and not run) and the mutual-NN matches of descriptors sampled at keypoints
    (stage 1: OpenCV SIFT; stage 2: the detector's top-``k`` NMS maxima), coloured by epipolar error
    (green 0 px, red ≥ 5 px).
    Returns the images and the mean match statistics (logged as ``val/…``).
    """

    def __init__(self, dataset: PairDataset, stage: str, num_pairs: int, num_keypoints: int, seed: int):
        self.stage = stage
        self.num_keypoints = int(num_keypoints)
        n = min(int(num_pairs), len(dataset))
        order = np.random.default_rng([int(seed), 0x715]).permutation(len(dataset))[:n] if n else []
        self.samples = [dataset[(int(i), derive_seed(seed, int(i), 0x715))] for i in order]
        self.sift = {}

    @torch.no_grad()
    def __call__(self, model: nn.Module, device: torch.device) -> tuple[dict[str, np.ndarray], dict[str, float]]:
        from posfeat.visualize import match_visualization, score_maps_image, sift_keypoints, to_uint8, topk_keypoints

        was_training = model.training
        model.eval()
        images, stats = {}, []
        try:
            for i, s in enumerate(self.samples):
                x = normalize_image(torch.stack([s["image1"], s["image2"]]).to(device))
                feats = model.describe(x)
                fmap = feats["local_map"].float()
                score = model.detect(x, feats).float() if self.stage == "kp" else None
                if self.stage == "desc":
                    if i not in self.sift:
                        self.sift[i] = [
                            torch.from_numpy(sift_keypoints(to_uint8(im), self.num_keypoints))
                            for im in (s["image1"], s["image2"])
                        ]
                    kp1, kp2 = self.sift[i]
                else:
                    kp1, kp2 = (topk_keypoints(score[k, 0], self.num_keypoints) for k in (0, 1))
                if len(kp1) and len(kp2):
                    pic, st = match_visualization(s["image1"], s["image2"], fmap[0], fmap[1], kp1, kp2, s["F12"])
                    images[f"pair{i}_matches.png"] = pic
                    stats.append(st)
                if score is not None:
                    images[f"pair{i}_scores.png"] = score_maps_image(score[0, 0], score[1, 0])
        finally:
            model.train(was_training)
        mean = {}
        for k in ("matches", "precision", "median_error"):
            vals = [st[k] for st in stats if math.isfinite(st[k])]
            if vals:
                mean[f"val/{k}"] = float(np.mean(vals))
        return images, mean
