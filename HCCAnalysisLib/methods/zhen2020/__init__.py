"""Zhen et al. 2020 (Front. Oncol.): Inception-ResNet-V2 on 6 or 3 MRI sequences plus one-hot
clinical data; 7-way, benign/malignant and 3-way malignant models (Models A-G)."""

SAMPLERS = {"zhen2020": "HCCAnalysisLib.methods.zhen2020.sampler:zhen2020_sampler"}
NETS = {"zhen_inception_resnet_v2": "HCCAnalysisLib.nets.fusion:build_zhen"}
