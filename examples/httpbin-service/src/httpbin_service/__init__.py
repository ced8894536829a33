"""httpbin, pinned: the release's bundle carries httpbin and gunicorn; this package only
receives the pipeline's _release.json (which commit and version this release is)."""
