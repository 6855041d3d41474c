"""Task: a method's recipe as data (what it reads, how it samples, which net, loss, classes).

A leaf module: task family files (`tasks_<family>.py`) import `Task` from here, and
`tasks.py` merges their TASKS dicts, so no family imports the registry itself.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from HCCAnalysisLib.errors import HCCInputError


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
    label_column: str | None = None  # cases.csv column with the class; None: the class is the sample kind
    kind_classes: dict = field(default_factory=dict)  # sample kind -> class, when label_column is None
    sampler_kwargs: dict = field(default_factory=dict)
    loss: str = "cross_entropy"
    loss_kwargs: dict = field(default_factory=dict)
    clinical_schema: str | None = None
    augment: bool = False
    training: dict = field(default_factory=dict)
    pretrained: str | None = None  # name of a pretraining source that fine-tuning starts from
    loader: str = "volumes"  # how a case folder is read (case_loading.LOADERS)
    vote_extras: bool = False  # add vote_<class>: each row's share of samples voting per class
    # What the rest of the library may ask of a task (never by comparing names):
    placements: bool = False  # samples carry a Placement on the segmentation grid: saliency volumes possible
    needs_segmentation: bool = True  # False: the input is a whole image with no lesion segmentation (microscopy)
    label_map: bool = False  # patch votes form a label map with an SVM lesion stage (Liang 2018 sec. 2.5)
    # Pretraining as data (issue 12): the named sources (models/pretrained.py KNOWN_SOURCES) whose
    # family equals `pretraining_family` fit the task's net; `pretrained_by_phases` maps the number
    # of phases a run uses to the source it starts from by default (the paper's recipe), falling
    # back to `pretrained`; `--pretrained none` opts out.
    pretraining_family: str | None = None  # None: the net takes no named source, only a local file
    pretrained_by_phases: dict = field(default_factory=dict)  # phase count -> source name

    def default_pretrained(self, n_phases: int) -> str | None:
        """The pretraining source a run with `n_phases` phases starts from unless told otherwise."""
        return self.pretrained_by_phases.get(n_phases, self.pretrained)

    def one_line(self) -> str:
        return f"{self.description} [{self.paper}]"

    def check_phases(self, phases: Sequence[str], source: object = None) -> tuple[str, ...]:
        phases = tuple(phases)
        if len(phases) not in self.phase_counts:
            raise HCCInputError(
                f"task {self.name} takes {' or '.join(map(str, self.phase_counts))} phases, got {len(phases)} "
                f"({', '.join(phases)})", source, f"e.g. --phases {','.join(self.phases)}")
        if len(set(phases)) != len(phases):
            raise HCCInputError(f"phase list {list(phases)} repeats a phase", source)
        return phases

    def target_function(self, fields: Mapping[str, str] | None, source: object = None) -> Callable[[str], int]:

        """kind -> class index for one case, from its cases.csv fields or the sample kind."""
        if self.label_column is None:
            return lambda kind: self.classes.index(self.kind_classes[kind])
        value = (fields or {}).get(self.label_column, "").strip()
        if value not in self.classes:
            raise HCCInputError(f"label '{value}' in column '{self.label_column}' is not one of {list(self.classes)}",
                                source)
        return lambda kind: self.classes.index(value)
