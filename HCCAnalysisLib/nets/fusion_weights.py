"""Load locally stored pretrained backbone weights (nothing is downloaded at run time).

Accepted files: `.safetensors`, or a PyTorch state dict read with `weights_only=True`
(no pickle code runs), optionally wrapped as {"state_dict": ...} or {"model": ...} and
with a "module." prefix (DataParallel). ImageNet weights of timm's `inception_resnet_v2`
and of timm's or torchvision's `resnet50` (same key names) fit.

- The ImageNet classifier (1000 classes) is dropped: the task head is trained afresh.
- The stem convolution is adapted when the file was trained on another number of input
  channels: timm's `adapt_input_conv` repeats the RGB kernels cyclically over the new
  channels and scales them by 3 / C (so a uniform input gives the same response), or sums
  them for a single channel.
- Anything else that does not match (missing or extra keys, other shapes) is refused with
  an HCCInputError that names the file and the first offending keys.
"""

from __future__ import annotations

from pathlib import Path

from typing import Any

import torch

from HCCAnalysisLib.errors import HCCInputError


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A flat name -> tensor dict from a safetensors or torch file, or HCCInputError."""
    path = Path(path)
    if not path.is_file():
        raise HCCInputError("pretrained weights file not found", source=path,
                            hint="give the path of a local .safetensors or .pth file")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file
            state = load_file(str(path), device="cpu")
        else:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt, truncated, pickled code, wrong format
        raise HCCInputError(f"cannot read pretrained weights ({type(exc).__name__}: "
                            f"{str(exc).splitlines()[0][:200] if str(exc) else ''})", source=path,
                            hint="expected a .safetensors file or a torch state dict "
                                 "saved with torch.save(model.state_dict(), ...)") from None
    if isinstance(state, dict):
        for wrapper in ("state_dict", "model"):
            if isinstance(state.get(wrapper), dict):
                state = state[wrapper]
    if not isinstance(state, dict) or not state or \
            not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise HCCInputError("pretrained weights file does not hold a state dict of tensors",
                            source=path)
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}


def _first(names, n=5):
    names = sorted(names)
    more = f" (+{len(names) - n} more)" if len(names) > n else ""
    return ", ".join(names[:n]) + more


def load_backbone_weights(backbone: torch.nn.Module, path: str | Path, first_conv: str, classifier: str,
                          arch: str) -> dict[str, Any]:

    """Load `path` into a timm `backbone` built with num_classes=0; return a short report.

    `first_conv` / `classifier` are the module names from timm's pretrained_cfg;
    `arch` names the expected architecture in error messages.
    """
    from timm.models import adapt_input_conv

    state = read_state_dict(path)
    dropped = [k for k in state if k == classifier or k.startswith(classifier + ".")]
    for key in dropped:
        del state[key]
    report = {"file": str(path), "dropped": sorted(dropped), "stem": "unchanged"}

    stem_key = first_conv + ".weight"
    own = backbone.state_dict()
    if stem_key in state and stem_key in own:
        file_in, model_in = state[stem_key].shape[1], own[stem_key].shape[1]
        if file_in != model_in:
            try:
                state[stem_key] = adapt_input_conv(model_in, state[stem_key], base_chans=file_in)
            except (NotImplementedError, ValueError, AssertionError) as exc:
                raise HCCInputError(f"cannot adapt the stem from {file_in} to {model_in} input "
                                    f"channels: {exc}", source=path) from None
            how = "summed" if model_in == 1 else \
                f"repeated/truncated, scaled by {file_in}/{model_in}"
            report["stem"] = f"{file_in} -> {model_in} channels ({how})"

    missing = set(own) - set(state)
    unexpected = set(state) - set(own)
    wrong_shape = [k for k in set(own) & set(state) if own[k].shape != state[k].shape]
    if missing or unexpected or wrong_shape:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys ({_first(missing)})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys ({_first(unexpected)})")
        if wrong_shape:
            parts.append(f"{len(wrong_shape)} keys of another shape ({_first(wrong_shape)})")
        raise HCCInputError(f"pretrained weights do not fit {arch}: " + "; ".join(parts),
                            source=path, hint=f"use ImageNet weights of {arch}")
    backbone.load_state_dict(state, strict=True)
    return report
