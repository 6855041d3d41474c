"""Child process of the package-replacement fault tests: replaces a model package over and over.

    python package_writer.py PACKAGE_DIR FIRST_VERSION [COUNT]

Version v's weights hold the value v in every element and its card says version "v<v>", so a
package that mixes two versions is caught by the card's hash or by the value. It imports only
the package writer (no torch): the tests can start and kill it dozens of times.
"""

import sys

import numpy as np
from safetensors.numpy import save

from HCCAnalysisLib.models.package import write_package

TASK_CARD = {"task": "jia2019-hcc-vs-background", "classes": ["background", "HCC"], "phases": ["image"],
             "net": "resnet20_spp", "net_kwargs": {}, "input_size": 32, "seed": 0,
             "versions": {"note": "fault-test package"}}  # given: reading installed versions costs 0.5 s


def weights_of(version: int) -> bytes:
    return save({"w": np.full(40_000, version, dtype=np.float32)})


def main(argv):
    folder, first = argv[0], int(argv[1])
    count = int(argv[2]) if len(argv) > 2 else 10**9
    for version in range(first, first + count):
        write_package(folder, weights_of(version), dict(TASK_CARD, version=f"v{version}"))
        print(version, flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
