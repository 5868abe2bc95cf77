"""`faceswap ui`: a local web page over the same library and commands (workspace, job queue, app)."""
