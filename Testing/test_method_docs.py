"""Each paper the library runs has its "paper says / we do / why" table (issue 12), and the code
the method docs name exists: a renamed or removed module makes this fail instead of leaving a
doc that points nowhere."""

import re
from pathlib import Path

import pytest

from HCCAnalysisLib.methods import PAPERS

ROOT = Path(__file__).resolve().parents[1]
LIB = ROOT / "HCCAnalysisLib"
# paper -> (doc, the heading its table sits under); Zhen and Wang share the fusion document
DOCS = {
    "jia2019": ("methods-jia2019.md", "## Paper says / we do / why"),
    "zhen2020": ("methods-fusion.md", "### Zhen 2020"),
    "wang2020": ("methods-fusion.md", "### Wang 2020"),
    "liang2018": ("methods-liang2018.md", "## Paper says / we do / why"),
    "meng2019": ("methods-meng2019.md", "## Paper says / we do / why"),
}
TABLE_HEAD = re.compile(r"^\|( paper \|)? paper says \| we do \| why \|$", re.M)


def test_every_paper_has_a_documented_table():
    assert set(DOCS) == set(PAPERS)


@pytest.mark.parametrize("paper", sorted(DOCS))
def test_paper_table_has_rows(paper):
    name, heading = DOCS[paper]
    text = (ROOT / "docs" / name).read_text(encoding="utf-8")
    assert heading in text, f"{name} has no '{heading}' section"
    section = text.split(heading, 1)[1]
    head = TABLE_HEAD.search(section)
    assert head, f"{name}: no 'paper says | we do | why' table under '{heading}'"
    rows = []
    for line in section[head.end():].lstrip("\n").splitlines()[1:]:  # past the |---| line
        if not line.startswith("|"):
            break
        rows.append(line)
    assert len(rows) >= 5, f"{name}: only {len(rows)} rows under '{heading}'"
    assert all(line.count("|") >= 4 for line in rows)


@pytest.mark.parametrize("name", sorted({doc for doc, _ in DOCS.values()}))
def test_code_named_in_method_docs_exists(name):
    text = (ROOT / "docs" / name).read_text(encoding="utf-8")
    named = set(re.findall(r"`((?:[a-z_0-9]+/)+[a-z_0-9]+\.py)`", text))
    assert named, f"{name} names no code"
    missing = [path for path in sorted(named)
               if not ((LIB / path).is_file() or (ROOT / path).is_file())]
    assert not missing, f"{name} names code that does not exist: {missing}"
