"""Meng et al. 2019 (SPIE Medical Imaging): small CNN on microscopy tiles, high vs. low
metastatic HCC."""

SAMPLERS = {"meng2019": "HCCAnalysisLib.methods.meng2019.sampler:meng2019_sampler"}
NETS = {"meng_microscopy": "HCCAnalysisLib.nets.microscopy:build_meng_cnn"}
