"""The runtime: data resolution, the training loop, run directories and checkpoints."""
