"""ResGL-BDLSTM (Liang et al., MICCAI 2018): per-phase ResGLNet blocks + a bidirectional LSTM.

Per phase (NC, ART, PV) one ResGLNet block, no weights shared between phases
(section 2.1). A block has two residual pathways of the same architecture: the
*local* one sees a patch (64 x 64), the *global* one the lesion ROI (128 x 128). Each
pathway is a CIFAR-style ResNet of 19 convolutions (a stem + 3 stages x 3 basic
blocks of two convolutions) and one average pooling; the block's fully connected
layer joins the two pathways into the phase feature.

The phase features, in phase order, are the sequence of the BD-LSTM (section 2.2):
one direction runs NC -> PV ("enhancement"), the other PV -> NC; their final states
are concatenated into the patch feature, which the centre loss acts on, and a last
FC gives the patch logits (softmax in the loss). The inter-loss (eq. 3) also needs
the logits of the local and the global pathways alone: one FC over the local
features of all phases and one over the global features.

Variants (Table 2 of the paper):
- "full": ResGL-BDLSTM.
- "no_lstm": ResGLNet [13]: phase features concatenated, no LSTM.
- "local_only": ResNet_Local: the local pathway only, phases concatenated; no
  auxiliary heads, so the inter-loss reduces to the last cross-entropy.
The no-intra-loss ablation is a loss option (`ResGLLoss(use_centre=False)`).

Layer order: conv -> batch norm -> ReLU as in He et al.'s ResNet, which the paper
extends (its text lists ReLU before batch norm without saying more).

Shared global ROI: the patches of one slice share its ROI. Given `global_roi` as the U
distinct ROIs of a batch and `global_roi_index` (B: each patch's ROI), as
`engine/batches.stack_inputs` gives them, the global pathway runs once per distinct ROI and
its features are gathered per patch; in training its batch norms use the statistics of
the per-patch batch (`weighted_batch_norm`), so outputs, loss and gradients equal those
of the per-patch computation (`global_roi` B x ..., no index), which is still accepted.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from HCCAnalysisLib.errors import HCCInputError
from HCCAnalysisLib.nets.weighted_batch_norm import batch_norm

VARIANTS = ("full", "no_lstm", "local_only")


class BasicBlock(nn.Module):
    """Two 3x3 conv + BN layers; parameter-free shortcut (subsample + zero channels) on a change."""

    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.stride, self.extra = stride, planes - in_planes

    def forward(self, x: torch.Tensor, counts: torch.Tensor | None = None, total: int = 0) -> torch.Tensor:
        """`counts`/`total`: x holds distinct entries standing for a batch of `total` (weighted_batch_norm)."""
        out = F.relu(batch_norm(self.bn1, self.conv1(x), counts, total))
        out = batch_norm(self.bn2, self.conv2(out), counts, total)
        shortcut = x[:, :, ::self.stride, ::self.stride] if self.stride > 1 else x
        if self.extra:
            shortcut = F.pad(shortcut, (0, 0, 0, 0, 0, self.extra))
        return F.relu(out + shortcut)


class ResidualPathway(nn.Module):
    """Stem conv + 3 stages of `blocks` basic blocks (widths w, 2w, 4w) + global average pooling."""

    def __init__(self, in_channels: int = 1, width: int = 16, blocks: int = 3) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(width), nn.ReLU(inplace=True))
        layers, planes = [], width
        for stage, stage_width in enumerate((width, 2 * width, 4 * width)):
            for b in range(blocks):
                stride = 2 if stage > 0 and b == 0 else 1
                layers.append(BasicBlock(planes, stage_width, stride))
                planes = stage_width
        self.layers = nn.Sequential(*layers)
        self.out_features = planes

    def forward(self, x: torch.Tensor, counts: torch.Tensor | None = None, total: int = 0) -> torch.Tensor:
        """B x out_features; with `counts`, x holds distinct entries standing for a batch of `total`."""
        conv, norm, relu = self.stem
        out = relu(batch_norm(norm, conv(x), counts, total))
        for block in self.layers:
            out = block(out, counts, total)
        return F.adaptive_avg_pool2d(out, 1).flatten(1)

    def has_sync_batch_norm(self) -> bool:
        return any(isinstance(m, nn.SyncBatchNorm) for m in self.modules())


def shared_pathway(pathway: ResidualPathway, rois: torch.Tensor, index: torch.Tensor | None) -> torch.Tensor:
    """Per-sample features of `pathway` over U distinct `rois`, sample i seeing rois[index[i]]."""
    if index is None:
        return pathway(rois)
    if pathway.training and pathway.has_sync_batch_norm():
        # torchrun's SyncBatchNorm has no weighted form: the per-patch computation, as before
        return pathway(rois[index])
    if not pathway.training:  # running statistics: each ROI's features do not depend on the batch
        return pathway(rois)[index]
    counts = torch.bincount(index, minlength=rois.shape[0])
    return pathway(rois, counts, int(index.shape[0]))[index]


class ResGLBlock(nn.Module):
    """One phase: a local and (unless local-only) a global pathway, joined by one FC layer."""

    def __init__(self, width: int, blocks: int, phase_features: int, use_global: bool) -> None:
        super().__init__()
        self.local = ResidualPathway(1, width, blocks)
        self.glob = ResidualPathway(1, width, blocks) if use_global else None
        joined = self.local.out_features * (2 if use_global else 1)
        self.fc = nn.Linear(joined, phase_features) if use_global else None

    def forward(self, local: torch.Tensor, global_roi: torch.Tensor | None,
                global_roi_index: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        f_local = self.local(local)
        if self.glob is None:
            return f_local, None, f_local
        f_global = shared_pathway(self.glob, global_roi, global_roi_index)
        return f_local, f_global, F.relu(self.fc(torch.cat([f_local, f_global], dim=1)))


class ResGLBDLSTM(nn.Module):
    """Patch classifier over P phases; forward(local=B x P x 1 x H x W, global_roi=B x P x 1 x H' x W'),
    or global_roi=U x P x 1 x H' x W' distinct ROIs with global_roi_index=B (each patch's ROI)."""

    # engine/infer.run_net's batch for this net. With the global pathway once per ROI per batch,
    # 64 measured fastest on the CPU at the paper's sizes (16 was fastest per patch, where 256
    # patches' 128 x 128 activations overflow the caches): benchmarks/results_liang_global.md.
    inference_batch_size = 64

    def __init__(self, num_classes: int = 4, n_phases: int = 3, variant: str = "full", width: int = 16,
                 blocks: int = 3, phase_features: int = 128, lstm_hidden: int = 64) -> None:
        super().__init__()
        if variant not in VARIANTS:
            raise HCCInputError(f"unknown ResGL-BDLSTM variant '{variant}'", hint=f"known: {', '.join(VARIANTS)}")
        if num_classes < 2 or n_phases < 1:
            raise HCCInputError(f"need >= 2 classes and >= 1 phase, got {num_classes} and {n_phases}")
        self.variant, self.n_phases, self.num_classes = variant, n_phases, num_classes
        use_global = variant != "local_only"
        # ModuleList of independent blocks: no weights shared between phases
        self.phases = nn.ModuleList(ResGLBlock(width, blocks, phase_features, use_global) for _ in range(n_phases))
        path_features = self.phases[0].local.out_features
        if variant == "full":
            self.lstm = nn.LSTM(phase_features, lstm_hidden, batch_first=True, bidirectional=True)
            self.feature_dim = 2 * lstm_hidden
        elif variant == "no_lstm":
            self.feature_dim = n_phases * phase_features
        else:
            self.feature_dim = n_phases * path_features
        self.classifier = nn.Linear(self.feature_dim, num_classes)
        if use_global:
            self.local_head = nn.Linear(n_phases * path_features, num_classes)
            self.global_head = nn.Linear(n_phases * path_features, num_classes)

    def _check(self, name, x):
        if x is None:
            raise HCCInputError(f"ResGL-BDLSTM needs the input '{name}'")
        if x.ndim != 5 or x.shape[1] != self.n_phases or x.shape[2] != 1:
            raise HCCInputError(f"input '{name}' must be B x {self.n_phases} x 1 x H x W (batch, phase, channel, "
                                f"height, width), got {tuple(x.shape)}")

    def _check_global(self, local, global_roi, index):
        self._check("global_roi", global_roi)
        if index is None:
            if global_roi.shape[0] != local.shape[0]:
                raise HCCInputError(f"'local' has {local.shape[0]} samples, 'global_roi' {global_roi.shape[0]}")
            return
        if index.ndim != 1 or index.shape[0] != local.shape[0] or index.dtype != torch.int64:
            raise HCCInputError(f"'global_roi_index' must be {local.shape[0]} int64 indices (one per patch), got "
                                f"{index.dtype} {tuple(index.shape)}")

    def _phase_features(self, local, global_roi, global_roi_index=None):
        self._check("local", local)
        if self.variant != "local_only":
            self._check_global(local, global_roi, global_roi_index)
        f_local, f_global, joined = [], [], []
        for p, block in enumerate(self.phases):
            roi = None if self.variant == "local_only" else global_roi[:, p]
            fl, fg, fj = block(local[:, p], roi, global_roi_index)
            f_local.append(fl)
            f_global.append(fg)
            joined.append(fj)
        return f_local, f_global, joined

    def _features(self, joined):
        if self.variant == "full":
            _, (h_n, _) = self.lstm(torch.stack(joined, dim=1))
            # h_n[0]: forward direction after the last phase; h_n[1]: backward after the first
            return torch.cat([h_n[0], h_n[1]], dim=1)
        return torch.cat(joined, dim=1)

    def forward(self, local: torch.Tensor | None = None, global_roi: torch.Tensor | None = None,
                global_roi_index: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        f_local, f_global, joined = self._phase_features(local, global_roi, global_roi_index)
        features = self._features(joined)
        out = {"logits": self.classifier(features), "features": features}
        if self.variant != "local_only":
            out["local_logits"] = self.local_head(torch.cat(f_local, dim=1))
            out["global_logits"] = self.global_head(torch.cat(f_global, dim=1))
        return out

    def embed(self, local: torch.Tensor | None = None, global_roi: torch.Tensor | None = None,
              global_roi_index: torch.Tensor | None = None) -> torch.Tensor:
        """The patch feature (the centre loss's f_i), B x feature_dim."""
        return self._features(self._phase_features(local, global_roi, global_roi_index)[2])


def build_resgl_bdlstm(num_classes: int = 4, n_phases: int = 3, variant: str = "full", width: int = 16,
                       blocks: int = 3, phase_features: int = 128, lstm_hidden: int = 64) -> ResGLBDLSTM:
    """ResGL-BDLSTM with the paper's 19-conv pathways; `width`/`blocks` shrink it for quick tests."""
    return ResGLBDLSTM(num_classes=num_classes, n_phases=n_phases, variant=variant, width=width, blocks=blocks,
                       phase_features=phase_features, lstm_hidden=lstm_hidden)
