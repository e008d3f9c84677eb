"""A DAISY-structured descriptor network (Tola, Lepetit and Fua, PAMI 2010), learnable: the CPU encoder ``daisy``.

A dense DAISY map is a fixed pipeline of convolutions: image gradients, soft orientation binning (each gradient
weighted into every orientation bin by a von Mises kernel ``|g|·exp(κ·cos(θ − o))``, as scikit-image's
``daisy``), Gaussian pooling at growing widths, and sampling of the pooled maps at a centre and at
``rings × histograms`` points on concentric circles. :class:`DaisyEncoder` computes that map with PyTorch
operations (central differences of the luminance; L1-normalised over the whole descriptor and square-rooted,
the Hellinger normalisation of RootSIFT) and learns a ``1×1`` convolution on it, ``project``, with PoSFeat's
stage-1 loss: a linear map of the descriptor, initialised to the identity when ``desc_dim`` equals the DAISY
size (``(rings·histograms + 1)·orientations``, 200 by default), else to a random orthonormal projection.

At initialisation the descriptor *is* a dense DAISY (``tests/test_daisy.py`` checks it against an independent
SciPy computation), so training starts from a hand-crafted descriptor instead of a random network: on a 2-core
CPU the study's 15-minute budget cannot train a convolutional descriptor from scratch to SIFT's level (README,
sweep 10). Nothing before the projection has parameters, so a stage-1 step back-propagates through one ``1×1``
convolution only. The pooling widths and ring radii stay fixed (``radius`` pixels at the network's input
scale; the test-time pyramid supplies scale).

Outputs follow :class:`~posfeat.models.resunet.ResUNet`'s contract: ``local_map`` ``B×D×H/4×W/4`` (feature cell
``i`` centred on pixel ``4i + 1.5``, as PoSFeat's bilinear sampling with ``align_corners=False`` reads it) and
``local_map_small``, the orientation energies average-pooled to ``H/4`` (the detector's second input).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .resunet import check_image_batch

#: luminance weights of the gradient (ITU-R BT.601)
LUMA = (0.299, 0.587, 0.114)


def gaussian_kernel1d(sigma: float, truncate: float = 4.0) -> torch.Tensor:
    """A normalised 1-D Gaussian of ``sigma`` pixels, ``2·ceil(truncate·sigma) + 1`` taps (as SciPy's)."""
    if not sigma > 0:
        raise ValueError(f"gaussian_kernel1d needs sigma > 0, got {sigma!r}")
    half = int(math.ceil(truncate * sigma))
    x = torch.arange(-half, half + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return (k / k.sum()).float()


def gaussian_blur(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian blur of every channel of ``B×C×H×W`` by the 1-D ``kernel``, reflected borders
    (SciPy's ``mode='reflect'``: the edge pixel repeated)."""
    c = int(x.shape[1])  # a Python int: exporters see a static kernel shape
    half = (len(kernel) - 1) // 2
    kx = kernel.to(x).view(1, 1, 1, -1).expand(c, 1, 1, -1)
    ky = kernel.to(x).view(1, 1, -1, 1).expand(c, 1, -1, 1)
    x = F.conv2d(_pad_symmetric(x, half, 3), kx, groups=c)
    return F.conv2d(_pad_symmetric(x, half, 2), ky, groups=c)


def _pad_symmetric(x: torch.Tensor, pad: int, dim: int) -> torch.Tensor:
    """Pad ``x`` by ``pad`` on both sides of ``dim`` with its mirror image, edge included (``abc|cba``);
    repeats the mirror for pads longer than the axis."""
    n = x.shape[dim]
    idx = torch.arange(-pad, n + pad, device=x.device)
    period = 2 * n
    idx = torch.remainder(idx, period)
    idx = torch.where(idx >= n, period - 1 - idx, idx)
    return x.index_select(dim, idx)


def _bilinear_stride2(x: torch.Tensor, u: float, v: float, rows: int, cols: int) -> torch.Tensor:
    """``x`` read bilinearly at columns ``u + 2j`` and rows ``v + 2i`` (``j < cols``, ``i < rows``; both inside)."""
    ku, kv = math.floor(u), math.floor(v)
    fu, fv = u - ku, v - kv

    def take(r: int, c: int) -> torch.Tensor:
        return x[..., r : r + 2 * rows - 1 : 2, c : c + 2 * cols - 1 : 2]

    top = take(kv, ku) * (1 - fu) + take(kv, ku + 1) * fu
    bottom = take(kv + 1, ku) * (1 - fu) + take(kv + 1, ku + 1) * fu
    return top * (1 - fv) + bottom * fv


class DaisyEncoder(nn.Module):
    """Dense DAISY with a learnt linear projection; see the module docstring.

    Args:
        desc_dim: channels of ``local_map`` (``None`` = the DAISY size, the identity projection).
        radius: outer ring radius in pixels (15, scikit-image's default).
        rings, histograms, orientations: DAISY's layout (3, 8, 8: 200 dimensions).
    """

    def __init__(
        self,
        desc_dim: int | None = None,
        radius: float = 15.0,
        rings: int = 3,
        histograms: int = 8,
        orientations: int = 8,
    ):
        super().__init__()
        if not (radius > 0 and rings >= 1 and histograms >= 1 and orientations >= 2):
            raise ValueError(
                f"DaisyEncoder needs radius > 0, rings >= 1, histograms >= 1, orientations >= 2; got "
                f"{radius}, {rings}, {histograms}, {orientations}"
            )
        self.radius, self.rings, self.histograms, self.orientations = float(radius), rings, histograms, orientations
        self.daisy_dim = (rings * histograms + 1) * orientations
        self.desc_dim = int(desc_dim or self.daisy_dim)
        self.stem_channels = orientations
        self.kappa = orientations / math.pi
        angles = torch.tensor(
            [2 * math.pi * o / orientations - math.pi for o in range(orientations)], dtype=torch.float64
        )
        self.register_buffer("bin_cos", angles.cos().float(), persistent=False)
        self.register_buffer("bin_sin", angles.sin().float(), persistent=False)
        sigmas = [radius * (i + 1) / (2 * rings) for i in range(rings)]
        self.sigmas = [sigmas[0]] + sigmas  # the centre histogram uses the first ring's width
        self.blur_kernels = self._incremental_kernels()
        offsets = [(0.0, 0.0)]
        for i in range(rings):
            r = radius * (i + 1) / rings
            offsets += [
                (r * math.cos(2 * math.pi * j / histograms), r * math.sin(2 * math.pi * j / histograms))
                for j in range(histograms)
            ]
        self.register_buffer("offsets", torch.tensor(offsets, dtype=torch.float32), persistent=False)
        w = torch.zeros(2, 3, 3, 3)
        for c, g in enumerate(LUMA):
            w[0, c, 1, 0], w[0, c, 1, 2] = -0.5 * g, 0.5 * g  # d/dx
            w[1, c, 0, 1], w[1, c, 2, 1] = -0.5 * g, 0.5 * g  # d/dy
        self.register_buffer("gradient_weight", w, persistent=False)
        self.project = nn.Conv2d(self.daisy_dim, self.desc_dim, 1, bias=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The identity projection (or a random orthonormal one when ``desc_dim`` differs from the DAISY size)."""
        with torch.no_grad():
            if self.desc_dim == self.daisy_dim:
                self.project.weight.copy_(torch.eye(self.daisy_dim).view(self.daisy_dim, self.daisy_dim, 1, 1))
            else:
                nn.init.orthogonal_(self.project.weight)

    def orientation_maps(self, x: torch.Tensor) -> torch.Tensor:
        """``B×O×H×W`` soft orientation histograms ``|g|·exp(κ·cos(θ − o))`` of the luminance gradient ``g``."""
        g = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), self.gradient_weight)
        gx, gy = g[:, 0:1], g[:, 1:2]
        mag = torch.sqrt(gx * gx + gy * gy + 1e-12)
        cos = (gx * self.bin_cos.view(1, -1, 1, 1) + gy * self.bin_sin.view(1, -1, 1, 1)) / mag
        return mag * torch.exp(self.kappa * cos)

    def _incremental_kernels(self) -> list[torch.Tensor | None]:
        """Per width of :attr:`sigmas`, the half-resolution Gaussian that takes the previous level to it (σ² adds
        up, from the 2×2 average's 1/4 px² per axis), or ``None`` when the width repeats."""
        done, kernels = 0.25, []  # variance in full-resolution px² per axis
        for sigma in self.sigmas:
            if sigma**2 > done + 1e-9:
                kernels.append(gaussian_kernel1d(math.sqrt(sigma**2 - done) / 2))
                done = sigma**2
            else:
                kernels.append(None)
        return kernels

    def pooled_maps(self, hist: torch.Tensor) -> list[torch.Tensor]:
        """The orientation maps Gaussian-pooled at each of :attr:`sigmas`, at half resolution.

        ``hist`` is averaged over 2×2 blocks first (a box of variance 1/4 px² per axis), then blurred
        incrementally (:attr:`blur_kernels`) at half resolution: the narrowest width, ``radius / (2·rings)`` (2.5 px
        by default), keeps the pooled maps smooth enough to be sampled there, at a quarter of the full-resolution
        cost.
        """
        x = F.avg_pool2d(hist, 2)
        out = []
        for kernel in self.blur_kernels:
            if kernel is not None:
                x = gaussian_blur(x, kernel)
            out.append(x)
        return out

    def daisy(self, hist: torch.Tensor) -> torch.Tensor:
        """The Hellinger-normalised dense DAISY ``B×daisy_dim×H/4×W/4`` of the orientation maps ``hist``
        (:meth:`orientation_maps`), before the projection.

        Feature cell ``(i, j)`` is centred on image pixel ``(4j + 1.5, 4i + 1.5)``, which is half-resolution pixel
        ``(2j + 0.5, 2i + 0.5)``; a sample point ``(dx, dy)`` pixels away is read bilinearly from the pooled map
        (edges repeated). Every cell shares the point's fractional offset, so each point is two strided slices
        per axis instead of a ``grid_sample`` (whose backward is a slow scatter on CPUs).
        """
        hf, wf = hist.shape[-2] // 4, hist.shape[-1] // 4
        pad = int(math.ceil(self.radius / 2)) + 2
        parts = []
        for level, smooth in enumerate(self.pooled_maps(hist)):
            padded = F.pad(smooth, (pad, pad, pad, pad), mode="replicate")
            pts = (
                self.offsets[:1]
                if level == 0
                else self.offsets[1 + (level - 1) * self.histograms : 1 + level * self.histograms]
            )
            for dx, dy in pts.tolist():
                parts.append(_bilinear_stride2(padded, 0.5 + dx / 2 + pad, 0.5 + dy / 2 + pad, hf, wf))
        d = torch.cat(parts, dim=1)
        d = d / (d.sum(dim=1, keepdim=True) + 1e-10)
        return torch.sqrt(d + 1e-12)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``x``: ``B×3×H×W`` (H, W multiples of 4) → ``local_map`` and ``local_map_small``."""
        check_image_batch(x, 4, "DaisyEncoder")
        hist = self.orientation_maps(x)
        small = F.avg_pool2d(hist, 4)
        small = small / (small.sum(1, keepdim=True) + 1e-6)
        return {"local_map": self.project(self.daisy(hist)), "local_map_small": small}
