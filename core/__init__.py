"""AffectLens core: video, faces, models, labels, metrics and Aff-Wild2 I/O (no UI, no database)."""
