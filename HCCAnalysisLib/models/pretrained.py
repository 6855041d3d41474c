"""Pretraining sources that fine-tuning starts from, resolved by name or path, hash-checked.

Nothing is downloaded: the authors' CIFAR-10 weights ship in SampleData/; any other
file is the user's own (loaded weights-only, never unpickled freely).
"""

from pathlib import Path

from HCCAnalysisLib.errors import HCCInputError
from HCCAnalysisLib.models.package import sha256_of

ROOT = Path(__file__).resolve().parents[2]
KNOWN_SOURCES = {
    # name -> (file under the repository / extension folder, SHA-256)
    "jia2019-cifar": ("SampleData/pretrained-jia2019/cifar_resnet_32_dict_withSPP.pkl",
                      "b6fdd546ef30ea7f6f73b043261c6493938e9348a8d7099ac4ce090391a911c0"),
}


def resolve_pretrained(source, task=None):
    """None / 'none' -> None; a known name or a file path -> (path, what the trainer takes).

    For ResNet20+SPP tasks (and when no task is given) the file is read here as a Jia 2019
    state dict; other networks get the checked path and read it with their own loader.
    """
    from HCCAnalysisLib.nets.jia2019_weights import load_jia2019_file

    if source in (None, "", "none"):
        return None
    if task is not None and task.net != "resnet20_spp":
        if source in KNOWN_SOURCES:
            raise HCCInputError(f"pretrained source '{source}' is for ResNet20+SPP, not for task {task.name}",
                                hint="give a local weights file for this network, or none")
        path = Path(source)
        if not path.is_file():
            raise HCCInputError("pretrained weights file does not exist", path)
        return path, path
    if source in KNOWN_SOURCES:
        relative, expected = KNOWN_SOURCES[source]
        path = ROOT / relative
        if not path.is_file():
            raise HCCInputError(f"pretrained weights '{source}' are not installed", path)
        actual = sha256_of(path)
        if actual != expected:
            raise HCCInputError(f"SHA-256 {actual[:12]}... differs from the recorded {expected[:12]}...", path,
                                "the bundled weights were altered: restore them from the repository")
        return path, load_jia2019_file(path)
    path = Path(source)
    if not path.is_file():
        raise HCCInputError("pretrained weights file does not exist", path,
                            f"give a file or one of: {', '.join(KNOWN_SOURCES)}, none")
    return path, load_jia2019_file(path)
