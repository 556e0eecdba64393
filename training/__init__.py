"""Training for AffectLens: Aff-Wild2-layout data (+ reviewers' corrections from the database) ->
checkpoints that the app loads. Entry point: `python -m training --help`."""
