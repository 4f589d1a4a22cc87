"""`python -m benchbus_calibration` runs the service, as its console script does."""
import sys

from .service import main

sys.exit(main())
