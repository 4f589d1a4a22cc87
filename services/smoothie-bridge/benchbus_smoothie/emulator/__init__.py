"""A Smoothieboard (OT-2 build, grbl mode) stand-in speaking the real bytes over TCP or a pty.

Faithful where the real board and the simple Opentrons stand-in differ (opentrons-ot2.md sections 1.2, 1.5-1.7):
- CR becomes LF, and every line (empty ones too) is answered with `ok`, so `G0 X1 \\r\\n\\r\\n` gets four;
- `G90`/`G91` and `F` are honoured; moves take the time their distance, max speed and acceleration imply, run on a
  motion queue (acked at once), and `M400` acks only when the queue is empty; `G28.2`, `G4` and `G38.2` block;
- homing runs to the max switch and backs off by the retract distance; `G28.6` flags; `M119` switch states;
- HALT: a limit-enabled axis reaching its switch while it moves raises `ALARM: Hard limit +<axis>`, the queue is
  flushed, and until `M999` everything but the allowed M-codes answers `error:Alarm lock`; homing without a switch
  is `ALARM: Homing fail`; a probe that touches nothing is `ALARM: Probe fail`; `kill()` is the kill input;
- pipette EEPROM (`M369`-`M372`) with configurable pipettes;
- fault injection: silence, garbled replies, a dropped ack, a spurious limit alarm mid-move, the port closing.

The modules, by concern: `motion` (axes, move times, the motion queue), `machine` (the board's state and what each
code does), `pipettes` (the EEPROMs), `faults` (what a test arms), `transport` (the UART on TCP or a pty: bytes,
line framing, real-time characters, paced output), `protocol` (lines to codes, the `ok`s, faults applied), `board`
(`SmoothieEmulator`, all of it together), `control` (JSON over HTTP for tests in another process), `cli`.

In tests: `from benchbus_smoothie.emulator.board import SmoothieEmulator`; `emu = SmoothieEmulator(speedup=200);
url = emu.start_tcp()`. From a shell: `benchbus-smoothie-emulator --tcp 9996` or `--pty` (prints the device path);
`--control-port PORT` adds the JSON HTTP interface of `control.py`.
"""
