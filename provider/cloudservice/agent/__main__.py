"""``python3 -m cloudservice_agent`` (in the guest) or ``python -m cloudservice.agent``."""

from ._agent import main

raise SystemExit(main())
