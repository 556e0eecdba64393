"""Rules of the review loop that a reviewer meets when a decision went against them: a correction proposed
again after its like was rejected is a new proposal (however decisions were revised since), and the
history comes a bounded page at a time."""
from test_db_engine import db_url, engine, sessions  # noqa: F401  (fixtures)
from test_db_repo import setup  # noqa: F401  (fixture)
from test_db_review import proposed  # noqa: F401  (fixture)

from db import repo


def test_proposing_a_rejected_correction_again_is_a_new_proposal(sessions, engine, proposed):
    """alice's EXPR 4 on frames 10-19 is rejected; she proposes it again with a reason: a new correction,
    pending, with her new note and its own "proposed" event. A double click of that proposal stays one."""
    with sessions.begin() as session:
        repo.decide_correction(session, proposed, video="v", reviewer="bob", accept=False, comment="a grimace")
    with sessions.begin() as session:
        again = repo.add_correction(session, "v", "expr", 10, 19, 4, "alice", note="look at frame 15: a smile")
        twice = repo.add_correction(session, "v", "expr", 10, 19, 4, "alice", note="look at frame 15: a smile")
        again_id, twice_id = again.id, twice.id
        assert (again.status, again.note) == ("proposed", "look at frame 15: a smile")
    assert again_id != proposed and twice_id == again_id
    with sessions.begin() as session:
        repo.decide_correction(session, again_id, video="v", reviewer="bob", accept=True)
        assert [(c.id, c.status) for c in repo.list_corrections(session, "v")] == [(proposed, "rejected"),
                                                                                    (again_id, "accepted")]
        events = repo.history(session, video="v")
        assert [(e.action, e.correction_id) for e in events] == [
            ("proposed", proposed), ("rejected", proposed), ("proposed", again_id), ("accepted", again_id)]
        assert events[2].detail["note"] == "look at frame 15: a smile"
        assert [(e.action, e.correction_id) for e in repo.history(session, video="v", last=2)] == [
            ("proposed", again_id), ("accepted", again_id)]
    with sessions.begin() as session:          # an accepted one proposed again is the one in force
        assert repo.add_correction(session, "v", "expr", 10, 19, 4, "alice").id == again_id


def test_a_proposal_after_a_revised_decision_is_never_taken_for_a_rejected_one(sessions, engine, proposed):
    """alice's EXPR 4 on frames 10-19 is rejected, proposed again and rejected again; bob then revises the
    first to accepted and later to rejected once more. alice proposes it a third time: a new pending
    correction, not the second (rejected) one returned as "the same submission"."""
    with sessions.begin() as session:
        repo.decide_correction(session, proposed, video="v", reviewer="bob", accept=False)
    with sessions.begin() as session:
        second = repo.add_correction(session, "v", "expr", 10, 19, 4, "alice").id
        repo.decide_correction(session, second, video="v", reviewer="bob", accept=False)
    with sessions.begin() as session:            # the first stands for a while: proposing it again returns it
        repo.revise_decision(session, proposed, video="v", reviewer="bob", accept=True, reason="it is a smile")
        assert repo.add_correction(session, "v", "expr", 10, 19, 4, "alice").id == proposed
        repo.revise_decision(session, proposed, video="v", reviewer="bob", accept=False, reason="a grimace after all")
    with sessions.begin() as session:
        third = repo.add_correction(session, "v", "expr", 10, 19, 4, "alice", note="frame 15 again")
        assert repo.add_correction(session, "v", "expr", 10, 19, 4, "alice").id == third.id     # a double click
        assert [(c.id, c.status) for c in repo.list_corrections(session, "v")] == [
            (proposed, "rejected"), (second, "rejected"), (third.id, "proposed")]
        assert [(e.action, e.correction_id) for e in repo.history(session, correction=third.id)] == [
            ("proposed", third.id)]
