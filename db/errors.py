"""The errors db/ raises for people to read: each one means nothing was written, and its message says
what to do. The page shows them as they are (webapp catches ValidationError, the base of all four)."""


class ValidationError(ValueError):
    """Refused before anything was written; the message says what and why."""


class NotFoundError(ValidationError):
    """An unknown video, reviewer, correction, flag or prompt set."""


class ReviewRuleError(ValidationError):
    """A rule of the review process: authors do not review their own corrections, an idempotency key
    belongs to one submission, a status changed by someone else in the meantime."""


class DatabaseBusy(ValidationError):
    """Other writers kept the database busy for longer than a write may wait (db.limits.WRITE_TIMEOUT_S):
    the transaction was rolled back, so nothing was saved and sending the same thing again is safe."""


class CannotWrite(ValidationError):
    """The server's data folder (or the database server's disk) refused a write: full, read-only, or its
    permissions changed. The transaction was rolled back, so nothing was saved; it is not retried."""
