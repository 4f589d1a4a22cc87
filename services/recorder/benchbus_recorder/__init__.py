"""benchbus recorder: the one owner of the device's database of readings, commands, events and `$state` changes."""
