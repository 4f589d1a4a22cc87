"""benchbus gpio-service: the OT-2's lights, button, door switches and Smoothieboard board lines on the bus."""
