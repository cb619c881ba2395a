"""eventsvc: an event-sourced indexer for photo and video libraries on NATS JetStream.

The code is in layers; each imports only the layers below it (import-linter contracts,
run by the test suite, keep it so):

- composition, at the top: ``eventsvc.cli*``, ``eventsvc.components`` (``up``) and
  ``eventsvc.server`` wire the services together;
- the write side, which produces events: ``eventsvc.scanner`` (libraries, files),
  ``eventsvc.derive`` (hashes, media facts, thumbnails, faces, people, CLIP, playlists)
  and ``eventsvc.video`` (HLS clean-up);
- the read side, which folds events into a read model and serves it:
  ``projections`` (projector, read model, HTTP API and web pages); it imports only
  ``eventsvc.core``;
- shared libraries below the sides: ``eventsvc.media`` (decoding in a sandbox, EXIF,
  thumbnails, the video probe) and ``eventsvc.inference`` (model back-ends);
- the neutral core at the bottom: ``eventsvc.core`` (events, errors, ids, settings, the
  one JetStream boundary ``log``, library state), which imports nothing above it.

Neither side imports the other; the write side and the libraries never import
``projections``.
"""

__version__ = "0.1.0"
