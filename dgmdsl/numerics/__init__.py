"""Losses, samplers and estimators in plain torch, shared by backends and engines."""
