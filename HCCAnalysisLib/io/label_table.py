"""The label table a label-map file carries: value -> name.

TotalSegmentator (v2) writes its multi-label NIfTI with a NIfTI-1 header extension holding a
CIFTI/Caret XML `<LabelTable>` (`<Label Key="5" ...><![CDATA[liver]]></Label>`); that is how
`--liver-label liver` finds liver = 5 in its maps (checked on the maps of TotalSegmentator's
own test files: 1 spleen, 2 kidney_right, 3 kidney_left, 4 gallbladder, 5 liver). The header is
read as bytes here (the extension is ignored by ITK); a file without a table gives {}.
"""

from __future__ import annotations

import gzip
import re
import struct
from pathlib import Path

NIFTI1_HEADER_BYTES = 348
# A label table larger than this is not read (a header extension is a few kilobytes).
MAX_EXTENSION_BYTES = 4 * 1024 * 1024
_LABEL = re.compile(rb"<Label\s+Key=\"(\d+)\"[^>]*>\s*(?:<!\[CDATA\[(.*?)\]\]>|([^<]*))\s*</Label>", re.S)


def _nifti_head(path: Path) -> bytes:
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rb") as handle:
        head = handle.read(NIFTI1_HEADER_BYTES + 4)
        if len(head) < NIFTI1_HEADER_BYTES + 4:
            return b""
        for order in "<>":
            if struct.unpack(order + "i", head[:4])[0] == NIFTI1_HEADER_BYTES:
                break
        else:
            return b""
        vox_offset = int(struct.unpack(order + "f", head[108:112])[0])
        if head[NIFTI1_HEADER_BYTES] == 0 or vox_offset <= NIFTI1_HEADER_BYTES + 4:
            return b""  # no extension
        return handle.read(min(vox_offset, MAX_EXTENSION_BYTES) - NIFTI1_HEADER_BYTES - 4)


def read_label_table(path: str | Path) -> dict[int, str]:
    """value -> name from a NIfTI label map's XML label table ({} when there is none)."""
    path = Path(path)
    if not path.name.lower().endswith((".nii", ".nii.gz")):
        return {}
    try:
        extension = _nifti_head(path)
    except (OSError, EOFError, struct.error):
        return {}  # the image reader reports a broken file with its own message
    table = {}
    for key, cdata, plain in _LABEL.findall(extension):
        name = (cdata if cdata is not None and cdata != b"" else plain).decode("utf-8", "replace").strip()
        if name and int(key) > 0:
            table[int(key)] = name
    return table
