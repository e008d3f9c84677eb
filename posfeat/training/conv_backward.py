"""Convolution gradients in channels-last memory order on the CPU: the same training, a faster backward.

On a 2-core CPU, stage 1 spends about half of a step in the backward pass of the U-Net decoder's 3×3 convolutions,
and oneDNN computes those gradients (above all the weight gradient) markedly faster from channels-last (NHWC)
tensors than from the contiguous (NCHW) ones the rest of the network prefers; running the whole network
channels-last (``profile_step.py --channels-last``) gained 7 % on an earlier machine and nothing measurable on
this one, because the other layers lose what the convolutions gain (README, benchmarks).
:class:`ChannelsLastBackwardConv2d` keeps the forward pass as it is and only computes the gradients of a
convolution from channels-last copies of its input and output gradient (the copies cost a few milliseconds;
``benchmarks/speed/profile_step.py --conv-backward``).

The gradients are the same sums in another order (float32 rounding differences only), so a trained model
differs from the plain one in its last bits, as between two CPUs. The stage-1 trainer uses it for the backbone
on the CPU (:func:`use_channels_last_backward`; 2.08 -> 1.82 s a step here, three interleaved runs each); the
stage-2 detector, narrow and mostly at full resolution, was 3 % slower with it and keeps plain layers. Under
autocast, on other devices, without grad or with a non-zero padding mode the layer is a plain ``nn.Conv2d``.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class _ChannelsLastBackward(torch.autograd.Function):
    """``F.conv2d`` whose backward runs on channels-last copies of the input and the output gradient."""

    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding, dilation, groups):
        ctx.save_for_backward(x, weight)
        ctx.conv = (list(stride), list(padding), list(dilation), int(groups), bias is not None)
        return F.conv2d(x, weight, bias, stride, padding, dilation, groups)

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        stride, padding, dilation, groups, has_bias = ctx.conv
        mask = [ctx.needs_input_grad[0], ctx.needs_input_grad[1], has_bias and ctx.needs_input_grad[2]]
        nhwc = torch.channels_last
        gx, gw, gb = torch.ops.aten.convolution_backward(
            grad.contiguous(memory_format=nhwc),
            x.contiguous(memory_format=nhwc),
            weight,
            [weight.shape[0]] if has_bias else None,
            stride,
            padding,
            dilation,
            False,
            [0, 0],
            groups,
            mask,
        )
        gx = None if gx is None else gx.contiguous()
        gw = None if gw is None else gw.contiguous()
        return gx, gw, gb, None, None, None, None


class ChannelsLastBackwardConv2d(nn.Conv2d):
    """An ``nn.Conv2d`` (same parameters, same state dict, same forward) whose gradients are computed in
    channels-last order when it trains on the CPU in float32."""

    def _conv_forward(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        plain = (
            self.padding_mode != "zeros"
            or isinstance(self.padding, str)
            or x.device.type != "cpu"
            or not torch.is_grad_enabled()
            or torch.is_autocast_enabled("cpu")
            or x.dim() != 4
        )
        if plain:
            return super()._conv_forward(x, weight, bias)
        return _ChannelsLastBackward.apply(x, weight, bias, self.stride, self.padding, self.dilation, self.groups)


def use_channels_last_backward(module: nn.Module) -> int:
    """Turn every plain ``nn.Conv2d`` of ``module`` into a :class:`ChannelsLastBackwardConv2d` in place
    (parameters and buffers untouched); returns how many were turned."""
    n = 0
    for m in module.modules():
        if type(m) is nn.Conv2d:
            m.__class__ = ChannelsLastBackwardConv2d
            n += 1
    return n
