"""What a user installs: the licence, the extension metadata, the ExtensionsIndex entry, and
code that Slicer's own Python can run (Slicer 5.8 ships Python 3.9, Slicer main 3.12).

Slicer's build reads the top-level CMakeLists.txt (EXTENSION_*) and the ExtensionsIndex entry
HCCAnalysis.json (schema slicer-extension-catalog-entry-schema-v1.0.1, read by
slicerFunctionExtractExtensionDescriptionFromJson); neither can be built here, so the tests
check them the way those readers do.
"""

import ast
import json
import re
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MODULE = ROOT / "HCCAnalysis"
LIBRARY = ROOT / "HCCAnalysisLib"
SCHEMA_URL = "https://raw.githubusercontent.com/Slicer/Slicer/main/Schemas/slicer-extension-catalog-entry-schema-v1.0.1.json"
# The properties of schema v1.0.1 (it sets additionalProperties false) and the JSON type of each.
CATALOG_PROPERTIES = {"$schema": str, "category": str, "scm_url": str, "scm_revision": str, "scm_type": str,
                      "build_dependencies": list, "build_subdirectory": str, "enabled": bool, "tier": int}
CATALOG_REQUIRED = {"$schema", "category", "scm_url"}  # the schema's "required"
CMAKE_READER_REQUIRED = {"scm_url", "scm_revision", "category"}  # Slicer's CMake reader fails without them
APACHE_SECTIONS = ["1. Definitions.", "2. Grant of Copyright License.", "3. Grant of Patent License.",
                   "4. Redistribution.", "5. Submission of Contributions.", "6. Trademarks.",
                   "7. Disclaimer of Warranty.", "8. Limitation of Liability.",
                   "9. Accepting Warranty or Additional Liability."]
PYTHONS = [(3, 9), (3, 12)]  # Slicer 5.8 and Slicer main
REMOVED_IN_312 = {"distutils", "imp", "asynchat", "asyncore", "smtpd"}


def cmake_settings(path: Path = ROOT / "CMakeLists.txt") -> dict:
    """The `set(NAME "value")` lines of a CMake file, as {NAME: value}."""
    text = path.read_text(encoding="utf-8")
    return dict(re.findall(r'^set\((EXTENSION_\w+) "([^"]*)"\)', text, flags=re.MULTILINE))


def catalog_entry() -> dict:
    return json.loads((ROOT / "HCCAnalysis.json").read_text(encoding="utf-8"))


# --- licence ---------------------------------------------------------------------------------

