"""loralab's dropout: the keep mask of Bernoulli(1 - p), scaled by 1 / (1 - p), seeded by torch."""

import pytest
import torch

from loralab.dropout import dropout


@pytest.mark.parametrize("p", [0.1, 0.5])
def test_fast_dropout_keeps_one_minus_p_and_rescales(p):
    module = torch.nn.Dropout(p).train()
    x = torch.ones(1000, 1000, requires_grad=True)
    torch.manual_seed(0)
    out = dropout(x, module)
    kept = out != 0
    assert abs(kept.float().mean().item() - (1 - p)) < 0.003  # 1e6 draws: s.d. 0.0003
    torch.testing.assert_close(out[kept], torch.full_like(out[kept], 1 / (1 - p)))
    out.sum().backward()
    torch.testing.assert_close(x.grad, out.detach())  # the gradient is the same mask, same scale
    torch.manual_seed(0)
    assert torch.equal(dropout(x, module), out)  # seeded by torch's generator
    assert not torch.equal(dropout(x, module), out)
    assert dropout(x, module.eval()) is x


def test_identity_and_zero_p_return_the_input():
    x = torch.randn(5, 7)
    assert dropout(x, torch.nn.Identity().train()) is x
    assert dropout(x, torch.nn.Dropout(0.0).train()) is x
