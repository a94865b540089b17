"""The wiring: feeds samples to the core, applies the actuators' plans, journals, tells.

Nothing here decides: the rules live in ``controller.core``; this layer owns the loop, the
clock, the tasks and the order in which things happen.
"""
