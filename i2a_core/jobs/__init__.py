"""The jobs (fetch, embed, train, sonify, eval): a typed config, stages, a plan and a report each."""
