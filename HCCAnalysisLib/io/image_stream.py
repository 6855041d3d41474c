"""Checking that an image file's data is as long as its header says, before ITK reads it.

ITK reads a truncated `.nii.gz` without complaint (the missing voxels become 0), and a NRRD
or NIfTI header whose voxel type or sizes do not match the data is read as whatever the header
says: a prediction from a lying file. Here the header is parsed, the data stream is measured
(a gzip stream is decompressed to its end, at most one byte past what the header announces,
so a decompression bomb costs no more than a good file) and any difference is refused.
Formats and encodings not covered (MetaImage, bzip2, ascii, multi-file NRRD) are left to ITK.
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from pathlib import Path

from HCCAnalysisLib.errors import HCCInputError

NRRD_TYPE_BYTES = {
    **dict.fromkeys(("signed char", "int8", "int8_t", "uchar", "unsigned char", "uint8", "uint8_t"), 1),
    **dict.fromkeys(("short", "short int", "signed short", "signed short int", "int16", "int16_t", "ushort",
                     "unsigned short", "unsigned short int", "uint16", "uint16_t"), 2),
    **dict.fromkeys(("int", "signed int", "int32", "int32_t", "uint", "unsigned int", "uint32", "uint32_t",
                     "float"), 4),
    **dict.fromkeys(("longlong", "long long", "long long int", "signed long long", "signed long long int",
                     "int64", "int64_t", "ulonglong", "unsigned long long", "unsigned long long int", "uint64",
                     "uint64_t", "double"), 8),
}
_CHUNK = 1 << 20


def _stream_length(handle, limit: int, source: Path) -> int:
    """Bytes a gzip stream (one or more members) decompresses to, counting stopped past `limit`;
    a stream cut short is refused."""
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    total, pending = 0, b""
    while total <= limit:
        block = pending or handle.read(_CHUNK)
        pending = b""
        if not block:
            if not inflater.eof:
                raise HCCInputError(f"compressed data stream is truncated (it ends after {total} of the "
                                    f"{limit} bytes its header announces)", source,
                                    "the file was cut short (an interrupted copy or download?): copy it again")
            return total
        try:
            total += len(inflater.decompress(block, limit + 2 - total))
            while inflater.unconsumed_tail and total <= limit:
                total += len(inflater.decompress(inflater.unconsumed_tail, limit + 2 - total))
        except zlib.error as err:
            raise HCCInputError(f"compressed data stream is corrupt ({err})", source) from None
        if inflater.eof:
            pending = inflater.unused_data or handle.read(_CHUNK)  # another gzip member may follow
            if not pending.strip(b"\0"):
                return total
            inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    return total


def _compare(actual: int, expected: int, what: str, source: Path) -> None:
    if actual < expected:
        raise HCCInputError(f"holds {actual} bytes of voxel data where its header ({what}) announces {expected}: "
                            f"the data is truncated or the header's voxel type / size is wrong", source)
    if actual > expected:
        raise HCCInputError(f"holds more voxel data than its header ({what}) announces ({expected} bytes): the "
                            f"header's voxel type or size is wrong", source, "re-export the image")


def _nrrd_fields(path: Path) -> tuple[dict[str, str], int]:
    """The header fields of a NRRD file (lower-case keys) and the offset where its data begins."""
    with open(path, "rb") as handle:
        head = handle.read(65536)
    end = head.find(b"\n\n")
    end_crlf = head.find(b"\r\n\r\n")
    if end_crlf >= 0 and (end < 0 or end_crlf < end):
        end, gap = end_crlf, 4
    else:
        gap = 2
    text = head[: end if end >= 0 else len(head)].decode("latin-1")
    fields = {}
    for line in text.splitlines()[1:]:
        if line.startswith("#") or ":" not in line:
            continue
        key, value = line.split(":", 1)
        fields[key.strip().lower()] = value.lstrip("=").strip()
    return fields, (end + gap if end >= 0 else -1)


def check_nrrd_data(path: str | Path) -> None:
    path = Path(path)
    fields, offset = _nrrd_fields(path)
    kind = fields.get("type", "").lower()
    encoding = fields.get("encoding", "").lower()
    data_file = fields.get("data file") or fields.get("datafile")
    if kind not in NRRD_TYPE_BYTES or encoding not in ("raw", "gzip", "gz") or "sizes" not in fields:
        return
    if fields.get("line skip", "0") != "0" or fields.get("byte skip", "0") != "0":
        return
    if data_file and (data_file.upper().startswith("LIST") or len(data_file.split()) > 1):
        return
    try:
        sizes = [int(v) for v in fields["sizes"].split()]
    except ValueError:
        return  # ITK refuses it with its own message
    expected = NRRD_TYPE_BYTES[kind]
    for size in sizes:
        expected *= size
    what = f"type {kind}, sizes {' '.join(map(str, sizes))}"
    source, start = (path.parent / data_file, 0) if data_file else (path, offset)
    if start < 0 or not source.is_file():
        return  # no header end / no data file: ITK names it
    if encoding == "raw":
        _compare(os.path.getsize(source) - start, expected, what, source)
        return
    with open(source, "rb") as handle:
        handle.seek(start)
        _compare(_stream_length(handle, expected, source), expected, what, source)


def _nifti_header(raw: bytes) -> tuple[list[int], int, int] | None:
    """(sizes, bits per voxel, data offset) from a NIfTI-1 or NIfTI-2 header; None when unknown."""
    for endian in "<>":
        if len(raw) >= 348 and struct.unpack(endian + "i", raw[:4])[0] == 348:
            dims = struct.unpack(endian + "8h", raw[40:56])
            bitpix = struct.unpack(endian + "h", raw[72:74])[0]
            offset = max(int(struct.unpack(endian + "f", raw[108:112])[0]), 352)
            break
        if len(raw) >= 540 and struct.unpack(endian + "i", raw[:4])[0] == 540:
            bitpix = struct.unpack(endian + "h", raw[14:16])[0]
            dims = struct.unpack(endian + "8q", raw[16:80])
            offset = max(struct.unpack(endian + "q", raw[168:176])[0], 544)
            break
    else:
        return None
    if not 1 <= dims[0] <= 7 or bitpix <= 0 or bitpix % 8:
        return None
    return [int(d) for d in dims[1: dims[0] + 1]], bitpix, offset


def check_nifti_data(path: str | Path) -> None:
    path = Path(path)
    compressed = path.name.lower().endswith(".gz")
    opener = gzip.open if compressed else open
    try:
        with opener(path, "rb") as handle:
            raw = handle.read(540)
    except (OSError, EOFError):
        return  # not gzip / unreadable header: ITK's message says so
    header = _nifti_header(raw)
    if header is None or any(s <= 0 for s in header[0]):
        return
    sizes, bitpix, offset = header
    expected = bitpix // 8
    for size in sizes:
        expected *= size
    what = f"{bitpix} bits per voxel, sizes {' '.join(map(str, sizes))}"
    if not compressed:
        _compare(os.path.getsize(path) - offset, expected, what, path)
        return
    with open(path, "rb") as handle:
        total = _stream_length(handle, offset + expected, path)
    _compare(total - offset, expected, what, path)


def check_image_data(path: str | Path) -> None:
    """Refuse an image file whose data does not match its header (see the module docstring)."""
    name = Path(path).name.lower()
    if name.endswith((".nrrd", ".nhdr")):
        check_nrrd_data(path)
    elif name.endswith((".nii", ".nii.gz")):
        check_nifti_data(path)
