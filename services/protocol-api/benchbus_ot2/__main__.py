"""`python -m benchbus_ot2 protocol.py ...` is `benchbus-execute`."""
import sys

from .execute import main

sys.exit(main())
