"""The task registry. A task is data: what it reads, how it samples, which net and loss,
which classes. Adding a method means a net file, a sampler and an entry here."""

from dataclasses import dataclass, field

from .errors import HCCInputError


@dataclass(frozen=True)
class Task:
    name: str
    paper: str
    description: str
    classes: tuple
    phases: tuple  # default phases / sequences, in channel order
    phase_counts: tuple  # how many phases a run may choose
    net: str
    net_kwargs: dict
    sampler: str
    input_size: int
    label_column: str = None  # cases.csv column with the class; None: the class is the sample kind
    kind_classes: dict = field(default_factory=dict)  # sample kind -> class, when label_column is None
    sampler_kwargs: dict = field(default_factory=dict)
    loss: str = "cross_entropy"
    loss_kwargs: dict = field(default_factory=dict)
    clinical_schema: str = None
    augment: bool = False
    training: dict = field(default_factory=dict)
    pretrained: str = None  # name of a pretraining source that fine-tuning starts from
    loader: str = "volumes"  # how a case folder is read (case_loading.LOADERS)

    def one_line(self):
        return f"{self.description} [{self.paper}]"

    def check_phases(self, phases, source=None):
        phases = tuple(phases)
        if len(phases) not in self.phase_counts:
            raise HCCInputError(
                f"task {self.name} takes {' or '.join(map(str, self.phase_counts))} phases, got {len(phases)} "
                f"({', '.join(phases)})", source, f"e.g. --phases {','.join(self.phases)}")
        if len(set(phases)) != len(phases):
            raise HCCInputError(f"phase list {list(phases)} repeats a phase", source)
        return phases

    def target_function(self, fields, source=None):
        """kind -> class index for one case, from its cases.csv fields or the sample kind."""
        if self.label_column is None:
            return lambda kind: self.classes.index(self.kind_classes[kind])
        value = (fields or {}).get(self.label_column, "").strip()
        if value not in self.classes:
            raise HCCInputError(f"label '{value}' in column '{self.label_column}' is not one of {list(self.classes)}",
                                source)
        return lambda kind: self.classes.index(value)


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
        sampler_kwargs={"slices_per_lesion": 3, "background": True, "tsic_window": 16},
        input_size=32,
        kind_classes={"lesion": "HCC", "background": "background"},
        augment=True,
        training=JIA_TRAINING,
        pretrained="jia2019-cifar",
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
        sampler_kwargs={"slices_per_lesion": 3, "background": False, "tsic_window": 16},
        input_size=32,
        label_column="differentiation",
        augment=True,
        training=JIA_TRAINING,
        pretrained="jia2019-cifar",
    ),
}


def _register(more):
    for name, task in more.items():
        if name in TASKS:
            raise ValueError(f"task {name} is defined twice")
        TASKS[name] = task


def _load_task_families():
    """Task families defined in their own files (tasks_<family>.py, a TASKS dict each)."""
    import importlib

    for family in ("tasks_fusion", "tasks_liang_meng"):
        try:
            module = importlib.import_module(f"{__package__}.{family}")
        except ModuleNotFoundError as err:
            if err.name != f"{__package__}.{family}":
                raise
            continue
        _register(module.TASKS)


_load_task_families()


def get_task(name):
    try:
        return TASKS[name]
    except KeyError:
        raise HCCInputError(f"unknown task '{name}'", hint=f"known tasks: {', '.join(sorted(TASKS))}") from None
