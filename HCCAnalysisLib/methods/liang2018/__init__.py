"""Liang et al. 2018 (MICCAI): ResGL-BDLSTM on NC/ART/PV CT patches, inter-loss + centre loss,
patch label map -> SVM lesion classifier."""

SAMPLERS = {"liang2018": "HCCAnalysisLib.methods.liang2018.sampler:liang2018_sampler"}
NETS = {"resgl_bdlstm": "HCCAnalysisLib.nets.resgl_lstm:build_resgl_bdlstm"}
