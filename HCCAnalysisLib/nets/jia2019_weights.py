"""The pretrained ResNet20(+SPP) weights released by Jia et al. 2019 (xyj77/Multi-scale-ResNet).

Their state dicts (`models/*.pkl`) hold a `ClassificationNet`: `embedding_net.*` (the
ResNet20 backbone, `embedding_net.linear` = the embedding layer) and `linear` (the
classifier, no bias). Old PyTorch saved them without `num_batches_tracked`.

- `load_jia2019_file(path)`: a plain state dict or an HCCInputError (weights_only load).
- `from_jia2019(state_dict)`: our `ResNet20SPP` rebuilt from the tensor shapes, giving
  the authors' class logits (their forward returns `log_softmax` of these).
- `transfer_pretrained(net, state_dict)`: copy all matching backbone/embedding weights
  for fine-tuning; a classifier of another class count stays freshly initialised.
"""

from __future__ import annotations

import collections
import collections.abc
import os
import pickle
from collections.abc import Mapping, Sequence

import torch

from HCCAnalysisLib.errors import HCCInputError
from HCCAnalysisLib.nets.resnet_spp import STAGE_CHANNELS, ResNet20SPP

PREFIX = "embedding_net."
REQUIRED_KEYS = ("embedding_net.conv1.weight", "embedding_net.linear.weight", "linear.weight")
MAX_PYRAMID_LEVEL = 8

TransferReport = collections.namedtuple("TransferReport", "loaded skipped")
TransferReport.__doc__ = "Keys of our net set from the pretrained dict (`loaded`) and left as they were (`skipped`)."


def jia_key_to_ours(key: str) -> str | None:
    """Map an authors' key to ours: embedding_net.X -> X, embedding_net.linear -> embedding, linear -> classifier."""
    if key.startswith(PREFIX):
        key = key[len(PREFIX):]
        return "embedding" + key[len("linear"):] if key.startswith("linear.") else key
    return "classifier" + key[len("linear"):] if key.startswith("linear.") else None


def load_jia2019_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Load one released `.pkl` safely (weights_only=True) and check it is a plain state dict."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise HCCInputError("no such weights file", source=path, hint="the authors' files are *_dict*.pkl")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, AttributeError, TypeError, KeyError,
            IndexError, UnicodeDecodeError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise HCCInputError(
            f"not a plain PyTorch state dict (refused by the weights-only loader: {first_line})", source=path,
            hint="only tensors may be stored; a pickled model object is never executed") from None
    check_state_dict(state, source=path)
    return state


def check_state_dict(state: object, source: object = None) -> None:
    """Raise HCCInputError unless `state` is a str -> tensor mapping with the authors' layout."""
    if not isinstance(state, collections.abc.Mapping):
        raise HCCInputError(f"expected a state dict (mapping of names to tensors), got {type(state).__name__}",
                            source=source)
    bad = [key for key, value in state.items() if not isinstance(key, str) or not isinstance(value, torch.Tensor)]
    if bad:
        raise HCCInputError(f"state dict entries that are not tensors: {bad[:5]}", source=source)
    missing = [key for key in REQUIRED_KEYS if key not in state]
    if missing:
        raise HCCInputError(f"not a Jia 2019 ResNet20 state dict: missing {missing}", source=source,
                            hint="keys look like embedding_net.conv1.weight, embedding_net.linear.weight, "
                                 "linear.weight")


def pyramid_from_features(n_features: int, source: object = None) -> tuple[int, ...] | None:
    """Pyramid levels from the embedding layer's input width.

    64 features is the authors' GAP network (`resnet.py`; their SPP with the single
    level 1 would also give 64, but no such file was released); 64 * (1 + 4 + ... + n^2)
    means levels 1..n, e.g. 320 -> (1, 2).
    """
    channels = STAGE_CHANNELS[-1]
    if n_features == channels:
        return None
    total = 0
    for n in range(1, MAX_PYRAMID_LEVEL + 1):
        total += n * n
        if channels * total == n_features:
            return tuple(range(1, n + 1))
    raise HCCInputError(f"embedding layer takes {n_features} features, which matches no pyramid 1..n of "
                        f"{channels} channels", source=source, hint="pass pyramid=... explicitly")


