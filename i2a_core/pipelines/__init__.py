"""Batch jobs built from stages (fetch, embed, train, sonify): each module wires one job, on Ray or in-process."""
