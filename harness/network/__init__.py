"""The network between the driver and the server, emulated: two network namespaces joined by
a userspace link (a TUN device on each side and a relay process between them) that adds a
round trip, jitter, loss and a bandwidth limit, because this kernel has no `netem`.

shape: what the link does (Shape); link: the namespaces, devices and relay of one run, and
the sweep of what a killed run left; relay: the program that moves the packets; probe: what
the link measures as, from the client's side; netns: entering a namespace from Python.
"""
