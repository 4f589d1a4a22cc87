"""benchbus protocol-runner: the robot-server's job on the bus (protocols, runs, live commands, port 31950)."""
