"""Tasks of Wang et al. 2020 (IEEE Access): the deep-learning model, fusion models A-D and
fusion D with the joint loss. cases.csv label column `early_recurrence`: non_ER, ER.
Clinical columns: those of the `wang2020` schema (clinical/schemas.py).
"""

from HCCAnalysisLib.methods.task import Task

WANG_PAPER = "Wang et al. 2020, IEEE Access"

WANG_PHASES = ("nc", "art", "pv")
WANG_CLASSES = ("non_ER", "ER")
# Paper section IV: batch 16, 50 epochs, learning rate 1e-4 (optimiser not given: Adam is ours).
WANG_TRAINING = {"optimiser": "adam", "lr": 1e-4, "epochs": 50, "batch_size": 16, "weight_decay": 0.0,
                 "finetune_lr_factor": 1.0}
_WANG_WHAT = {"image": "deep-learning model (ResNet-50 on NC/ART/PV ROIs)",
              "a": "fusion A (image features + clinical vector)",
              "b": "fusion B (image FC + clinical vector)",
              "c": "fusion C (image FC + clinical convolution)",
              "d": "fusion D (image FC + clinical FC)"}


def _wang(variant, joint=False):
    net_kwargs = {"variant": variant, "in_channels": 3}
    if variant != "image":
        net_kwargs["clinical_dim"] = 9  # wang2020 schema
    if joint:
        net_kwargs["joint"] = True
    name = "wang2020-image" if variant == "image" else f"wang2020-fusion-{variant}" + ("-joint" if joint else "")
    return Task(
        name=name,
        paper=WANG_PAPER,
        description=f"HCC early recurrence, {_WANG_WHAT[variant]}" + (", joint loss" if joint else ""),
        classes=WANG_CLASSES,
        phases=WANG_PHASES,
        phase_counts=(3,),
        net="wang_fusion",
        net_kwargs=net_kwargs,
        sampler="wang2020",
        sampler_kwargs={"slices": "all", "margin": 0.0, "min_mm": 8.0},
        input_size=224,
        label_column="early_recurrence",
        loss="joint" if joint else "cross_entropy",
        clinical_schema=None if variant == "image" else "wang2020",
        training=dict(WANG_TRAINING),
        placements=True,  # crops of the segmentation grid's axial slices
        extras=("fusion",),  # timm's ResNet-50
    )


TASKS = {task.name: task for task in (_wang("image"), _wang("a"), _wang("b"), _wang("c"), _wang("d"),
                                        _wang("d", joint=True))}
