"""Task: a method's recipe as data (what it reads, how it samples, which net, loss, classes).

A leaf module: task family files (`tasks_<family>.py`) import `Task` from here, and
`tasks.py` merges their TASKS dicts, so no family imports the registry itself.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
import dataclasses
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
    placements: bool = False  # samples carry a Placement (on the case's grid or their own): saliency volumes possible
    saliency_channels: str = "max"  # how a saliency map joins the channels' |gradient|: max, or l1 (their sum)
    saliency_input: str = "image"  # the input a saliency map explains (Liang 2018: "local", its patches)
    saliency_scale: str = "sample"  # each map peaks at 1, or "joint": one scale for all maps of a case
    needs_segmentation: bool = True  # False: the input is a whole image with no lesion segmentation (microscopy)
    label_map: bool = False  # patch votes form a label map with an SVM lesion stage (Liang 2018 sec. 2.5)
    # Pretraining as data (issue 12): the named sources (models/pretrained.py KNOWN_SOURCES) whose
    # family equals `pretraining_family` fit the task's net; `pretrained_by_phases` maps the number
    # of phases a run uses to the source it starts from by default (the paper's recipe), falling
    # back to `pretrained`; `--pretrained none` opts out.
    pretraining_family: str | None = None  # None: the net takes no named source, only a local file
    pretrained_by_phases: dict = field(default_factory=dict)  # phase count -> source name
    # pip extras (runtime/extras.py EXTRAS) the task's net needs beyond the core install
    extras: tuple = ()

    def default_pretrained(self, n_phases: int) -> str | None:
        """The pretraining source a run with `n_phases` phases starts from unless told otherwise."""
        return self.pretrained_by_phases.get(n_phases, self.pretrained)

    def with_net_options(self, options: Mapping[str, str] | Sequence[str] | None) -> Task:
        """This task with some of its network's arguments changed (`--net-option KEY=VALUE`), e.g. Jia
        2019's grid: `embedding_dim=2` (2/16/32/64) and `pyramid=none` (global pooling) or `pyramid=1,2`.

        Only arguments the task's net already takes may change; values are read as JSON-like words:
        `none`, integers, numbers, `true`/`false`, comma lists of integers (tuples), else text. The
        model card records the net's arguments, so a package loads as trained."""
        return dataclasses.replace(self, net_kwargs=_changed(self.net_kwargs, options, "--net-option",
                                                             f"task {self.name}'s network"))

    def with_sampler_options(self, options: Mapping[str, str] | Sequence[str] | None) -> Task:
        """This task with some of its sampler's options changed (`--sampler-option KEY=VALUE`), e.g.
        Liang 2018's `registration=none|rigid|bspline`. Only options the task states may change."""
        return dataclasses.replace(self, sampler_kwargs=_changed(self.sampler_kwargs, options, "--sampler-option",
                                                                 f"task {self.name}'s sampler"))

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


def _pairs(options: Mapping[str, str] | Sequence[str] | None) -> list[tuple[str, str]]:
    if not options:
        return []
    return list(options.items()) if isinstance(options, Mapping) else [_split_option(o) for o in options]


def _changed(current: Mapping[str, object], options: Mapping[str, str] | Sequence[str] | None, flag: str,
             what: str) -> dict:
    changed = dict(current)
    for key, text in _pairs(options):
        if key not in current:
            raise HCCInputError(f"{flag} {key}: {what} takes no such option",
                                hint=f"it takes: {', '.join(sorted(current)) or 'none'}")
        changed[key] = _option_value(str(text))
    return changed


def _split_option(text: str) -> tuple[str, str]:
    key, sep, value = str(text).partition("=")
    if not sep or not key.strip():
        raise HCCInputError(f"option {text!r} is not KEY=VALUE", hint="e.g. --net-option embedding_dim=2")
    return key.strip(), value.strip()


def _option_value(text: str) -> object:
    lowered = text.lower()
    if lowered in ("none", "null"):
        return None
    if lowered in ("true", "false"):
        return lowered == "true"
    if "," in text:
        try:
            return tuple(int(part) for part in text.split(",") if part.strip())
        except ValueError:
            raise HCCInputError(f"--net-option value {text!r}: a list must hold integers") from None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text
