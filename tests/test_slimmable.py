"""Slimmable layers: channel rounding, weight slicing, private BN per width, and width switching errors."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from slimseg_ros.training.slimmable import (  # noqa: E402
    SlimmableConv2d,
    SwitchableBatchNorm2d,
    channels,
    get_width,
    make_divisible,
    set_width,
)

WIDTHS = (0.25, 0.5, 0.75, 1.0)


def test_make_divisible_rounds_to_multiples_of_8() -> None:
    assert make_divisible(16) == 16
    assert make_divisible(0.25 * 64) == 16
    assert make_divisible(0.75 * 24) == 24  # 18 -> 16 would drop >10%, so 24
    assert make_divisible(3) == 8  # never below one multiple
    assert channels(WIDTHS, 128) == [32, 64, 96, 128]
    assert all(c % 8 == 0 for c in channels(WIDTHS, 320))


def test_conv_slices_the_widest_weight() -> None:
    conv = SlimmableConv2d(WIDTHS, [3] * 4, channels(WIDTHS, 32), 3, bias=True)
    assert conv.weight.shape == (32, 3, 3, 3)  # allocated once, at the widest width
    x = torch.randn(1, 3, 8, 8)
    set_width(conv, 0.5)
    y = conv(x)
    assert y.shape == (1, 16, 8, 8)
    ref = torch.nn.functional.conv2d(x, conv.weight[:16], conv.bias[:16], padding=1)
    torch.testing.assert_close(y, ref)


def test_narrow_width_trains_only_its_slice() -> None:
    conv = SlimmableConv2d(WIDTHS, channels(WIDTHS, 16), channels(WIDTHS, 32), 3)
    set_width(conv, 0.25)
    conv(torch.randn(1, 8, 6, 6)).square().sum().backward()
    assert conv.weight.grad[:8, :8].abs().sum() > 0
    assert conv.weight.grad[8:].abs().sum() == 0 and conv.weight.grad[:, 8:].abs().sum() == 0


def test_depthwise_groups_follow_width() -> None:
    ch = channels(WIDTHS, 32)
    conv = SlimmableConv2d(WIDTHS, ch, ch, 3, depthwise=True)
    set_width(conv, 0.25)
    y = conv(torch.randn(1, 8, 6, 6))
    assert y.shape == (1, 8, 6, 6)
    plain = conv.to_plain(0)
    assert plain.groups == 8 and plain.weight.shape == (8, 1, 3, 3)


def test_segmented_input_reads_first_channels_of_each_segment() -> None:
    seg_a, seg_b = [2, 4], [1, 2]
    conv = SlimmableConv2d((0.5, 1.0), None, [3, 3], 1, in_segments=[seg_a, seg_b])
    assert conv.weight.shape == (3, 6, 1, 1)
    set_width(conv, 0.5)
    x = torch.randn(1, 3, 2, 2)  # 2 channels of segment a, 1 of segment b
    ref = torch.nn.functional.conv2d(x, conv.weight[:, [0, 1, 4]])
    torch.testing.assert_close(conv(x), ref)
    torch.testing.assert_close(conv.to_plain(0)(x), ref)


def test_switchable_bn_keeps_private_statistics() -> None:
    bn = SwitchableBatchNorm2d(WIDTHS, channels(WIDTHS, 16))
    bn.train()
    set_width(bn, 0.5)
    bn(torch.randn(4, 8, 4, 4) + 5.0)
    assert bn.bn[1].running_mean.mean() > 0.3  # width 0.5 saw the data
    assert torch.count_nonzero(bn.bn[3].running_mean) == 0  # the widest did not
    assert bn.to_plain(1).running_mean.equal(bn.bn[1].running_mean)


def test_set_width_rejects_unknown_width_naming_allowed_ones() -> None:
    conv = SlimmableConv2d(WIDTHS, [3] * 4, channels(WIDTHS, 16), 1)
    with pytest.raises(ValueError, match=r"allowed widths: 0.25, 0.5, 0.75, 1"):
        set_width(conv, 0.6)
    set_width(conv, 0.75000000001)  # float noise from YAML is tolerated
    assert get_width(conv) == 0.75
    with pytest.raises(ValueError, match="no slimmable layers"):
        set_width(torch.nn.Conv2d(3, 3, 1), 1.0)


def test_wrong_channel_list_lengths_are_rejected() -> None:
    with pytest.raises(ValueError, match="out_channels_list has 2 entries for 4 widths"):
        SlimmableConv2d(WIDTHS, [3] * 4, [8, 16], 1)
