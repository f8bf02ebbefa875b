"""The stages jobs are built from: numpy batches in and out, named by dotted path, built where they run."""
