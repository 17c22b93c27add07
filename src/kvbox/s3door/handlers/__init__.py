"""S3 operation handlers, one module per family (garage's ``api/s3`` split).

Layer: s3 door. ``common`` holds the attrs scheme, the body readers and the handler
``Context``; ``bucket`` the bucket operations, ``config`` the bucket settings
(versioning, policy, ACL, Block Public Access, website, CORS), ``object`` the object
operations (including copy, tagging and ACLs), ``listing`` the listings, ``multipart``
the multipart uploads, ``cors`` the preflight. Every handler takes ``(Context,
S3Request, Endpoint)`` and returns an ``S3Response`` (``kvbox.s3door.types``) or raises
``S3Error`` / a ``KvboxError``.
"""
