"""Channels-last convolution gradients (posfeat.training.conv_backward): the same layer, the same gradients."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn

from posfeat.models import build_model
from posfeat.training.conv_backward import ChannelsLastBackwardConv2d, use_channels_last_backward


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(in_channels=6, out_channels=5, kernel_size=3, padding=1),
        dict(in_channels=6, out_channels=4, kernel_size=3, stride=2, padding=1, bias=False),
        dict(in_channels=6, out_channels=6, kernel_size=3, padding=1, groups=3),
        dict(in_channels=6, out_channels=3, kernel_size=1),
        dict(in_channels=6, out_channels=4, kernel_size=7, stride=2, padding=3, dilation=1),
    ],
)
def test_gradients_equal_plain_conv(kwargs):
    """Input, weight and bias gradients of a turned layer equal nn.Conv2d's (float64: to rounding)."""
    torch.manual_seed(0)
    plain = nn.Conv2d(**kwargs).double()
    turned = copy.deepcopy(plain)
    assert use_channels_last_backward(turned) == 1
    assert isinstance(turned, ChannelsLastBackwardConv2d)
    x = torch.randn(2, 6, 13, 17, dtype=torch.float64)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    ya, yb = plain(xa), turned(xb)
    torch.testing.assert_close(yb, ya, rtol=0, atol=0)  # the forward is untouched
    g = torch.randn_like(ya)
    ya.backward(g)
    yb.backward(g)
    torch.testing.assert_close(xb.grad, xa.grad, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(turned.weight.grad, plain.weight.grad, rtol=1e-12, atol=1e-12)
    if plain.bias is not None:
        torch.testing.assert_close(turned.bias.grad, plain.bias.grad, rtol=1e-12, atol=1e-12)
    assert xb.grad.is_contiguous() and turned.weight.grad.is_contiguous()


def test_input_without_grad_and_frozen_weight():
    """Only the gradients asked for are computed (an image input, a frozen weight)."""
    conv = nn.Conv2d(3, 4, 3, padding=1)
    use_channels_last_backward(conv)
    conv.weight.requires_grad_(False)
    x = torch.randn(1, 3, 8, 8)
    conv(x).sum().backward()
    assert conv.weight.grad is None
    assert conv.bias.grad is not None
    torch.testing.assert_close(conv.bias.grad, torch.full((4,), 64.0))


def test_backbone_turned_in_place_keeps_state_and_outputs():
    """The ResUNet keeps its state dict and outputs; its training gradients match the plain network's."""
    torch.manual_seed(0)
    model = build_model(
        {"encoder": "small", "decoder": [32, 16], "desc_dim": 16, "det_conv1": 8, "det_img": 4, "det_mid": 8}
    )
    turned = copy.deepcopy(model)
    n = use_channels_last_backward(turned.backbone)
    assert n == sum(type(m) is nn.Conv2d for m in model.backbone.modules()) > 0
    assert turned.state_dict().keys() == model.state_dict().keys()
    x = torch.randn(2, 3, 64, 80)
    outs = []
    for m in (model, turned):
        m.backbone.train()
        y = m.backbone(x)["local_map"]
        y.square().mean().backward()
        outs.append((y.detach(), [p.grad for p in m.backbone.parameters()]))
    torch.testing.assert_close(outs[1][0], outs[0][0], rtol=0, atol=0)
    for ga, gb in zip(outs[0][1], outs[1][1]):
        torch.testing.assert_close(gb, ga, rtol=1e-4, atol=1e-6)
    with torch.no_grad():  # no grad: a plain convolution
        torch.testing.assert_close(turned.backbone(x)["local_map"], model.backbone(x)["local_map"], rtol=0, atol=0)
