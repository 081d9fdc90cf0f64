"""`cloudservice:index:WebRole`: a Web Role, a package serving the service's input endpoints.

On this fabric a Web and a Worker role run the same way (the guest agent runs the package's
entry point); they are two resources so that a program, its preview and its state say which
role kind each is, as Azure's service definition does. See `_package_role.py`.
"""

from __future__ import annotations

from ._package_role import PackageRoleResource


class WebRole(PackageRoleResource):
    token = "cloudservice:index:WebRole"
    description = (
        "A Web Role: a package on a guest OS the fabric supplies and patches, on instances "
        "spread over update domains, answering the service's input endpoints."
    )
