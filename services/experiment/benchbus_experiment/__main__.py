"""`python -m benchbus_experiment` runs the service, as its console script does."""
import sys

from .service import main

sys.exit(main())
