"""The small time-conditioned UNet: shapes, gradients, time dependence, size."""
import pytest
import torch

from dgmdsl.nn.unet import UNet


def test_output_shape_on_28x28():
    torch.manual_seed(0)
    net = UNet(1, 1, channels=[32, 64], time_embedding=64, image_size=(28, 28))
    out = net(torch.randn(2, 1, 28, 28), torch.rand(2))
    assert out.shape == (2, 1, 28, 28) and torch.isfinite(out).all()


def test_three_levels_handle_odd_sizes_and_channel_counts():
    torch.manual_seed(0)
    net = UNet(3, 2, channels=[16, 32, 48], time_embedding=32, image_size=(28, 28))  # 28 -> 14 -> 7
    assert net(torch.randn(2, 3, 28, 28), torch.rand(2)).shape == (2, 2, 28, 28)
    odd = UNet(1, 1, channels=[8, 16], time_embedding=16, image_size=(7, 9))
    assert odd(torch.randn(3, 1, 7, 9), torch.rand(3)).shape == (3, 1, 7, 9)


def test_gradients_reach_every_parameter():
    torch.manual_seed(0)
    net = UNet(1, 1)
    x = torch.randn(2, 1, 28, 28, requires_grad=True)
    net(x, torch.rand(2)).pow(2).mean().backward()
    for name, param in net.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name
    assert x.grad.abs().sum() > 0


def test_time_changes_the_output_per_example():
    torch.manual_seed(0)
    net = UNet(1, 1)
    x = torch.randn(1, 1, 28, 28).expand(2, 1, 28, 28)
    out = net(x, torch.tensor([0.1, 0.9]))
    assert (out[0] - out[1]).abs().max() > 1e-3
    # a scalar time is broadcast over the batch
    torch.testing.assert_close(net(x, torch.tensor(0.1))[0], out[0])


def test_size_is_small_and_wrong_image_size_is_rejected():
    net = UNet(1, 1, channels=[32, 64], time_embedding=64)
    assert 100_000 < sum(p.numel() for p in net.parameters()) < 1_000_000
    with pytest.raises(ValueError, match="28, 28"):
        net(torch.randn(1, 1, 32, 32), torch.rand(1))
