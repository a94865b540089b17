"""decide, PURE: health machine, damping, E-model, policies and the DID plan.

Nothing here does I/O, reads a clock or imports asyncio: time comes in as an argument, so
every rule is tested exhaustively and property-based. import-linter holds this line.
"""
