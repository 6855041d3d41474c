"""Clinical data: factor selection (selection.py) and per-task schemas (schemas.py)."""

from HCCAnalysisLib.clinical.schemas import (WANG2020_SCHEMA, ZHEN2020_SCHEMA, ClinicalSchema, encode, get_schema,  # noqa: F401
                      wang2020_vector_from_asaur)
from HCCAnalysisLib.clinical.selection import SEED002_THRESHOLDS, FactorSelection, FactorTest, select_factors  # noqa: F401
