"""PoSFeat networks: shapes per encoder, parameter counts, detector decoupling, checkpoints, ImageNet weights."""

from __future__ import annotations

import pytest
import torch
import torchvision

from posfeat.io import DataError
from posfeat.models import (
    DEFAULT_CONFIG,
    KeypointDet,
    ResUNet,
    build_model,
    load_checkpoint,
    normalize_image,
    pretrained_weights_path,
    save_checkpoint,
)

SMALL = {"encoder": "small", "det_conv1": 16, "det_img": 8, "det_mid": 8}


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("encoder,stem", [("small", 32), ("resnet18", 64), ("resnet34", 64), ("resnet50", 64)])
def test_model_shapes_every_encoder(encoder, stem):
    torch.manual_seed(0)
    model = build_model({"encoder": encoder, "det_conv1": 16, "det_img": 8, "det_mid": 8}).eval()
    x = normalize_image(torch.rand(2, 3, 64, 96))
    with torch.no_grad():
        out = model(x)
    assert out["local_map"].shape == (2, 128, 16, 24)
    assert out["local_map_small"].shape == (2, stem, 16, 24)
    assert out["score"].shape == (2, 1, 64, 96)
    assert (out["local_map"] > -1).all()  # post-ELU descriptor
    assert (out["score"] >= 0).all() and torch.isfinite(out["score"]).all()
    assert "global_map" not in out


def test_global_map_and_desc_dim():
    net = ResUNet("small", desc_dim=64, global_map=True).eval()
    with torch.no_grad():
        out = net(torch.randn(1, 3, 48, 64))
    assert out["local_map"].shape == (1, 64, 12, 16) and out["global_map"].shape == (1, 128, 3, 4)


def test_parameter_counts_match_the_paper():
    """The official counts: ResUNet-50 (with the unused coarse head) 20,508,992; KeypointDet(192) 628,930."""
    assert _count(ResUNet("resnet50", global_map=True)) == 8_543_296 + 11_965_696
    assert _count(KeypointDet(192)) == 628_930
    det = KeypointDet(192)
    assert sum(isinstance(m, torch.nn.PReLU) for m in det.modules()) == 1  # one shared PReLU


