"""Where images come from, read safely: folders and filesystem URIs (``sources``), http(s)
URLs (``urls``), decoding (``images``), and the capped, atomic, no-follow file operations every
other layer uses (``files``)."""
