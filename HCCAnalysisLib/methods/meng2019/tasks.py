"""Tasks of Meng et al. 2019 (SPIE Medical Imaging): metastatic capability of HCC from microscopy.

One sample per tile; one row per whole image (mean of its tiles' probabilities).
`meng2019-metastasis-small-tiles` uses 75-pixel tiles for small images such as the
150 x 150 H&E sample tiles (the paper: 512-pixel tiles of 2048 x 2048 images).
"""

from dataclasses import replace

from HCCAnalysisLib.methods.task import Task

MENG_PAPER = "Meng et al. 2019, SPIE Medical Imaging"

MENG_TRAINING = {"epochs": 30, "batch_size": 16, "lr": 0.01, "optimiser": "sgd", "weight_decay": 0.0}

MENG = Task(
    name="meng2019-metastasis",
    paper=MENG_PAPER,
    description="Low vs. high metastatic HCC from a microscopy image, CNN on 512-pixel mean-stretched tiles",
    classes=("low", "high"),
    phases=("image",),
    phase_counts=(1,),
    net="meng_microscopy",
    net_kwargs={"tile_size": 512, "in_channels": 3, "fc_hidden": 2048},
    sampler="meng2019",
    sampler_kwargs={"edge": "pad", "per_channel": True},
    input_size=512,
    label_column="metastasis",
    loss="squared_error",
    training=MENG_TRAINING,
    loader="microscopy",
    needs_segmentation=False,
    placements=True,  # tiles at their place on the microscopy image
)

TASKS = {
    MENG.name: MENG,
    "meng2019-metastasis-ce": replace(
        MENG, name="meng2019-metastasis-ce", loss="cross_entropy",
        description="Meng 2019 with cross-entropy instead of the paper's squared-error loss (eq. 4)"),
    "meng2019-metastasis-small-tiles": replace(
        MENG, name="meng2019-metastasis-small-tiles", net_kwargs=dict(MENG.net_kwargs, tile_size=75), input_size=75,
        description="Meng 2019 CNN on 75-pixel tiles, for small images (e.g. 150 x 150 H&E tiles); "
                    "the paper uses 512-pixel tiles"),
}
