"""The errors db/ raises for people to read: each one means nothing was written, and its message says
what to do. The page shows them as they are (webapp catches ValidationError, the base of all of them)."""
import errno

CANNOT_WRITE_MESSAGE = "The server cannot write its data folder: nothing was saved."
_REFUSED_WRITES = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO)


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


def unwritable(err: BaseException) -> bool:
    """Whether an error means the data folder refused a write (full, over quota, read-only, no
    permission, failing): the caller says CANNOT_WRITE_MESSAGE instead of a generic error."""
    return isinstance(err, CannotWrite) or (isinstance(err, OSError) and err.errno in _REFUSED_WRITES)
