"""decide and act: config, pure health and policy cores, actuators, journal, daemon, CLI."""
