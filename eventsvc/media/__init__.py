"""Pure, side-effect-free media helpers: EXIF/container metadata, dates, thumbnails."""
