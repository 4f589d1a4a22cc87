"""The pipettes' EEPROMs as the board reaches them (M369-M372): an id and a model per mount, 32 bytes each."""
from __future__ import annotations

DEFAULT_PIPETTES = {"left": ("p300_single_v2.1", "P3HSV2120200101"), "right": ("p20_multi_v2.0", "P20MV2020200101")}


class PipetteMemory:
    def __init__(self, pipettes: dict[str, tuple[str, str] | None] | None = None):
        self.memory: dict[str, dict[str, bytes]] = {"L": {}, "R": {}}
        for mount, entry in (DEFAULT_PIPETTES if pipettes is None else pipettes).items():
            self.set(mount, entry)

    def set(self, mount: str, entry: tuple[str, str] | None) -> None:
        """`entry`: (model, id), or None for no pipette on the mount."""
        letter = {"left": "L", "right": "R"}[mount]
        self.memory[letter] = {} if entry is None else {"model": entry[0].encode(), "id": entry[1].encode()}

    def read(self, code: str, field: str) -> str:
        letter = (code.split()[1:] or [""])[0].upper()
        if letter not in self.memory:
            return "error:no instrument found"
        memory = self.memory[letter]
        if not memory:
            return f"error:no {letter} instrument found"
        data = memory.get(field)
        if not data:
            return f"error:no data found on {letter} instrument"
        return f"{letter}:" + data.ljust(32, b"\x00")[:32].hex()

    def write(self, code: str, field: str) -> str | None:
        words = code.split()
        if len(words) < 3 or words[1].upper() not in self.memory:
            return "error:wrong number of bytes"
        letter = words[1].upper()
        if not self.memory[letter]:
            return f"error:no {letter} instrument found"
        try:
            self.memory[letter][field] = bytes.fromhex(words[2])
        except ValueError:
            return "error:wrong number of bytes"
        return None
