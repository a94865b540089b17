"""sense: one module per probe kind, each ``async def probe(spec, *, timeout) -> Sample``."""
