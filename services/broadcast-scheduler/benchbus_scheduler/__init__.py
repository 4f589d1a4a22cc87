"""benchbus broadcast-scheduler: the eVOLVER broadcast loop from conf.yml (segment `scheduler`)."""