def from_jia2019(state_dict: Mapping[str, torch.Tensor], pyramid: str | Sequence[int] | None = "auto",
                 source: object = None) -> ResNet20SPP:
    """Our ResNet20SPP (eval mode) holding the authors' weights; same logits as their model.

    Input channels, embedding size, class count and (unless given) the pyramid levels
    are read from the tensor shapes.
    """
    check_state_dict(state_dict, source=source)
    conv1 = state_dict["embedding_net.conv1.weight"]
    embedding = state_dict["embedding_net.linear.weight"]
    classifier = state_dict["linear.weight"]
    if conv1.dim() != 4 or conv1.shape[0] != STAGE_CHANNELS[0] or embedding.dim() != 2 or classifier.dim() != 2:
        raise HCCInputError("tensor shapes do not match the ResNet20 layout", source=source,
                            hint=f"conv1 {tuple(conv1.shape)}, embedding {tuple(embedding.shape)}")
    if pyramid == "auto":
        pyramid = pyramid_from_features(embedding.shape[1], source=source)
    net = ResNet20SPP(in_channels=int(conv1.shape[1]), num_classes=int(classifier.shape[0]),
                      embedding_dim=int(embedding.shape[0]), pyramid=pyramid,
                      classifier_bias="linear.bias" in state_dict)
    ours = {}
    for key, value in state_dict.items():
        our_key = jia_key_to_ours(key)
        if our_key is None:
            raise HCCInputError(f"unexpected key '{key}' in a Jia 2019 state dict", source=source)
        ours[our_key] = value
    try:
        missing, unexpected = net.load_state_dict(ours, strict=False)
    except RuntimeError as error:
        lines = [line.strip() for line in str(error).splitlines() if "size mismatch" in line]
        raise HCCInputError(f"state dict does not fit ResNet20: {'; '.join(lines[:3]) or str(error)[:300]}",
                            source=source) from None
    missing = [key for key in missing if not key.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise HCCInputError(f"state dict does not fit ResNet20: missing {missing[:5]}, unexpected {unexpected[:5]}",
                            source=source)
    return net.eval()


FIRST_CONV = "conv1.weight"


def spread_grey_kernel(weight: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """A single-channel first conv (the MNIST weights) for a net of C input channels: w / C in each.

    A one-phase run replicates its grey image into every channel (data.preprocess.fused_volumes),
    so sum_c (w / C) * x = w * x: the network sees exactly what the MNIST network saw (Jia 2019
    sec. 4.1 pretrains single-mode patches on MNIST). Other shapes are returned unchanged.
    """
    if weight.dim() == 4 and len(shape) == 4 and weight.shape[1] == 1 and shape[1] > 1 \
            and weight.shape[0] == shape[0] and weight.shape[2:] == shape[2:]:
        return weight.expand(-1, shape[1], -1, -1) / shape[1]
    return weight


def transfer_pretrained(net: torch.nn.Module, state_dict: Mapping[str, torch.Tensor],
                        source: object = None) -> TransferReport:

    """Copy every pretrained tensor whose key and shape match into `net` (fine-tuning).

    The paper fine-tunes all layers but the output layer: a classifier of a different
    class count (or embedding size) keeps its fresh initialisation; a one-channel first
    convolution is spread over the net's channels (`spread_grey_kernel`).
    Returns TransferReport(loaded, skipped) with our-net keys; refuses a dict from
    which no backbone tensor fits.
    """
    check_state_dict(state_dict, source=source)
    ours = {}
    for key, value in state_dict.items():
        our_key = jia_key_to_ours(key)
        if our_key is not None:
            ours[our_key] = value
    target = net.state_dict()
    loaded, skipped = [], []
    with torch.no_grad():
        for key, tensor in target.items():
            value = ours.get(key)
            if key == FIRST_CONV and value is not None:
                value = spread_grey_kernel(value, tensor.shape)
            if value is not None and value.shape == tensor.shape:
                tensor.copy_(value)  # state_dict tensors share storage with the net
                loaded.append(key)
            elif not key.endswith("num_batches_tracked"):
                skipped.append(key)
    if not any(key.startswith("layer") for key in loaded):
        raise HCCInputError("no backbone weight of the pretrained dict fits this network", source=source,
                            hint="the network must be a ResNet20 (nets.resnet_spp)")
    return TransferReport(loaded, skipped)
