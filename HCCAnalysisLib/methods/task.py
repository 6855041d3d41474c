"""Task: a method's recipe as data (what it reads, how it samples, which net, loss, classes).

A leaf module: task family files (`tasks_<family>.py`) import `Task` from here, and
`tasks.py` merges their TASKS dicts, so no family imports the registry itself.
"""

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
    vote_extras: bool = False  # add vote_<class>: each row's share of samples voting per class

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
