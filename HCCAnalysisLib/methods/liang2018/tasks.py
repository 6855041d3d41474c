"""Tasks of Liang et al. 2018 (MICCAI): ResGL-BDLSTM, focal liver lesions in multi-phase CT.

One sample per lesion patch (pace rule when training, pace 1 when predicting);
`hcc predict` gives one row per lesion, the mean of its patch probabilities. The paper's
lesion-level SVM on label-map class proportions is an evaluation-time step
(`label_map_output.label_map_svm_cross_validate`), not part of the model package.
The Table 2 ablations are separate tasks. `liang2018-resgl-bdlstm-small` is NOT the
paper's configuration: narrow pathways and small inputs for CPU smoke runs and tests.
"""

from dataclasses import replace

from HCCAnalysisLib.methods.task import Task

LIANG_PAPER = "Liang et al. 2018, MICCAI"

# Section 2.4: momentum optimiser, lr 0.01, momentum 0.9, batch 100. Epochs are not given
# (training stopped on validation patches); 20 is our default.
LIANG_TRAINING = {"epochs": 20, "batch_size": 100, "lr": 0.01, "optimiser": "sgd", "weight_decay": 0.0}

LIANG = Task(
    name="liang2018-resgl-bdlstm",
    paper=LIANG_PAPER,
    description="Focal liver lesion type (cyst / FNH / HCC / hemangioma), ResGL-BDLSTM on NC, ART, PV CT patches",
    classes=("cyst", "FNH", "HCC", "hemangioma"),
    phases=("NC", "ART", "PV"),
    phase_counts=(3,),
    net="resgl_bdlstm",
    net_kwargs={"n_phases": 3, "variant": "full"},
    sampler="liang2018",
    sampler_kwargs={"epsilon": 128, "patch_size": 7, "local_size": 64, "global_size": 128,
                    "window": (-160.0, 240.0), "slices": "largest",
                    # the paper registers the phases non-rigidly to a reference before taking patches (sec.
                    # 2.1): ours is rigid then B-spline (SimpleITK, in-plane rigid on volumes of < 16 slices),
                    # each stage kept only if the guard accepts it (metric improved, plausible motion), else
                    # the previous stage / identity with the reason in each sample's `registration` extra.
                    # Off: --sampler-option registration=none (or rigid). See methods/liang2018/registration.py,
                    # benchmarks/results_liang_registration.md.
                    "registration": "bspline"},
    input_size=64,
    label_column="lesion_type",
    loss="resgl_inter_centre",
    loss_kwargs={"lam": 0.1, "alpha": 0.2},
    training=LIANG_TRAINING,
    vote_extras=True,  # vote_<class>: the label map's class proportions (eq. 7-8)
    label_map=True,
    # Saliency (ours: the paper defines none): the gradient of each patch's class score w.r.t. its local
    # patch, max |.| over the phases, pasted at the patch's box; one scale for all patches of a case
    # (docs/methods-liang2018.md). The shared global ROI gets no map.
    placements=True,
    saliency_input="local",
    saliency_scale="joint",
)

NO_CENTRE = {"lam": 0.1, "alpha": 0.2, "use_centre": False}

TASKS = {
    LIANG.name: LIANG,
    # Table 2 ablations
    "liang2018-no-centre-loss": replace(
        LIANG, name="liang2018-no-centre-loss", loss_kwargs=NO_CENTRE,
        description="Liang 2018 ablation: ResGL-BDLSTM without the intra (centre) loss"),
    "liang2018-no-lstm": replace(
        LIANG, name="liang2018-no-lstm", net_kwargs={"n_phases": 3, "variant": "no_lstm"}, loss_kwargs=NO_CENTRE,
        description="Liang 2018 ablation: ResGLNet (phase features concatenated, no BD-LSTM, no centre loss)"),
    "liang2018-local-only": replace(
        LIANG, name="liang2018-local-only", net_kwargs={"n_phases": 3, "variant": "local_only"},
        loss_kwargs=NO_CENTRE,
        description="Liang 2018 ablation: ResNet_Local (local patches only, no centre loss)"),
    # not the paper's sizes: for CPU smoke runs and tests
    "liang2018-resgl-bdlstm-small": replace(
        LIANG, name="liang2018-resgl-bdlstm-small",
        net_kwargs={"n_phases": 3, "variant": "full", "width": 4, "blocks": 1, "phase_features": 16,
                    "lstm_hidden": 8},
        sampler_kwargs=dict(LIANG.sampler_kwargs, local_size=16, global_size=32), input_size=16,
        training=dict(LIANG_TRAINING, batch_size=64),
        description="ResGL-BDLSTM shrunk for quick CPU runs (width 4, 1 block/stage, 16/32-pixel inputs); "
                    "NOT the paper's configuration"),
}
