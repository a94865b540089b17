"""The SIP edge: the DID plan as the edge needs it, and one driver per kind of edge.

``plan`` holds the edge's desired state (pure values), ``document`` its JSON form for
webhook and command receivers, ``kamailio`` the JSON-RPC reconciler, ``drivers`` builds
the configured drivers.
"""
