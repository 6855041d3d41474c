"""The committed screenshot: a real, small PNG that the README and the metadata comment name, and a
render script that CI never has to run (trame-slicer lives in its own environment).

The picture itself is made by tools/render_screenshot.py (see its docstring); these checks only
guard what a user or the ExtensionsIndex sees of it.
"""

import ast
import struct
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT = ROOT / "HCCAnalysis" / "Resources" / "Screenshots" / "result.png"
SCRIPT = ROOT / "tools" / "render_screenshot.py"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_screenshot_is_a_small_real_png_of_four_views_and_a_table():
    data = SCREENSHOT.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    # Two 440-pixel views side by side; two rows of views and the table under them.
    assert width == 880 and 700 < height < 1200, (width, height)
    assert 20_000 < len(data) < 400_000, len(data)


def test_readme_and_metadata_name_the_committed_screenshot():
    relative = SCREENSHOT.relative_to(ROOT).as_posix()
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert f"]({relative})" in readme
    assert relative in (ROOT / "CMakeLists.txt").read_text(encoding="utf-8")


def test_render_script_keeps_trame_out_of_the_project():
    tree = ast.parse(SCRIPT.read_text(encoding="utf-8"), feature_version=(3, 9))
    top_level = {alias.name.split(".")[0] for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))
                 for alias in node.names} | {node.module.split(".")[0] for node in tree.body
                                            if isinstance(node, ast.ImportFrom) and node.module}
    # trame, slicer and vtk are imported inside functions: the module imports in any environment.
    assert not top_level & {"trame_slicer", "trame", "slicer", "vtkmodules", "vtk"}, top_level
    assert "render_screenshot.py" in (ast.get_docstring(tree) or "")
    for requirements in ("requirements.txt", "pyproject.toml", "HCCAnalysis/Resources/requirements.txt"):
        assert "trame" not in (ROOT / requirements).read_text(encoding="utf-8").lower(), requirements
