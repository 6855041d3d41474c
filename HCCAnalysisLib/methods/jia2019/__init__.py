"""Jia et al. 2019 (KSII TIIS): ResNet20 + spatial pyramid pooling on fused MRI sequences,
pretrained on the authors' CIFAR-10 / MNIST weights; time-signal intensity curves."""

SAMPLERS = {"jia2019": "HCCAnalysisLib.methods.jia2019.sampler:jia2019_sampler"}
NETS = {"resnet20_spp": "HCCAnalysisLib.nets.resnet_spp:build_resnet20"}
