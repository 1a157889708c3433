"""Helpers for parity tests against the `transformers` PyTorch port."""

import torch


def unit_scale_(model, seed=0):
    """Re-initialises a torch model in place so every activation is O(1).

    Linear/Conv weights normal/sqrt(fan_in); non-trivial biases, LayerNorm and
    BatchNorm parameters and running statistics; latents, queries, position
    tables and other free parameters unit normal. At the default 0.02 init the
    outputs are ~5e-3 and an absolute tolerance would mean little.
    """
    g = torch.Generator().manual_seed(seed)

    def normal(p, scale=1.0):
        p.copy_(torch.randn(p.shape, generator=g) * scale)

    with torch.no_grad():
        done = set()
        for module in model.modules():
            if isinstance(module, (torch.nn.Linear, torch.nn.Conv2d)):
                normal(module.weight, module.weight[0].numel() ** -0.5)
                if module.bias is not None:
                    normal(module.bias, 0.2)
            elif isinstance(module, (torch.nn.LayerNorm, torch.nn.BatchNorm2d)):
                module.weight.copy_(1 + 0.2 * torch.randn(module.weight.shape, generator=g))
                normal(module.bias, 0.2)
                if isinstance(module, torch.nn.BatchNorm2d):
                    normal(module.running_mean, 0.3)
                    module.running_var.copy_(0.5 + torch.rand(module.running_var.shape, generator=g))
            else:
                continue
            done.update(id(p) for p in module.parameters())
        for p in model.parameters():
            if id(p) not in done:
                normal(p)
    return model.eval()
