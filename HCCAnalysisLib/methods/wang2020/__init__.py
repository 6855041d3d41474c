"""Wang et al. 2020 (IEEE Access): NC/ART/PV CT ROIs + clinical vector, fusion models A-D, joint
loss; radiomics and clinical random-forest baselines of early recurrence."""

SAMPLERS = {"wang2020": "HCCAnalysisLib.methods.wang2020.sampler:wang2020_sampler"}
NETS = {"wang_fusion": "HCCAnalysisLib.nets.fusion:build_wang"}
