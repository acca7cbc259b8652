"""Percent-encoding of one key component, so that any string is one safe path level.

Rule: the output holds only ``[A-Za-z0-9._%-]``, never ``/``, never starts with ``.`` and never
contains ``..``; so no input can add a level, climb out of a directory or hide a file. Every
character outside ``[A-Za-z0-9._-]`` is written as ``%XX`` per UTF-8 byte (lone surrogates, which
JSON can carry, pass through as their surrogate bytes so they round-trip). A ``.`` is encoded too
when it starts the component or follows another ``.``. The empty string is written as ``%``,
which no non-empty input can produce. ``decode_component(encode_component(s)) == s`` for every
``s``, and the encoding is canonical (one output per input), so keys are deterministic.
"""

from __future__ import annotations

from typing import Final

from recorder.errors import StorageError

_SAFE: Final = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
_HEX: Final = "0123456789ABCDEF"
#: Stands for the empty component; ``%`` followed by no hex digits never comes from a byte.
EMPTY_COMPONENT: Final = "%"


def encode_component(value: str) -> str:
    if value == "":
        return EMPTY_COMPONENT
    out: list[str] = []
    previous = ""
    for char in value:
        if char in _SAFE or (char == "." and previous not in ("", ".")):
            out.append(char)
        else:
            for byte in char.encode("utf-8", "surrogatepass"):
                out.append("%" + _HEX[byte >> 4] + _HEX[byte & 0xF])
        previous = char
    return "".join(out)


def decode_component(encoded: str) -> str:
    """Inverse of ``encode_component``; refuses text it could not have produced."""
    if encoded == EMPTY_COMPONENT:
        return ""
    raw = bytearray()
    i = 0
    while i < len(encoded):
        char = encoded[i]
        if char == "%":
            pair = encoded[i + 1 : i + 3]
            if len(pair) != 2 or any(c not in _HEX for c in pair):
                raise StorageError(f"bad percent-escape in key component {encoded!r}")
            raw.append(int(pair, 16))
            i += 3
        elif char in _SAFE or char == ".":
            raw.append(ord(char))
            i += 1
        else:
            raise StorageError(f"character {char!r} cannot appear in an encoded key component")
    try:
        decoded = raw.decode("utf-8", "surrogatepass")
    except UnicodeDecodeError as exc:
        raise StorageError(f"key component {encoded!r} is not UTF-8") from exc
    if encode_component(decoded) != encoded:
        raise StorageError(f"key component {encoded!r} is not in canonical form")
    return decoded
