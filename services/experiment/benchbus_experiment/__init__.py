"""benchbus experiment service: turbidostat, chemostat and growth-curve runs on the device itself."""
