"""Idempotent reconcilers: observe actual state, plan the difference, apply it."""
