"""benchbus smoothie-bridge: the OT-2's six-axis motion through the Smoothieboard, shared safely over the bus."""
