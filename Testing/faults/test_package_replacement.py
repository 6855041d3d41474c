"""A model package is replaced as a whole: a kill (SIGKILL) at any moment of `hcc train --overwrite`'s
package save leaves the old package or the new one, complete, never a mix (issue 14).

The child, forked from the test process, writes packages through models.package.write_package,
the writer behind save_model (package_writer.py runs the same loop as a script). Two ways of killing it: at each named step of the replacement
(HCCANALYSIS_KILL_AT, atomic.FOLDER_STEPS), and at random moments while it replaces the package
in a loop. After every kill the next reader (read_card, as load_model does) recovers the
folder with one log line, and the package is checked: card and weights agree (hash and value).
"""

import logging
import os
import random
import signal
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from HCCAnalysisLib.atomic import FOLDER_STEPS
from HCCAnalysisLib.models.package import checked_weights, read_card, write_package

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from package_writer import TASK_CARD, weights_of  # noqa: E402
pytestmark = pytest.mark.skipif(not hasattr(os, "fork") or not hasattr(signal, "SIGKILL"),
                                reason="fork and SIGKILL are POSIX-only")


def package_version(folder):
    """The version of a complete, consistent package at `folder` (after the reader's recovery)."""
    card = read_card(folder)
    weights = checked_weights(folder, card)  # the hash of the weights is the card's
    values = np.unique(load_file(str(weights))["w"])
    assert values.size == 1 and f"v{int(values[0])}" == card["version"], (card["version"], values)
    return int(values[0])


def _first_version(package):
    write_package(package, weights_of(1), dict(TASK_CARD, version="v1"))


@pytest.fixture
def recovery_lines():
    """The lines the library's recovery logs (a handler of its own on HCCAnalysisLib.atomic's
    logger: whatever else this process's logging does with them)."""
    lines = []

    class Lines(logging.Handler):
        def emit(self, record):
            lines.append(record.getMessage())

    logger, handler = logging.getLogger("HCCAnalysisLib.atomic"), Lines(logging.WARNING)
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING)
    yield lines
    logger.removeHandler(handler)
    logger.setLevel(level)


def _leftovers(folder):
    return sorted(p.name for p in Path(folder).parent.iterdir() if p.name.startswith(f".{Path(folder).name}."))


@pytest.mark.parametrize("step, survivor", [
    ("partial-written", 1), ("ready", 1), ("aside", 2), ("swapped", 2), ("old-half-removed", 2)])
def test_kill_at_each_step_leaves_one_complete_package(tmp_path, recovery_lines, step, survivor):
    assert step in FOLDER_STEPS
    package = tmp_path / "model"
    _first_version(package)
    (package / "notes.txt").write_text("the user's own notes\n")  # kept across replacements
    pid, pipe = _forked_writer(package, 2, kill_at=step)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    assert os.read(pipe, 16) == b""  # killed before it finished replacing the package
    os.close(pipe)
    assert package_version(package) == survivor  # read_card recovers the folder first
    assert len(recovery_lines) == 1 and "interrupted while replacing it" in recovery_lines[0], recovery_lines
    assert _leftovers(package) == []
    assert (package / "notes.txt").read_text() == "the user's own notes\n"
    assert sorted(p.name for p in package.iterdir()) == ["model.json", "model.safetensors", "notes.txt"]
    assert package_version(package) == survivor and len(recovery_lines) == 1  # recovered once


def _forked_writer(package, first, kill_at=None):
    """A child forked from this test process (no start-up cost) replacing `package` in a loop,
    versions first, first + 1, ...; returns (pid, read end of a pipe it reports each version on)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            os.close(read_end)
            if kill_at:
                os.environ["HCCANALYSIS_KILL_AT"] = kill_at
            for version in range(first, first + 10**6):
                write_package(package, weights_of(version), dict(TASK_CARD, version=f"v{version}"))
                os.write(write_end, b"%d\n" % version)
        finally:
            os._exit(0)
    os.close(write_end)
    return pid, read_end


def test_kill_at_random_moments_while_replacing(tmp_path, recovery_lines):
    """At least 12 kills at random moments of a loop of replacements: each leaves a complete
    package, the old one or a newer one. Kills go on (up to 60) until one has landed mid-replacement
    and been recovered: where a kill lands depends on the machine's load (two test workers share
    the cores in CI), not only on the seeded delays."""
    package = tmp_path / "model"
    _first_version(package)
    rng = random.Random(14)
    seen, first, kills = set(), 2, 0
    while kills < 12 or (not recovery_lines and kills < 60):
        kills += 1
        pid, pipe = _forked_writer(package, first)
        assert os.read(pipe, 16).split()[0] == str(first).encode()  # one full replacement done
        time.sleep(rng.uniform(0.0, 0.02))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(pipe)
        version = package_version(package)
        assert version >= first and _leftovers(package) == []
        seen.add(version)
        first = version + 1
    assert len(seen) == kills  # every kill left a complete package, each a newer version than before
    assert len(recovery_lines) >= 1  # some kills landed mid-replacement (there is far more writing than waiting)
