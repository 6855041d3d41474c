"""Networks, one file per family; `build_net(name, **kwargs)` builds one by name.

Each paper in `methods/` names the module and builder of its nets, so that importing the
package stays cheap (timm, for example, is only imported when a Zhen/Wang net is built).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


def build_net(name: str, **kwargs: Any) -> torch.nn.Module:
    """Build the network called `name` (declared by a paper in `methods/`) with its builder's kwargs."""
    from HCCAnalysisLib.methods import net_builder  # the papers declare which net file builds which name

    return net_builder(name)(**kwargs)
