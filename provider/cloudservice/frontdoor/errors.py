"""Errors of the front door driver.

    FrontDoorError          the one class: HAProxy refused a config, could not start or
                            reload, or its runtime API did not answer; the message says
                            what failed and what to do

HAProxy's own diagnostics (its ALERT lines, the runtime API's answers) are quoted in the
message. Invalid specs are rejected earlier, by pydantic (`ValidationError`, a ValueError).
"""

from __future__ import annotations


class FrontDoorError(Exception):
    """HAProxy or its runtime API failed; the message names the cause and what to do."""
