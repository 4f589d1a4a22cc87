"""benchbus calibration-store. Kept empty on purpose: `store` and `fits` import without the service or pydantic."""