def test_license_is_the_full_apache_2_text_and_matches_what_we_declare():
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION" in text
    positions = [text.find(section) for section in APACHE_SECTIONS]
    assert -1 not in positions and positions == sorted(positions), "a section is missing or out of order"
    assert "END OF TERMS AND CONDITIONS" in text and "APPENDIX: How to apply the Apache License" in text
    assert len(text.split()) > 1500  # the full text, not a notice pointing to it
    assert 'license = { text = "Apache-2.0" }' in (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert "Apache-2.0" in (ROOT / "README.md").read_text(encoding="utf-8")


# --- CMake metadata --------------------------------------------------------------------------

def test_extension_metadata_is_real_and_the_package_ships_our_licence():
    meta = cmake_settings()
    assert meta["EXTENSION_CONTRIBUTORS"] == "HCCAnalysis developers"
    description = meta["EXTENSION_DESCRIPTION"]
    assert 80 < len(description) < 600 and "HCC" in description and "Research use only" in description
    assert meta["EXTENSION_CATEGORY"] == "Quantification"
    for placeholder in ("TODO", "example.com", "FIXME", "contributors\"", "Firstname"):
        assert placeholder not in (ROOT / "CMakeLists.txt").read_text(encoding="utf-8"), placeholder
    # Packaged with our LICENSE and README (Slicer's own are the defaults otherwise).
    cmake = (ROOT / "CMakeLists.txt").read_text(encoding="utf-8")
    assert 'set(EXTENSION_LICENSE_FILE "${CMAKE_CURRENT_SOURCE_DIR}/LICENSE")' in cmake
    assert 'set(EXTENSION_README_FILE "${CMAKE_CURRENT_SOURCE_DIR}/README.md")' in cmake
    assert cmake.index("EXTENSION_LICENSE_FILE") < cmake.index("include(${Slicer_EXTENSION_CPACK})")


def test_metadata_urls_point_only_at_files_that_exist():
    """No URL to a file the repository does not hold: a raw.githubusercontent URL must name a
    committed file (path after owner/repo/revision); an empty value is allowed (optional)."""
    meta = cmake_settings()
    urls = [u for key in ("EXTENSION_HOMEPAGE", "EXTENSION_ICONURL") for u in [meta[key]] if u]
    urls += meta["EXTENSION_SCREENSHOTURLS"].split()
    for url in urls:
        assert url.startswith("https://"), url
        raw = re.match(r"https://raw\.githubusercontent\.com/[^/]+/[^/]+/[^/]+/(.+)$", url)
        if raw:
            assert (ROOT / raw.group(1)).is_file(), f"{url} names a file that is not in the repository"
            if "SCREENSHOT" in url.upper() or url in meta["EXTENSION_SCREENSHOTURLS"]:
                assert raw.group(1).lower().endswith((".png", ".jpg", ".jpeg")), url


# --- ExtensionsIndex entry -------------------------------------------------------------------

def test_extensions_index_entry_follows_the_catalog_schema():
    entry = catalog_entry()
    assert isinstance(entry, dict)
    assert CATALOG_REQUIRED <= set(entry), CATALOG_REQUIRED - set(entry)
    assert CMAKE_READER_REQUIRED <= set(entry), CMAKE_READER_REQUIRED - set(entry)
    assert set(entry) <= set(CATALOG_PROPERTIES), set(entry) - set(CATALOG_PROPERTIES)  # additionalProperties
    for key, value in entry.items():
        expected = CATALOG_PROPERTIES[key]
        assert isinstance(value, expected) and not (expected is int and isinstance(value, bool)), (key, value)
    assert entry["$schema"].rstrip("#") == SCHEMA_URL
    assert all(isinstance(name, str) and name for name in entry.get("build_dependencies", []))
    assert entry.get("tier", 5) in (1, 3, 5)
    assert entry.get("scm_type", "git") in ("git", "local")
    assert entry["scm_url"] and entry["scm_revision"] and entry["category"]


def test_extensions_index_entry_agrees_with_the_cmake_metadata():
    """Slicer names the entry after the extension (the project name) and builds the
    build_dependencies first; both must match what CMakeLists.txt declares."""
    entry, meta = catalog_entry(), cmake_settings()
    cmake = (ROOT / "CMakeLists.txt").read_text(encoding="utf-8")
    assert re.search(r"^project\(HCCAnalysis\)", cmake, flags=re.MULTILINE)  # -> HCCAnalysis.json
    assert entry["category"] == meta["EXTENSION_CATEGORY"]
    assert entry.get("build_dependencies", []) == meta["EXTENSION_DEPENDS"].split()
    build_dir = ROOT / entry.get("build_subdirectory", ".")
    assert (build_dir / "CMakeLists.txt").is_file()
    if entry.get("scm_type", "git") == "local":  # a folder, relative to Slicer_LOCAL_EXTENSIONS_DIR
        assert (ROOT / entry["scm_url"] / "CMakeLists.txt").samefile(ROOT / "CMakeLists.txt")
    else:
        assert entry["scm_url"].startswith("https://"), "a public, read-only clone URL"


# --- Python versions -------------------------------------------------------------------------

def test_pyproject_admits_slicer_5_8_python():
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert re.search(r'^requires-python = ">=3\.9"$', text, flags=re.MULTILINE)


def _module_files() -> list:
    return sorted(MODULE.rglob("*.py"))


def _parse_as(path: Path, version: tuple) -> ast.Module:
    """Parse with the grammar of `version`, and compile with warnings as errors (an invalid
    escape sequence, a DeprecationWarning here, is a SyntaxWarning from 3.12 on)."""
    source = path.read_text(encoding="utf-8")
    tree = ast.parse(source, filename=str(path), feature_version=version)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        compile(source, str(path), "exec")
    return tree


def test_the_module_has_python_files():
    names = {p.relative_to(MODULE).as_posix() for p in _module_files()}
    assert {"HCCAnalysis.py", "Scripts/batch.py"} <= names


@pytest.mark.parametrize("version", PYTHONS, ids=lambda v: f"py{v[0]}{v[1]}")
@pytest.mark.parametrize("path", _module_files(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_module_files_compile_for_slicer_pythons(path, version):
    tree = _parse_as(path, version)
    assert _runtime_unions(tree) == [], "`X | Y` evaluated at run time needs Python 3.10"
    if version >= (3, 12):
        assert not _imported_top_names(tree) & REMOVED_IN_312


def _imported_top_names(tree: ast.Module) -> set:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def _runtime_unions(tree: ast.Module) -> list:
    """PEP 604 unions (`X | None`) in annotations that Python evaluates when the code runs:
    function signatures and class-body annotations (dataclass fields) of a module without
    `from __future__ import annotations`. Python 3.9 raises TypeError on them."""
    if any(isinstance(n, ast.ImportFrom) and n.module == "__future__" and any(a.name == "annotations" for a in n.names)
           for n in tree.body):
        return []

    def union(node):
        return node is not None and not isinstance(node, ast.Constant) and any(
            isinstance(x, ast.BinOp) and isinstance(x.op, ast.BitOr) for x in ast.walk(node))

    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            args = node.args
            every = [*args.posonlyargs, *args.args, *args.kwonlyargs, *(a for a in (args.vararg, args.kwarg) if a)]
            found += [f"{node.name}({a.arg}) line {node.lineno}" for a in every if union(a.annotation)]
            if union(node.returns):
                found.append(f"{node.name} -> line {node.lineno}")
        elif isinstance(node, ast.ClassDef):
            found += [f"{node.name} field line {s.lineno}" for s in node.body
                      if isinstance(s, ast.AnnAssign) and union(s.annotation)]
    return found


def _library_file(module: str):
    """The file of a dotted HCCAnalysisLib module name, or None (a name inside a module)."""
    base = ROOT.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _top_level_library_imports(path: Path, module: str) -> set:
    """HCCAnalysisLib modules a file imports when it is imported (not those inside functions),
    with the packages Python imports on the way."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    wanted = set()

    def statements(body):
        for node in body:
            if isinstance(node, (ast.If, ast.Try)):
                yield from statements(node.body)
                yield from statements(getattr(node, "orelse", []))
                for handler in getattr(node, "handlers", []):
                    yield from statements(handler.body)
                yield from statements(getattr(node, "finalbody", []))
            else:
                yield node

    for node in statements(tree.body):
        if isinstance(node, ast.Import):
            wanted |= {a.name for a in node.names if a.name.split(".")[0] == "HCCAnalysisLib"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "HCCAnalysisLib":
                continue
            wanted.add(target)
            wanted |= {f"{target}.{a.name}" for a in node.names if _library_file(f"{target}.{a.name}")}
    expanded = set()
    for name in wanted:
        parts = name.split(".")
        expanded |= {".".join(parts[:k]) for k in range(1, len(parts) + 1)}
    return {name for name in expanded if _library_file(name)}


def startup_library_modules() -> dict:
    """{module name: file} of every HCCAnalysisLib module that Slicer imports when it loads
    HCCAnalysis.py at start-up (the transitive closure of top-level imports)."""
    todo = _top_level_library_imports(MODULE / "HCCAnalysis.py", "HCCAnalysis")
    seen = {}
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen[name] = _library_file(name)
        todo |= _top_level_library_imports(seen[name], name) - set(seen)
    return seen


def test_startup_closure_is_found():
    modules = startup_library_modules()
    assert {"HCCAnalysisLib", "HCCAnalysisLib.panel.choices", "HCCAnalysisLib.panel.dependencies",
            "HCCAnalysisLib.tasks"} <= set(modules)


@pytest.mark.parametrize("version", PYTHONS, ids=lambda v: f"py{v[0]}{v[1]}")
def test_library_modules_imported_at_slicer_startup_run_on_slicer_pythons(version):
    """Slicer imports these with HCCAnalysis.py when it starts: syntax or a run-time annotation
    from a newer Python would stop the module from loading at all."""
    problems = {}
    for name, path in sorted(startup_library_modules().items()):
        try:
            tree = _parse_as(path, version)
        except SyntaxError as err:
            problems[name] = f"syntax: {err}"
            continue
        unions = _runtime_unions(tree)
        if unions:
            problems[name] = unions
        if version >= (3, 12) and _imported_top_names(tree) & REMOVED_IN_312:
            problems[name] = sorted(_imported_top_names(tree) & REMOVED_IN_312)
    assert problems == {}


@pytest.mark.parametrize("version", PYTHONS, ids=lambda v: f"py{v[0]}{v[1]}")
def test_whole_library_parses_for_slicer_pythons(version):
    """pyproject.toml promises Python >= 3.9 for all of HCCAnalysisLib (the rest is imported on
    the first run, inside Slicer's Python)."""
    problems = {}
    for path in sorted(LIBRARY.rglob("*.py")):
        try:
            unions = _runtime_unions(_parse_as(path, version))
        except SyntaxError as err:
            problems[path.relative_to(ROOT).as_posix()] = f"syntax: {err}"
            continue
        if unions:
            problems[path.relative_to(ROOT).as_posix()] = unions
    assert problems == {}
