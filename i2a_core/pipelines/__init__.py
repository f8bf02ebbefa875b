"""Ray batch jobs built from stages: each module wires one job (embed, train, sonify)."""
