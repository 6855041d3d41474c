"""Small network helpers for tests."""

import torch


def randomise_batchnorm(net):
    """Batch-norm statistics and affine weights away from their identity start (from torch's current
    RNG), so that folding them into the convolutions, or dropping them, changes the outputs."""
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.3, 0.3)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
    return net
