"""`python -m benchbus_gateway` runs the service, as its console script does."""
import sys

from .service import main

sys.exit(main())
