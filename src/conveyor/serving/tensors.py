"""Open Inference Protocol tensors: datatypes, JSON and binary encodings.

OIP V2 names element types ``BOOL``, ``INT8``..``UINT64``, ``FP16/32/64``
and ``BYTES``; data is row-major, flat or nested. Triton's binary tensor
extension (what ``tritonclient`` sends by default) appends raw little-endian
tensor bytes after the JSON header, whose length travels in the
``Inference-Header-Content-Length`` header; a BYTES element is a 4-byte
little-endian length followed by its bytes.
"""

from __future__ import annotations

import struct
from typing import Any

from conveyor.serving.errors import RequestError

__all__ = [
    "DATATYPES",
    "datatype_for",
    "datatype_of",
    "decode_binary",
    "encode_binary",
    "field_accepts",
    "numpy_dtype",
]

#: OIP datatype -> NumPy dtype name ("object" for BYTES).
DATATYPES: dict[str, str] = {
    "BOOL": "bool",
    "INT8": "int8",
    "INT16": "int16",
    "INT32": "int32",
    "INT64": "int64",
    "UINT8": "uint8",
    "UINT16": "uint16",
    "UINT32": "uint32",
    "UINT64": "uint64",
    "FP16": "float16",
    "FP32": "float32",
    "FP64": "float64",
    "BYTES": "object",
}

_BY_DTYPE = {v: k for k, v in DATATYPES.items()} | {"string": "BYTES", "str": "BYTES"}


def numpy_dtype(datatype: str) -> str:
    return DATATYPES[datatype]


def datatype_for(dtype: str) -> str:
    """The OIP datatype for a Field dtype or NumPy dtype name."""
    return _BY_DTYPE.get(dtype, "BYTES")


_BY_ARRAY_DTYPE: dict[Any, str] = {}


def datatype_of(array: Any) -> str:
    """The OIP datatype for a NumPy array (remembered per dtype: ``dtype.name`` is slow)."""
    dtype = array.dtype
    found = _BY_ARRAY_DTYPE.get(dtype)
    if found is None:
        found = datatype_for(dtype.name if dtype.kind not in "OUS" else "string")
        _BY_ARRAY_DTYPE[dtype] = found
    return found


def field_accepts(field_dtype: str, datatype: str) -> bool:
    """Whether a tensor of ``datatype`` may feed a field of ``field_dtype`` (safe widening only)."""
    if field_dtype in ("float32", "float64"):
        return datatype.startswith(("FP", "INT", "UINT"))
    if field_dtype.startswith(("int", "uint")):
        return datatype.startswith(("INT", "UINT"))
    if field_dtype == "bool":
        return datatype == "BOOL"
    return datatype == "BYTES"


def decode_binary(raw: bytes | memoryview, datatype: str, shape: list[int], name: str) -> Any:
    """An array from binary tensor bytes; RequestError when sizes disagree."""
    import numpy as np

    count = 1
    for n in shape:
        count *= n
    if datatype == "BYTES":
        items: list[str] = []
        view = memoryview(raw)
        pos = 0
        while pos < len(view):
            if pos + 4 > len(view):
                raise RequestError(f"input {name!r}: truncated BYTES element")
            (length,) = struct.unpack_from("<I", view, pos)
            pos += 4
            if pos + length > len(view):
                raise RequestError(f"input {name!r}: truncated BYTES element")
            try:
                items.append(bytes(view[pos : pos + length]).decode("utf-8"))
            except UnicodeDecodeError:
                raise RequestError(f"input {name!r}: BYTES element is not UTF-8 text") from None
            pos += length
        if len(items) != count:
            raise RequestError(
                f"input {name!r}: shape {shape} needs {count} elements, the binary data has "
                f"{len(items)}"
            )
        array = np.empty(count, dtype=object)
        array[:] = items
        return array.reshape(shape)
    dtype = np.dtype(DATATYPES[datatype]).newbyteorder("<")
    if len(raw) != count * dtype.itemsize:
        raise RequestError(
            f"input {name!r}: shape {shape} of {datatype} needs {count * dtype.itemsize} bytes, "
            f"got {len(raw)}"
        )
    return np.frombuffer(raw, dtype=dtype).reshape(shape)


def encode_binary(array: Any, datatype: str) -> bytes:
    """Raw little-endian bytes of ``array`` as OIP ``datatype``."""
    import numpy as np

    if datatype == "BYTES":
        parts: list[bytes] = []
        for item in array.ravel().tolist():
            data = item if isinstance(item, bytes) else str(item).encode("utf-8")
            parts.append(struct.pack("<I", len(data)))
            parts.append(data)
        return b"".join(parts)
    dtype = np.dtype(DATATYPES[datatype]).newbyteorder("<")
    return bytes(np.ascontiguousarray(array, dtype=dtype).data)
