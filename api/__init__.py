"""The composition root: settings, the HTTP app, the scheduler wiring and the `campopt` CLI."""
