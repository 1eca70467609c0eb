"""`python -m carl_studio.server` = `carl-mcp`."""

import sys

from carl_studio.server.main import main

sys.exit(main())
