"""Tasks of Zhen et al. 2020 (Front. Oncol.): Models A-G.

cases.csv columns (label_column) and their values:
- `diagnosis`: cyst, hemangioma, fnh, other_benign, hcc, metastasis, other_primary_malignancy (Models A, B)
- `malignancy`: benign, malignant (Models C, D)
- `malignant_type`: hcc, metastasis, other_primary_malignancy (Models E, F, G)
Clinical columns: those of the `zhen2020` schema (clinical/schemas.py).

Net kwargs are stored in the model card and reused by `models.load_model`, so they never
hold a `pretrained_path` (a local file path); see docs/methods-fusion.md.
"""

from HCCAnalysisLib.methods.task import Task

ZHEN_PAPER = "Zhen et al. 2020, Front. Oncol."

ZHEN_6 = ("t2", "dwi", "t1_pre", "arterial", "portal", "equilibrium")
ZHEN_3 = ("t2", "dwi", "t1_pre")
ZHEN_CLASSES = {
    "diagnosis": ("cyst", "hemangioma", "fnh", "other_benign", "hcc", "metastasis", "other_primary_malignancy"),
    "malignancy": ("benign", "malignant"),
    "malignant_type": ("hcc", "metastasis", "other_primary_malignancy"),
}
# Paper: SGD, lr 0.1 halved every 20 epochs, momentum 0.9, batch 16. The paper gives no epoch
# count: 60 epochs = its three LR steps.
ZHEN_TRAINING = {"optimiser": "sgd", "lr": 0.1, "lr_step": 20, "lr_gamma": 0.5, "epochs": 60, "batch_size": 16,
                 "weight_decay": 0.0, "finetune_lr_factor": 1.0,
                 "augment": {"rotate_deg": 40.0, "flip_prob": 0.5}}  # random rotations and flips
ZHEN_SAMPLER = {"spacing_mm": (0.7, 0.7, 7.0), "margin": 0.15}

# (model, sequences, label column, clinical)
_ZHEN_MODELS = (
    ("a", ZHEN_6, "diagnosis", False),
    ("b", ZHEN_3, "diagnosis", False),
    ("c", ZHEN_6, "malignancy", False),
    ("d", ZHEN_3, "malignancy", False),
    ("e", ZHEN_6, "malignant_type", False),
    ("f", ZHEN_6, "malignant_type", True),
    ("g", ZHEN_3, "malignant_type", True),
)
_ZHEN_WHAT = {"diagnosis": "7-way liver tumour diagnosis", "malignancy": "benign vs. malignant",
              "malignant_type": "HCC / metastasis / other primary malignancy"}


def _zhen(model, phases, column, clinical):
    net_kwargs = {"in_channels": len(phases)}
    if clinical:
        net_kwargs["clinical_dim"] = 34  # zhen2020 schema
    sequences = "6 MRI sequences" if len(phases) == 6 else "3 unenhanced MRI sequences"
    return Task(
        name=f"zhen2020-model-{model}",
        paper=ZHEN_PAPER,
        description=f"Model {model.upper()}: {_ZHEN_WHAT[column]}, Inception-ResNet-V2 on {sequences}"
                    + (" + clinical data" if clinical else ""),
        classes=ZHEN_CLASSES[column],
        phases=phases,
        phase_counts=(len(phases),),
        net="zhen_inception_resnet_v2",
        net_kwargs=net_kwargs,
        sampler="zhen2020",
        sampler_kwargs=dict(ZHEN_SAMPLER),
        input_size=299,
        label_column=column,
        loss="cross_entropy",
        clinical_schema="zhen2020" if clinical else None,
        training=dict(ZHEN_TRAINING),
        extras=("fusion",),  # timm's Inception-ResNet-V2
        placements=True,  # planes of the lesion's 0.7 x 0.7 x 7 mm grid (Placement.grid)
        saliency_channels="l1",  # "Saliency Map": the L1 norm of the input gradient across the channels
    )


TASKS = {task.name: task for task in (_zhen(*args) for args in _ZHEN_MODELS)}
