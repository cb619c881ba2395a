"""The neutral core both sides stand on.

Events and their wire format, the error tree, identifiers, settings, the event log (the
one module that talks to JetStream), NATS credentials, safe opening of library files, the
library-state fold and the layout of derived files. Nothing here imports the write side
(`eventsvc.scanner`, `eventsvc.derive`, `eventsvc.video`, `eventsvc.media`), the read side
(`projections`) or the composition (`eventsvc.cli*`, `eventsvc.components`); the
import-linter contracts in pyproject.toml hold it to that.
"""
