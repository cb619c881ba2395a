"""eventsvc: an event-sourced indexer for photo and video libraries on NATS JetStream.

The package ``eventsvc`` is the write side (everything that produces events);
``projections`` is the read side (everything that reads them).
"""

__version__ = "0.1.0"
