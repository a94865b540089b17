"""The SIP edge: the DID plan as the edge needs it, and one actuator per kind of edge.

``plan`` holds the edge's desired state (pure values), ``document`` its JSON form and the
edge that pushes it (webhook and command send it), ``kamailio`` the JSON-RPC reconciler,
``drivers`` the one ``SipEdge`` protocol they all meet and the configured edges.
"""
