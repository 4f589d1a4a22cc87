"""Test and benchmark support: a real Mosquitto 2 broker, services in-process or as subprocesses."""
