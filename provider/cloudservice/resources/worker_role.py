"""`cloudservice:index:WorkerRole`: a Worker Role, a package doing background work.

Runs as a Web Role does (`_package_role.py`); usually without input endpoints, so it is
healthy when its agent reports the role ready.
"""

from __future__ import annotations

from ._package_role import PackageRoleResource


class WorkerRole(PackageRoleResource):
    token = "cloudservice:index:WorkerRole"
    description = (
        "A Worker Role: a package on a guest OS the fabric supplies and patches, on instances "
        "spread over update domains, for background work."
    )
