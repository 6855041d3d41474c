"""Networks, one file per family; `build_net(name, **kwargs)` builds one by name.

The map names the module and builder so that importing the package stays cheap
(timm, for example, is only imported when a Zhen/Wang net is built).
"""

import importlib

from ..errors import HCCInputError

# net name -> (module in this package, builder function)
NET_BUILDERS = {
    "resnet20_spp": ("resnet_spp", "build_resnet20"),
    "zhen_inception_resnet_v2": ("fusion", "build_zhen"),
    "wang_fusion": ("fusion", "build_wang"),
    "resgl_bdlstm": ("resgl_lstm", "build_resgl_bdlstm"),
    "meng_microscopy": ("microscopy", "build_meng_cnn"),
}


def build_net(name, **kwargs):
    """Build the network called `name` with the builder's keyword arguments."""
    try:
        module_name, builder_name = NET_BUILDERS[name]
    except KeyError:
        raise HCCInputError(f"unknown network '{name}'", hint=f"known: {', '.join(sorted(NET_BUILDERS))}") from None
    module = importlib.import_module(f"{__name__}.{module_name}")
    return getattr(module, builder_name)(**kwargs)
