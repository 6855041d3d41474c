"""The candidate speed-up of the whole-case path still open, as a drop-in replacement that
`bench_case_analysis.py` monkeypatches into the library and times side by side with the
library as it is. Nothing here is used by the library.

Variants A (one-pass normalisation), C/E (background candidates once per case, as flat
indices) and D (torch area resize) were measured here first and are now in the library
(measured 1.36-1.45x together on the whole-case path, and MONAI off the Jia path).
"""

from HCCAnalysisLib.data import samples as samples_mod


def fused_volumes_cached(case, phases, channels):
    """fused_volumes, normalised volumes kept on the case so a second task reuses them."""
    cache = case._grid_cache.setdefault("__normalised__", {})
    key = tuple(phases)
    if key not in cache:
        cache[key] = _ORIGINAL_FUSED(case, phases, channels)
    return cache[key]


_ORIGINAL_FUSED = getattr(samples_mod, "fused_volumes", None)

VARIANTS = {
    "baseline (library as is)": [],
    "B: normalised volumes cached per case": [(samples_mod, "fused_volumes", fused_volumes_cached)],
}


def usable_variants():
    """The variants whose patch targets still exist in the library (it changes under us)."""
    return {name: patches for name, patches in VARIANTS.items()
            if all(hasattr(module, attr) for module, attr, _ in patches)}
