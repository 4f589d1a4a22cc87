"""A faithful stand-in for the eVOLVER's chain of SAMD21 boards on one half-duplex RS-485 line.

It speaks the real bytes (`<param><r|i|a>,<v1>,...,_!` in; `<param><b|e>,<v1>,...,end` out, no newline) on a TCP
port (pyserial opens `socket://127.0.0.1:<port>`) or a pty, with the real timing: every byte takes 10 bit times at
the baud rate, a board enables its driver, waits `reply_delay_s` (100 ms), sends, and holds the line `hold_s` (100 ms;
stir 300 ms) after its reply. Host bytes that reach the line while a board drives it are corrupted (half duplex).
Boards stage values on `r`/`i` and apply them only on `a`. Unknown addresses get no answer (like `lxml`).

API for tests of any service (in-process):

    from benchbus_samd.emulator.line import SamdEmulator
    from benchbus_samd.emulator.wire import LineTiming
    emu = SamdEmulator(LineTiming(baudrate=230400, reply_delay_s=0.002, hold_s=0.002, stir_hold_s=0.004))
    port = emu.start_tcp(port=0)              # -> TCP port; the bridge's URL is f"socket://127.0.0.1:{port}"
    path = emu.start_pty(link=tmp / "ttySAMD")  # or a pty; the link survives drop_port() (a new pty each time)
    emu.staged("stir"), emu.applied("stir")   # list[str] (applied starts at the firmware defaults)
    emu.acks("stir")                          # `a` frames the stir board accepted
    emu.wait_applied("stir", values, timeout=2)  # True once applied == values (no sleeps in tests)
    emu.frames("stir")                        # ReceivedFrame(t, param, type, values, text) the boards understood
    emu.wire                                  # WireEvent log: every byte run on the line, both directions
    LineTiming.fast(), DEFAULT_PARAMS         # fast test timing; param -> (default values, fields_out, fields_in)
    emu.physical_limit_s(events)              # bytes on the wire at the baud rate + turnaround delays
    emu.first_byte_times                      # monotonic time of each host frame's first byte (latency benches)
    emu.inject("od_90", "garbled", probability=1.0, count=1)   # kinds: FAULT_KINDS; count=None: until cleared
    emu.inject_random(0.05)                   # any reply fault on any param, 5 % of transactions
    emu.clear_faults()
    emu.drop_port(down_s=0.5)                 # the port closes and comes back
    emu.pumps_running(), emu.pump_programs()  # which of the 48 pumps runs now, and their programs
    emu.late_release_s = 0.02                 # boards release the line 20 ms after their nominal hold
    emu.close()

Growing cultures (benchbus_samd.culture): `SamdEmulator(timing, rig=Rig(RigCalibration.from_evolver(cal_json)),
time_scale=1440)` (a day in a minute); `emu.culture()` (each vial's true od, volume, temperature, growth rate),
`emu.pump_events()` (every pump program applied), `emu.model_time()`.

As a program: `benchbus-samd-emulator --tcp PORT` or `--pty [--link PATH]` (`cli.py`; `--control-port PORT` adds
the JSON HTTP interface of `control.py`).

The modules, by concern: `boards` (the boards' readings and pumps: the physics), `wire` (the line's timing and the
logs), `faults` (what a test arms, and what each kind does to a reply), `transport` (TCP or pty, and the timeline
that delivers bytes on time), `line` (`SamdEmulator`: frames in, the collisions of half duplex, replies out),
`control`, `cli`. `LineTiming` is in `wire`, `DEFAULT_PARAMS` in `boards`, `FAULT_KINDS` in `faults`.
"""
