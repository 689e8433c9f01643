"""Writes a submission with one task missing and a bad grid in another."""

from _dummy import challenges, fallback_submission, roots, write_json

input_root, working, _ = roots()
submission = fallback_submission(challenges(input_root))
first, second = sorted(submission)[:2]
del submission[first]
submission[second][0]["attempt_2"] = [[1, 2], [3]]
write_json(working / "submission.json", submission)
