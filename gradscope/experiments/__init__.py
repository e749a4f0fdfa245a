"""Experiments: tasks, training (with checkpoints), input sources, sweeps and their merging, and the
reproductions of published claims. Everything here builds on `gradscope.analysis`."""
