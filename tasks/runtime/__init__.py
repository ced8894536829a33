"""Run plumbing shared by the stages: the run logger, retries, kill points for crash tests, the
environment lock, events, reports and checkpoints. No stage logic lives here."""