def _conv_macs(module: torch.nn.Module, x: torch.Tensor, prefix: str) -> int:
    """Multiply-adds of the Conv2d layers whose names start with ``prefix``, counted with forward hooks."""
    macs, hooks = [0], []
    for name, m in module.named_modules():
        if isinstance(m, torch.nn.Conv2d) and name.startswith(prefix):

            def hook(mod, inp, out):
                macs[0] += out.numel() * (mod.in_channels // mod.groups) * mod.kernel_size[0] * mod.kernel_size[1]

            hooks.append(m.register_forward_hook(hook))
    with torch.no_grad():
        module(x)
    for h in hooks:
        h.remove()
    return macs[0]


def test_light_decoder_blocks():
    """``decoder_block: light``: the same outputs' shapes; each iconv is depthwise 3×3 + pointwise 1×1 (so
    ``c_in·c_out·8 + bias`` fewer weights than a full 3×3 conv, less the depthwise ``9·c_in``), and the
    decoder costs under a fifth of the paper blocks' multiply-adds; ``conv`` stays the default."""
    x = torch.randn(1, 3, 64, 96)
    nets = {b: ResUNet("small", decoder=(256, 128), decoder_block=b).eval() for b in ("conv", "light")}
    with torch.no_grad():
        outs = {b: net(x) for b, net in nets.items()}
    assert outs["light"]["local_map"].shape == outs["conv"]["local_map"].shape == (1, 128, 16, 24)
    saved = 0
    for c_in, c_out in ((128 + 256, 256), (64 + 128, 128)):  # iconv3, iconv2
        saved += (9 * c_in * c_out + c_out) - (9 * c_in + c_in * c_out + c_out)
    assert _count(nets["conv"]) - _count(nets["light"]) == saved == 977_856
    dec = ("upconv", "iconv")
    macs = {b: sum(_conv_macs(net, x, p) for p in dec) for b, net in nets.items()}
    assert macs["light"] < macs["conv"] / 5
    assert DEFAULT_CONFIG["decoder_block"] == "conv"
    with pytest.raises(ValueError, match="decoder_block"):
        build_model({**SMALL, "decoder_block": "mobile"})


def test_bad_inputs_are_clear_errors():
    net = ResUNet("small")
    with pytest.raises(ValueError, match="multiples of 16"):
        net(torch.randn(1, 3, 40, 64))
    with pytest.raises(ValueError, match="B×3×H×W"):
        net(torch.randn(3, 32, 32))
    with pytest.raises(ValueError, match="unknown encoder"):
        ResUNet("vgg16")
    with pytest.raises(ValueError, match="unknown model config"):
        build_model({"encoder": "small", "depth": 3})
    with pytest.raises(ValueError, match="feature channels"):
        KeypointDet(192)(torch.randn(1, 100, 8, 8), torch.randn(1, 3, 32, 32))


def test_detector_is_decoupled_from_backbone():
    torch.manual_seed(0)
    model = build_model(SMALL)
    out = model(normalize_image(torch.rand(1, 3, 32, 48)))
    out["score"].sum().backward()
    assert all(p.grad is None for p in model.backbone.parameters())
    assert all(p.grad is not None for p in model.detector.parameters())


def test_score_is_instance_normalised_per_image():
    """IN on the single output channel: the pre-Softplus logit has zero mean per image, for any input scale."""
    torch.manual_seed(0)
    det = KeypointDet(24, conv1_channels=8, img_channels=4, mid_channels=8).eval()
    f, img = torch.randn(2, 24, 8, 8), torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        s = det(f, img)
        s_scaled = det(10 * f, 10 * img)
    logit = torch.log(torch.expm1(s))  # inverse Softplus
    assert torch.allclose(logit.mean((1, 2, 3)), torch.zeros(2), atol=1e-4)
    assert not torch.allclose(s, s_scaled)  # the conv biases make it scale-dependent, but still normalised
    assert torch.allclose(torch.log(torch.expm1(s_scaled)).mean((1, 2, 3)), torch.zeros(2), atol=1e-4)


def test_input_norm_standardize_ignores_gain_offset_and_cast():
    """``input_norm: standardize``: the outputs of a per-channel affine change of the image (darker, tinted)
    equal the original's; ``imagenet`` (the paper) does not; the setting travels with the config; a bad value
    is refused."""
    torch.manual_seed(0)
    img = torch.rand(1, 3, 32, 48)
    dark = img * torch.tensor([0.3, 0.2, 0.1]).view(1, 3, 1, 1) + 0.02
    for norm, same in (("standardize", True), ("imagenet", False)):
        torch.manual_seed(0)
        model = build_model({**SMALL, "input_norm": norm}).eval()
        with torch.no_grad():
            a, b = model(normalize_image(img)), model(normalize_image(dark))
        for key in ("local_map", "score"):
            assert torch.allclose(a[key], b[key], atol=1e-4) is same, (norm, key)
    assert model.config["input_norm"] == "imagenet" and DEFAULT_CONFIG["input_norm"] == "imagenet"
    with pytest.raises(ValueError, match="input_norm"):
        build_model({**SMALL, "input_norm": "clahe"})


def test_checkpoint_round_trip_weights_only(tmp_path):
    torch.manual_seed(0)
    model = build_model(SMALL)
    model.train()
    model(normalize_image(torch.rand(2, 3, 32, 32)))  # move BN running statistics away from their init
    model.eval()
    path = tmp_path / "model.pt"
    save_checkpoint(path, model, extra={"step": 7, "stage": "desc", "history": [1.0, 2.0]})
    raw = torch.load(path, map_location="cpu", weights_only=True)  # no pickle of arbitrary objects
    assert raw["config"] == {**DEFAULT_CONFIG, **SMALL}
    loaded, extra = load_checkpoint(path)
    assert extra == {"step": 7, "stage": "desc", "history": [1.0, 2.0]}
    assert loaded.config == model.config
    x = normalize_image(torch.rand(1, 3, 32, 48))
    loaded.eval()
    with torch.no_grad():
        a, b = model(x), loaded(x)
    for k in ("local_map", "local_map_small", "score"):
        assert torch.equal(a[k], b[k]), k
    assert not list(tmp_path.glob("*.tmp*"))  # atomic write leaves nothing behind


def test_checkpoint_strips_ddp_prefix_and_rejects_bad_files(tmp_path):
    torch.manual_seed(0)
    model = build_model(SMALL)
    state = {
        "config": dict(model.config),
        "backbone": {"module." + k: v for k, v in model.backbone.state_dict().items()},
        "detector": {"module." + k: v for k, v in model.detector.state_dict().items()},
    }
    torch.save(state, tmp_path / "ddp.pt")
    loaded, extra = load_checkpoint(tmp_path / "ddp.pt")
    assert extra == {}
    assert torch.equal(loaded.backbone.conv_fine[0].weight, model.backbone.conv_fine[0].weight)

    with pytest.raises(DataError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match="junk.pt"):
        load_checkpoint(tmp_path / "junk.pt")
    torch.save({"weights": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(DataError, match="expected a dict with keys"):
        load_checkpoint(tmp_path / "other.pt")
    bad = dict(state, config={**model.config, "desc_dim": 64})
    torch.save(bad, tmp_path / "mismatch.pt")
    with pytest.raises(DataError, match="does not match"):
        load_checkpoint(tmp_path / "mismatch.pt")


def test_pretrained_absent_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    path = pretrained_weights_path("resnet18")
    assert str(path).startswith(str(tmp_path)) and path.name.startswith("resnet18")
    with pytest.raises(DataError, match="not found") as err:
        build_model({"encoder": "resnet18", "pretrained": True})
    message = str(err.value)  # one line: the file, where it comes from, and the switch that does without it
    assert str(path) in message and "https://download.pytorch.org/models/resnet18" in message
    assert "-S model.pretrained=false" in message and "\n" not in message
    with pytest.raises(ValueError, match="no ImageNet weights"):
        build_model({"encoder": "small", "pretrained": True})


def test_pretrained_loaded_from_local_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    torch.manual_seed(1)
    reference = torchvision.models.resnet18(weights=None)
    path = pretrained_weights_path("resnet18")
    path.parent.mkdir(parents=True)
    torch.save(reference.state_dict(), path)
    net = ResUNet("resnet18", pretrained=True)
    assert torch.equal(net.firstconv.weight, reference.conv1.weight)
    assert torch.equal(net.layer3[1].conv2.weight, reference.layer3[1].conv2.weight)
    # a checkpoint of a pretrained model reloads without needing the ImageNet file
    save_checkpoint(tmp_path / "m.pt", build_model({"encoder": "resnet18", "pretrained": True, "det_mid": 8}))
    path.unlink()
    loaded, _ = load_checkpoint(tmp_path / "m.pt")
    assert torch.equal(loaded.backbone.firstconv.weight, reference.conv1.weight)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_checkpoint_loads_on_gpu(tmp_path):
    model = build_model(SMALL).eval()
    save_checkpoint(tmp_path / "m.pt", model)
    loaded, _ = load_checkpoint(tmp_path / "m.pt", map_location="cuda")
    assert next(loaded.parameters()).device.type == "cuda"
    x = normalize_image(torch.rand(1, 3, 32, 48))
    with torch.no_grad():
        a, b = model(x)["score"], loaded.eval()(x.cuda())["score"].cpu()
    assert torch.allclose(a, b, atol=1e-4)


def test_bfloat16_autocast_model_is_close_to_float32():
    """Under bfloat16 autocast (the study's ``amp`` on a CPU with native bf16) the backbone and the detector run
    in bfloat16 but the detector's output layer in float32: the score map is float32 with (almost) no ties
    for the NMS, and both maps follow the float32 model's closely."""
    torch.manual_seed(0)
    model = build_model({"encoder": "small", "det_conv1": 16, "det_img": 8, "det_mid": 8}).eval()
    x = torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        ref = model(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(x)
    assert out["score"].dtype == torch.float32 and out["local_map"].dtype == torch.bfloat16
    for k in ("score", "local_map"):
        r = torch.corrcoef(torch.stack([ref[k].flatten(), out[k].float().flatten()]))[0, 1]
        assert r > 0.98, (k, float(r))
    assert out["score"].unique().numel() > 0.9 * out["score"].numel()


def test_start_line_names_device_model_data_and_steps():
    from posfeat.models import build_model
    from posfeat.utils import start_line

    model = build_model({"encoder": "small", "det_conv1": 16, "det_img": 8, "det_mid": 8})
    for p in model.backbone.parameters():
        p.requires_grad_(False)
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for n, p in model.named_parameters() if not n.startswith("backbone."))
    line = start_line("train_kp", "cpu", model, "12 training pairs", "0 -> 80")
    assert line.startswith("train_kp: device cpu, torch ")
    assert f"model small 128-d, {total / 1e6:.2f} M parameters ({trainable / 1e6:.2f} M trainable)" in line
    assert line.endswith("data 12 training pairs, steps 0 -> 80")
    assert (
        start_line("eval-eth x", None, "sift", "6 images")
        == f"eval-eth x: torch {torch.__version__}, model sift, data 6 images"
    )
