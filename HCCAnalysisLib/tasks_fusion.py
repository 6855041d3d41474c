"""Tasks of Zhen et al. 2020 (Models A-G) and Wang et al. 2020 (deep-learning model, fusion
models A-D, fusion D with the joint loss). `tasks.py` merges this `TASKS` dict.

cases.csv columns (label_column) and their values:
- `diagnosis`: cyst, hemangioma, fnh, other_benign, hcc, metastasis, other_primary_malignancy
  (Zhen Models A, B)
- `malignancy`: benign, malignant (Zhen Models C, D)
- `malignant_type`: hcc, metastasis, other_primary_malignancy (Zhen Models E, F, G)
- `early_recurrence`: non_ER, ER (Wang 2020)
Clinical columns: those of the `zhen2020` / `wang2020` schemas (clinical/schemas.py).

Net kwargs are stored in the model card and reused by `models.load_model`, so they never
hold a `pretrained_path` (a local file path); see docs/methods-fusion.md.
"""

from .task_def import Task

TASKS = {}

ZHEN_PAPER = "Zhen et al. 2020, Front. Oncol."
WANG_PAPER = "Wang et al. 2020, IEEE Access"

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
    )


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
    )


for _args in _ZHEN_MODELS:
    _task = _zhen(*_args)
    TASKS[_task.name] = _task
for _task in (_wang("image"), _wang("a"), _wang("b"), _wang("c"), _wang("d"), _wang("d", joint=True)):
    TASKS[_task.name] = _task
del _args, _task

