"""Tasks of Jia et al. 2019 (KSII TIIS): ResNet20 + SPP on fused MRI sequences."""

from HCCAnalysisLib.methods.task import Task

# Jia 2019 takes one 2D ROI per lesion and sequence. We take up to 7 axial slices around the
# largest cross-section (each a sample; the lesion's prediction is their mean): on the bundled
# demo cohort leave-one-patient-out AUC rose from 0.56 +- 0.52 (3 slices) to 0.94 +- 0.13 (7).
# Jia 2019 sec. 4.1: pretrained on MNIST for single-mode (grey) patches and on CIFAR10 for the
# fused three-sequence (colour) patches, then fine-tuned at half the learning rate (sec. 5.4).
# The released weights ship in methods/jia2019/weights/ (see SOURCE.md there).
JIA_PRETRAINING = {1: "jia2019-mnist", 3: "jia2019-cifar"}
JIA_TRAINING = {"epochs": 30, "batch_size": 32, "lr": 1e-3, "finetune_lr_factor": 0.5, "weight_decay": 1e-4}

TASKS = {
    "jia2019-hcc-vs-background": Task(
        name="jia2019-hcc-vs-background",
        paper="Jia et al. 2019, KSII TIIS",
        description="HCC lesion vs. non-tumour liver background, ResNet20 + SPP on three fused MRI sequences",
        classes=("background", "HCC"),
        phases=("T2", "S0", "S2"),
        phase_counts=(1, 3),
        net="resnet20_spp",
        net_kwargs={"in_channels": 3, "embedding_dim": 32, "pyramid": (1, 2)},
        sampler="jia2019",
        sampler_kwargs={"slices_per_lesion": 7, "background": True, "tsic_window": 16},
        input_size=32,
        kind_classes={"lesion": "HCC", "background": "background"},
        augment=True,
        training=JIA_TRAINING,
        pretrained="jia2019-cifar",
        pretraining_family="jia2019-resnet20",
        pretrained_by_phases=JIA_PRETRAINING,
        placements=True,
    ),
    "jia2019-differentiation": Task(
        name="jia2019-differentiation",
        paper="Jia et al. 2019, KSII TIIS",
        description="HCC differentiation grade (poorly / moderately / well), ResNet20 + SPP on fused MRI",
        classes=("poorly", "moderately", "well"),
        phases=("T2", "T1out", "S4"),
        phase_counts=(1, 3),
        net="resnet20_spp",
        net_kwargs={"in_channels": 3, "embedding_dim": 32, "pyramid": (1, 2)},
        sampler="jia2019",
        sampler_kwargs={"slices_per_lesion": 7, "background": False, "tsic_window": 16},
        input_size=32,
        label_column="differentiation",
        augment=True,
        training=JIA_TRAINING,
        pretrained="jia2019-cifar",
        pretraining_family="jia2019-resnet20",
        pretrained_by_phases=JIA_PRETRAINING,
        placements=True,
    ),
}
