"""Video: probing (PyAV), ffmpeg jobs with a timeout, HLS playlists, their on-disk layout
and the guarded clean-up of orphan playlist directories."""
