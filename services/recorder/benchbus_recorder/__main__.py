"""`python -m benchbus_recorder` runs the service, as its console script does."""
import sys

from .service import main

sys.exit(main())
