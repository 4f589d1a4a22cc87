"""benchbus update-agent: signed A/B system updates with trial boots and rollback, SSH keys, the robot's name."""
