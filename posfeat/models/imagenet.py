"""The ImageNet weights of the ResNet encoders: where torch keeps them, fetching them checksum-verified, and the
record DVC tracks.

torchvision names each weights file ``<arch>-<first 8 hex digits of its SHA-256>.pth``; a file in torch's hub cache
(``$TORCH_HOME/hub/checkpoints``) is accepted only when its SHA-256 starts with those digits. Nothing here runs
during training: the ``preflight`` stage fetches what is missing (or stops the run, naming the file and the URL),
and the ``imagenet`` stage records the checksum that the training stage depends on.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from posfeat.io import DataError

DOWNLOAD_TIMEOUT = 60.0
"""seconds without an answer after which a download of ImageNet weights gives up"""


def _weights(encoder: str):
    from posfeat.models.resunet import _TORCHVISION_WEIGHTS

    return _TORCHVISION_WEIGHTS.get(encoder)


def has_imagenet_weights(encoder: str) -> bool:
    """Whether torchvision publishes ImageNet weights for ``encoder``."""
    return _weights(encoder) is not None


def weights_url(encoder: str) -> str:
    """The URL torchvision publishes ``encoder``'s ImageNet weights at."""
    return _weights(encoder).url


def expected_sha256_prefix(encoder: str) -> str:
    """The leading hex digits of the weights' SHA-256, as torchvision's file name carries them."""
    return Path(weights_url(encoder)).stem.rsplit("-", 1)[-1]


def sha256(path: Path) -> str:
    """The SHA-256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _download(url: str, path: Path, prefix: str) -> None:
    """``url`` to ``path`` through torch.hub, which checks the SHA-256 prefix and writes atomically."""
    import socket

    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    before = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT)  # torch.hub's urlopen takes no timeout of its own
    try:
        torch.hub.download_url_to_file(url, str(path), hash_prefix=prefix, progress=False)
    finally:
        socket.setdefaulttimeout(before)


def fetch_weights(encoder: str) -> Path:
    """``encoder``'s ImageNet weights in torch's cache, checked; downloaded there (checksum-verified) when absent.

    Raises:
        DataError: one line naming the file, the URL and ``-S model.pretrained=false``, when the file cannot be
            fetched (no network), or when the cached file's checksum is not the published one.
    """
    from posfeat.models.resunet import pretrained_weights_path

    path, url, prefix = pretrained_weights_path(encoder), weights_url(encoder), expected_sha256_prefix(encoder)
    if not path.is_file():
        try:
            _download(url, path, prefix)
        except (OSError, RuntimeError, ValueError) as e:  # URLError is an OSError; a bad hash a RuntimeError
            raise DataError(
                f"{path}: ImageNet weights of {encoder} not found and {url} could not be fetched "
                f"({' '.join(str(e).split())[:160]}); put that file there, or add -S model.pretrained=false"
            ) from None
    digest = sha256(path)
    if not digest.startswith(prefix):
        raise DataError(
            f"{path}: SHA-256 {digest[:16]}… is not that of {url} (starts with {prefix}); delete the file to "
            "fetch it again, or add -S model.pretrained=false"
        )
    return path


def weights_record(encoder: str, pretrained: bool) -> dict:
    """What the training stage depends on: no ImageNet weights, or the file name, URL and SHA-256 of those used."""
    if not pretrained or not has_imagenet_weights(encoder):
        return {"pretrained": False}
    path = fetch_weights(encoder)
    return {
        "pretrained": True,
        "encoder": encoder,
        "file": path.name,
        "url": weights_url(encoder),
        "sha256": sha256(path),
    }


__all__ = ["expected_sha256_prefix", "fetch_weights", "has_imagenet_weights", "weights_record", "weights_url"]
