"""The engine: hutch's own ways to run containers, above the OCI runtime.

`hutch run`'s spec building (runspec), run-and-wait with stale-run collection (run)
and the Python API (api).  Named containers, images and logs come here too."""
