"""Model packages (safetensors + card + SHA-256), pretraining sources and the versioned registry.

`HCCAnalysisLib.models` keeps the names of the package functions (models/package.py)."""

from HCCAnalysisLib.models.package import (  # noqa: F401
    CARD_FORMAT, CARD_NAME, REQUIRED_CARD_FIELDS, WEIGHTS_NAME, LoadedModel, library_versions, load_model,
    read_card, save_model, sha256_of,
)
