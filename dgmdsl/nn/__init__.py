"""Torch building blocks shared by the family backends (never imports the front end)."""
