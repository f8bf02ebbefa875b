"""Jobs as chains of stages: embed, train, sonify."""
