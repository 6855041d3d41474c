"""Rewrite the MODULE_PYTHON_SCRIPTS list of HCCAnalysisLib/CMakeLists.txt from the tree.

Run after adding or removing a library file: `.venv/bin/python tools/update_cmake_lists.py`.
Testing/slicer_module/test_slicer_module_static.py fails while the list and the tree differ.
"""

import re
from pathlib import Path

LIB = Path(__file__).resolve().parents[1] / "HCCAnalysisLib"


def main():
    files = sorted(p.relative_to(LIB).as_posix() for p in LIB.rglob("*.py") if "__pycache__" not in p.parts)
    cmake = LIB / "CMakeLists.txt"
    text = cmake.read_text(encoding="utf-8")
    block = "set(MODULE_PYTHON_SCRIPTS\n" + "".join(f"  {name}\n" for name in files) + "  )"
    new = re.sub(r"set\(MODULE_PYTHON_SCRIPTS\s+.*?\)", lambda _: block, text, count=1, flags=re.S)
    cmake.write_text(new, encoding="utf-8")
    print(f"{len(files)} files listed in {cmake}")


if __name__ == "__main__":
    main()
