"""cloudservice: the Azure Cloud Services model on libvirt/QEMU hosts.

Packages, with imports pointing one way (left may import right, never back):

    resources/ (Pulumi provider handlers) -> virt/ (libvirt fabric driver)
                                          -> model/ (service model, packages, update planner)
                                          -> vhd/ (VHD disk engine)

``vhd``, ``model`` and ``virt`` never import pulumi.
"""
